"""One NextItNet / GRec pretraining step under any ``tf.distribute`` strategy.

NextItNet (causal) predicts the next item at every position of every sequence;
GRec (non-causal) masks a share of the positions and predicts the items there.
The loss is the mean over every predicted position of the global batch (the
per-replica sum divided by the global number of positions).
"""

import tensorflow as tf

from contracts import schema
from model.nextitnet.item_prediction_loss import item_prediction_loss
from model.nextitnet.sequence_inputs import left_pad, mask_items, next_item_targets
from model.training.distributed_trainer import DistributedTrainer, global_count


class SequencePretrainer(DistributedTrainer):
    """Trains a ``SequencePretrainingModel``.

    Args:
        model: the model, built in ``strategy.scope()``.
        optimizer, strategy, max_grad_norm: as ``DistributedTrainer``.
        num_sampled: 0 for the full softmax over items; N for sampled softmax.
        mask_fraction: GRec's share of masked positions (unused by NextItNet).
        seed: seeds GRec's masking; each step draws fresh positions.
    """

    def __init__(self, model, optimizer, strategy, max_grad_norm=0.0, num_sampled=0,
                 mask_fraction=0.3, seed=0):
        self.num_sampled = int(num_sampled)
        self.mask_fraction = float(mask_fraction)
        self.seed = int(seed)
        # Counts steps on every replica alike, so masks differ per step but not per replica copy.
        self._draws = tf.Variable(0, dtype=tf.int64, trainable=False, name="mask_draws")
        super().__init__(model, optimizer, strategy, max_grad_norm)

    def _inputs_and_targets(self, items):
        """[B, (L)] ragged items -> (inputs [B, L'], targets [B, L'], weights [B, L'])."""
        padded = left_pad(items)
        if self.model.causal:
            return next_item_targets(padded)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.stack([tf.cast(self.seed, tf.int64) * 1000 + tf.cast(replica, tf.int64),
                         self._draws.read_value()])
        return mask_items(padded, self.mask_fraction, seed, self.model.num_item_ids)

    def replica_loss(self, batch):
        inputs, targets, weights = self._inputs_and_targets(batch[schema.ITEMS])
        positions = tf.reduce_sum(weights)
        total = global_count(positions)
        hidden = self.model(inputs, training=True)
        # Only predicted positions reach the softmax: padding costs nothing there.
        chosen = weights > 0
        losses = item_prediction_loss(
            tf.boolean_mask(hidden, chosen), tf.boolean_mask(targets, chosen),
            tf.boolean_mask(weights, chosen), self.model.softmax,
            num_sampled=self.num_sampled, training=True)
        loss = tf.reduce_sum(losses) / total
        return loss, {"positions": positions}

    def _distributed_step(self, distributed_batch):
        self._draws.assign_add(1)
        return super()._distributed_step(distributed_batch)
