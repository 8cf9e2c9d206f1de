"""SUPERMOE's training step: every task's loss on its own batch, plus the routers' auxiliary losses.

One step draws one batch per task (users without a label for a task are
simply not in that task's batches, so they add nothing to its loss) and
minimises

    sum_t w_t L_t + lb_weight * mean(LB) + z_weight * mean(Z)

where L_t is the task's mean example loss (``Task.example_losses``: the
next-item cross-entropy per user, or a classification cross-entropy), w_t
its ``--task_weights`` entry, and LB / Z the load-balancing and router
z-losses (``model/supermoe/expert_routing.py``) averaged over blocks and
tasks (Switch: 1e-2; ST-MoE: 1e-3).

Metrics (TensorBoard scalars through ``TrainingLog``): ``task_loss/<task>``,
``router/load_balancing_loss``, ``router/z_loss``, ``router/dropped_fraction``
(share of assignments past capacity) and ``router/expert_load/block_<b>/expert_<e>``.
"""

import tensorflow as tf

from model.training.distributed_trainer import DistributedTrainer, global_count


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
    """

    MEAN_METRICS = DistributedTrainer.MEAN_METRICS

    def __init__(self, model, optimizer, strategy, tasks, task_weights, load_balancing_weight,
                 router_z_weight, max_grad_norm=0.0):
        if len(tasks) != len(model.tasks) or len(task_weights) != len(model.tasks):
            raise ValueError(f"one task and one weight per model task ({len(model.tasks)}). "
                             f"Received: {len(tasks)} tasks, {len(task_weights)} weights.")
        self.tasks = list(tasks)
        self.task_weights = [float(weight) for weight in task_weights]
        self.load_balancing_weight = float(load_balancing_weight)
        self.router_z_weight = float(router_z_weight)
        super().__init__(model, optimizer, strategy, max_grad_norm)

    def replica_loss(self, batch):
        replicas = float(tf.distribute.get_replica_context().num_replicas_in_sync)
        total = tf.constant(0.0)
        metrics = {}
        routing = []
        for index, task in enumerate(self.tasks):
            view = self.model.task_view(index)
            view.statistics.clear()
            losses = tf.cast(task.example_losses(view, batch[task.name]), tf.float32)
            # Divided by the GLOBAL number of users, so replicas add up to the mean.
            task_loss = tf.reduce_sum(losses) / global_count(tf.size(losses))
            total = total + self.task_weights[index] * task_loss
            metrics[f"task_loss/{task.name}"] = task_loss
            routing.extend(view.statistics)
        # Per-replica means: 1/replicas each, so the sum over replicas is their mean.
        load_balancing = _mean([s["load_balancing_loss"] for s in routing]) / replicas
        router_z = _mean([s["router_z_loss"] for s in routing]) / replicas
        total = (total + self.load_balancing_weight * load_balancing
                 + self.router_z_weight * router_z)
        metrics["router/load_balancing_loss"] = load_balancing
        metrics["router/z_loss"] = router_z
        metrics["router/dropped_fraction"] = _mean(
            [s["dropped_fraction"] for s in routing]) / replicas
        load = _mean([s["expert_load"] for s in routing]) / replicas  # [blocks, experts]
        for block in range(load.shape[0]):
            for expert in range(load.shape[1]):
                metrics[f"router/expert_load/block_{block}/expert_{expert}"] = load[block, expert]
        return total, metrics
