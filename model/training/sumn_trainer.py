"""One SUMN training step under any ``tf.distribute`` strategy.

Each replica turns its ragged batch into dense model inputs, computes the
behavioural-consistency loss summed over its examples and divided by the
GLOBAL number of examples in the step (so replicas add up to the mean), and
the gradients are summed across replicas, optionally clipped to a global
norm, and applied by the Keras optimizer. The loss is
``SumnModel.consistency_loss``, the memory-bounded training form (no
[batch, hops, vocabulary] logits, encoder activations recomputed in chunks).
"""

import tensorflow as tf

from data_dumper import schema
from model.model_inputs import history_to_model_inputs


def dense_targets(batch):
    """Ragged target words/weights -> dense [B, T] padded with word 0 and weight 0."""
    words = batch[schema.TARGET_WORDS].to_tensor(default_value=0)
    weights = batch["target_weights"].to_tensor(default_value=0.0)
    return words, weights


def _scale(gradient, factor):
    # Embedding gradients stay IndexedSlices (rows touched by the batch only).
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def _merge_repeated_rows(gradient):
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    indices, positions = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(indices)[0])
    return tf.IndexedSlices(values, indices, gradient.dense_shape)


class SumnTrainer:
    """Owns the distributed train step of a ``SumnModel``.

    Args:
        model: a built ``SumnModel`` created in ``strategy.scope()``.
        optimizer: a Keras optimizer created in the same scope.
        strategy: the ``tf.distribute.Strategy``.
        max_grad_norm: clip gradients to this global norm; 0 disables.
    """

    def __init__(self, model, optimizer, strategy, max_grad_norm=0.0):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.max_grad_norm = float(max_grad_norm)
        self._step = tf.function(self._distributed_step, reduce_retracing=True)

    def _replica_step(self, batch):
        replica = tf.distribute.get_replica_context()
        local_examples = tf.cast(tf.shape(batch[schema.ID])[0], tf.float32)
        # A short batch (or an empty replica slice) still divides correctly.
        global_examples = tf.maximum(
            replica.all_reduce(tf.distribute.ReduceOp.SUM, local_examples), 1.0)
        inputs = history_to_model_inputs(batch[schema.HISTORY])
        target_words, target_weights = dense_targets(batch)
        variables = self.model.trainable_variables
        # SUMN: the mean over hops, summed over examples, over the GLOBAL count.
        loss_weights = tf.fill(
            [tf.shape(target_words)[0], self.model.num_hops], 1.0 / (self.model.num_hops * global_examples))
        with tf.GradientTape() as tape:
            # The decoder's vocabulary layer and the loss run fused, hop by hop:
            # the [batch, hops, vocabulary] logits are never materialised.
            loss, per_hop = self.model.consistency_loss(
                inputs, target_words, target_weights, loss_weights, training=True)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        gradients, gradient_norm = self._reduce_and_clip(replica, gradients)
        self.optimizer.apply(gradients, variables)
        hop_losses = tf.reduce_sum(per_hop, axis=0) / global_examples
        return {"loss": loss, "hop_losses": hop_losses, "gradient_norm": gradient_norm}

    def _reduce_and_clip(self, replica, gradients):
        """Sums gradients over replicas, measures (and clips to) their global norm.

        The Keras optimizer sums gradients over replicas itself; to clip by the
        norm of the SUMMED gradient we sum first, clip, and hand each replica
        1/n of the result so the optimizer's own sum restores it.
        """
        replicas = replica.num_replicas_in_sync
        if replicas > 1:
            gradients = replica.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
            # The sum of IndexedSlices concatenates the replicas' rows; merge
            # repeated rows so the norm is the summed gradient's.
            gradients = [_merge_repeated_rows(g) for g in gradients]
        if self.max_grad_norm > 0:
            gradients, gradient_norm = tf.clip_by_global_norm(gradients, self.max_grad_norm)
        else:
            gradient_norm = tf.linalg.global_norm(gradients)
        if replicas > 1:
            gradients = [_scale(g, 1.0 / replicas) for g in gradients]
        return gradients, gradient_norm

    def _distributed_step(self, distributed_batch):
        per_replica = self.strategy.run(self._replica_step, args=(distributed_batch,))
        # Every replica's loss is already a share of the global mean: sum them.
        return {
            "loss": self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica["loss"], axis=None),
            "hop_losses": self.strategy.reduce(
                tf.distribute.ReduceOp.SUM, per_replica["hop_losses"], axis=None),
            "gradient_norm": self.strategy.reduce(
                tf.distribute.ReduceOp.MEAN, per_replica["gradient_norm"], axis=None),
        }

    def train_step(self, distributed_batch):
        """Runs one optimisation step; returns the global loss, per-hop losses, gradient norm."""
        return self._step(distributed_batch)
