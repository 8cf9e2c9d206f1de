"""One optimisation step of any model under any ``tf.distribute`` strategy.

Every trainer of the package (SUMN pretraining, NextItNet/GRec pretraining,
PeterRec fine-tuning) shares the same rules, so they live here once:

* each replica computes a loss already divided by the GLOBAL number of
  examples (or predicted positions) in the step, so replicas add up to the mean
  whatever their share of a short last batch;
* gradients are summed across replicas, optionally clipped to a global norm
  (the norm of the SUMMED gradient), and applied by the Keras optimizer;
* only ``variables`` train: fine-tuning methods that freeze a backbone simply
  leave its variables out, so they are never touched (not even by the optimizer).

A subclass implements ``replica_loss(batch, global_count)``.
"""

import abc

import tensorflow as tf


def scale_gradient(gradient, factor):
    """``gradient * factor``, keeping embedding gradients as ``IndexedSlices`` (touched rows only)."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def merge_repeated_rows(gradient):
    """An ``IndexedSlices`` gradient with each row once, repeated rows summed; dense ones unchanged.

    The all-reduce of ``IndexedSlices`` concatenates the replicas' rows, so a
    row two replicas touched appears twice; its norm must be the sum's.
    """
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    indices, positions = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(indices)[0])
    return tf.IndexedSlices(values, indices, gradient.dense_shape)


def sum_over_replicas(gradients):
    """The replicas' ``gradients`` (a list without None) summed; each IndexedSlices row once.

    Rows are merged on one replica too: an embedding's gradient lists one row
    per lookup, and the global norm (clipping, the logged gradient_norm) must
    be that of the summed rows, whatever the number of replicas.
    """
    replica = tf.distribute.get_replica_context()
    if replica.num_replicas_in_sync > 1 and gradients:
        gradients = replica.all_reduce(tf.distribute.ReduceOp.SUM, list(gradients))
    return [merge_repeated_rows(g) for g in gradients]


def global_count(count):
    """The sum of a per-replica count over replicas, at least 1 (an empty replica slice divides safely)."""
    replica = tf.distribute.get_replica_context()
    return tf.maximum(replica.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(count, tf.float32)), 1.0)


class DistributedTrainer(abc.ABC):
    """Owns the distributed train step of one model.

    Args:
        model: a built Keras model created in ``strategy.scope()``.
        optimizer: a Keras optimizer created in the same scope, built on ``variables``.
        strategy: the ``tf.distribute.Strategy``.
        max_grad_norm: clip gradients to this global norm; 0 disables.
        variables: the variables that train; None: ``model.trainable_variables``.
    """

    # Metrics averaged over replicas rather than summed (each replica sees the same value).
    MEAN_METRICS = ("gradient_norm",)

    def __init__(self, model, optimizer, strategy, max_grad_norm=0.0, variables=None):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.max_grad_norm = float(max_grad_norm)
        self.variables = list(model.trainable_variables if variables is None else variables)
        self._step = tf.function(self._distributed_step, reduce_retracing=True)

    @abc.abstractmethod
    def replica_loss(self, batch):
        """Returns ``(loss, metrics)`` of one replica's batch.

        ``loss`` is a scalar already divided by the global count (use
        ``global_count``); ``metrics`` is a dict of tensors that sum over
        replicas to the step's value.
        """

    def _replica_step(self, batch):
        with tf.GradientTape() as tape:
            loss, metrics = self.replica_loss(batch)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, self.variables)
        gradients, gradient_norm = self._reduce_and_clip(gradients)
        self.optimizer.apply(gradients, self.variables)
        return {"loss": loss, **metrics, "gradient_norm": gradient_norm}

    def _reduce_and_clip(self, gradients):
        """Sums gradients over replicas, measures (and clips to) their global norm.

        The Keras optimizer sums gradients over replicas itself; to clip by the
        norm of the SUMMED gradient we sum first, clip, and hand each replica
        1/n of the result so the optimizer's own sum restores it.
        """
        return self._clip_and_share(sum_over_replicas(gradients))

    def _clip_and_share(self, gradients):
        """Clips replica-summed ``gradients`` to ``max_grad_norm``; returns (each replica's share, norm)."""
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        if self.max_grad_norm > 0:
            gradients, gradient_norm = tf.clip_by_global_norm(gradients, self.max_grad_norm)
        else:
            gradient_norm = tf.linalg.global_norm(gradients)
        if replicas > 1:
            gradients = [scale_gradient(g, 1.0 / replicas) for g in gradients]
        return gradients, gradient_norm

    def _distributed_step(self, distributed_batch):
        per_replica = self.strategy.run(self._replica_step, args=(distributed_batch,))
        reduced = {}
        for name, value in per_replica.items():
            op = (tf.distribute.ReduceOp.MEAN if name in self.MEAN_METRICS
                  else tf.distribute.ReduceOp.SUM)
            reduced[name] = self.strategy.reduce(op, value, axis=None)
        return reduced

    def train_step(self, distributed_batch):
        """Runs one optimisation step; returns the global loss, the metrics and the gradient norm."""
        return self._step(distributed_batch)
