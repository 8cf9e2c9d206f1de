"""SUPERMOE's training step: every task's loss on its own batch, plus the routers' auxiliary losses.

One step draws one batch per task (users without a label for a task are
simply not in that task's batches, so they add nothing to its loss) and
minimises

    sum_t w_t L_t + lb_weight * mean(LB) + z_weight * mean(Z)

where L_t is the task's mean example loss (``Task.example_losses``: the
next-item cross-entropy per user, or a classification cross-entropy), w_t
its ``--task_weights`` entry, and LB / Z the load-balancing and router
z-losses (``model/supermoe/expert_routing.py``) averaged over blocks and
tasks (Switch: 1e-2; ST-MoE: 1e-3). With ``task_balance="equal_gradient_norm"``
each task's gradient on the shared weights is first rescaled to the tasks'
mean norm (``task_gradient_balance.py`` says why and how), and w_t scales
that instead.

Metrics (TensorBoard scalars through ``TrainingLog``): ``task_loss/<task>``,
``router/load_balancing_loss``, ``router/z_loss``, ``router/dropped_fraction``
(share of assignments past capacity), ``router/expert_load/block_<b>/expert_<e>``
and, when balancing, ``task_gradient_norm/<task>`` (the norm on the shared
weights before rescaling).
"""

import tensorflow as tf

from model.supermoe.task_gradient_balance import (TASK_BALANCES, add_gradients,
                                                  equal_norm_factors, shared_positions)
from model.training.distributed_trainer import (DistributedTrainer, global_count,
                                                merge_repeated_rows, scale_gradient,
                                                sum_over_replicas)


def _mean(values):
    return tf.add_n(values) / float(len(values))


class MultiTaskTrainer(DistributedTrainer):
    """The distributed train step of a ``SupermoeModel``.

    Args:
        model: the ``SupermoeModel``, built in ``strategy.scope()``.
        optimizer, strategy, max_grad_norm: as ``DistributedTrainer``.
        tasks: the ``model/tasks`` ``Task`` objects, in the order of ``model.tasks``.
        task_weights: w_t per task, same order.
        load_balancing_weight, router_z_weight: the auxiliary losses' weights.
        task_balance: ``loss_weights`` (sum of weighted losses) or
            ``equal_gradient_norm`` (see the module docstring).
    """

    MEAN_METRICS = DistributedTrainer.MEAN_METRICS

    def __init__(self, model, optimizer, strategy, tasks, task_weights, load_balancing_weight,
                 router_z_weight, max_grad_norm=0.0, task_balance="loss_weights"):
        if len(tasks) != len(model.tasks) or len(task_weights) != len(model.tasks):
            raise ValueError(f"one task and one weight per model task ({len(model.tasks)}). "
                             f"Received: {len(tasks)} tasks, {len(task_weights)} weights.")
        if task_balance not in TASK_BALANCES:
            raise ValueError(f"`task_balance` should be one of {TASK_BALANCES}. "
                             f"Received: task_balance={task_balance!r}.")
        self.task_balance = task_balance
        self.tasks = list(tasks)
        self.task_weights = [float(weight) for weight in task_weights]
        self.load_balancing_weight = float(load_balancing_weight)
        self.router_z_weight = float(router_z_weight)
        super().__init__(model, optimizer, strategy, max_grad_norm)

    def replica_loss(self, batch):
        task_losses, auxiliary, metrics = self._replica_losses(batch)
        total = tf.add_n([weight * loss for weight, loss in zip(self.task_weights, task_losses)])
        return total + auxiliary, metrics

    def _replica_step(self, batch):
        if self.task_balance == "loss_weights":
            return super()._replica_step(batch)
        with tf.GradientTape(persistent=True) as tape:
            task_losses, auxiliary, metrics = self._replica_losses(batch)
            scaled = [self.optimizer.scale_loss(loss) for loss in task_losses]
            scaled_auxiliary = self.optimizer.scale_loss(auxiliary)
        per_task = [self._replica_summed(tape.gradient(loss, self.variables)) for loss in scaled]
        auxiliary_gradients = self._replica_summed(tape.gradient(scaled_auxiliary, self.variables))
        del tape
        shared = shared_positions(per_task)
        norms = [tf.linalg.global_norm([gradients[index] for index in shared])
                 for gradients in per_task]
        factors = equal_norm_factors(norms, self.task_weights)
        gradients = []
        for index in range(len(self.variables)):
            parts = [task[index] for task in per_task]
            if index in shared:
                parts = [None if part is None else scale_gradient(part, factors[task])
                         for task, part in enumerate(parts)]
            gradients.append(add_gradients(parts + [auxiliary_gradients[index]]))
        gradients = [tf.zeros_like(variable) if gradient is None else gradient
                     for gradient, variable in zip(gradients, self.variables)]
        gradients, gradient_norm = self._clip_and_share(
            [merge_repeated_rows(gradient) for gradient in gradients])
        self.optimizer.apply(gradients, self.variables)
        replicas = float(tf.distribute.get_replica_context().num_replicas_in_sync)
        loss = tf.add_n(task_losses) + auxiliary  # reported unweighted, as the balance sets shares
        for task, norm in zip(self.tasks, norms):
            # Every replica holds the same (summed) norm; a share each, so the step's sum is it.
            metrics[f"task_gradient_norm/{task.name}"] = norm / replicas
        return {"loss": loss, **metrics, "gradient_norm": gradient_norm}

    @staticmethod
    def _replica_summed(gradients):
        """One loss's gradients summed over replicas, None kept where the loss does not reach."""
        present = [index for index, gradient in enumerate(gradients) if gradient is not None]
        summed = sum_over_replicas([gradients[index] for index in present])
        result = [None] * len(gradients)
        for index, gradient in zip(present, summed):
            result[index] = gradient
        return result

    def _replica_losses(self, batch):
        """(each task's mean loss, the weighted auxiliary losses, metrics) of one replica's batch."""
        replicas = float(tf.distribute.get_replica_context().num_replicas_in_sync)
        task_losses = []
        metrics = {}
        routing = []
        for index, task in enumerate(self.tasks):
            view = self.model.task_view(index)
            view.statistics.clear()
            losses = tf.cast(task.example_losses(view, batch[task.name]), tf.float32)
            # Divided by the GLOBAL number of users, so replicas add up to the mean.
            task_loss = tf.reduce_sum(losses) / global_count(tf.size(losses))
            task_losses.append(task_loss)
            metrics[f"task_loss/{task.name}"] = task_loss
            routing.extend(view.statistics)
        # Per-replica means: 1/replicas each, so the sum over replicas is their mean.
        load_balancing = _mean([s["load_balancing_loss"] for s in routing]) / replicas
        router_z = _mean([s["router_z_loss"] for s in routing]) / replicas
        auxiliary = (self.load_balancing_weight * load_balancing
                     + self.router_z_weight * router_z)
        metrics["router/load_balancing_loss"] = load_balancing
        metrics["router/z_loss"] = router_z
        metrics["router/dropped_fraction"] = _mean(
            [s["dropped_fraction"] for s in routing]) / replicas
        load = _mean([s["expert_load"] for s in routing]) / replicas  # [blocks, experts]
        for block in range(load.shape[0]):
            for expert in range(load.shape[1]):
                metrics[f"router/expert_load/block_{block}/expert_{expert}"] = load[block, expert]
        return task_losses, auxiliary, metrics
