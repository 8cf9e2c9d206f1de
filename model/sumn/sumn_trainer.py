"""One SUMN training step under any ``tf.distribute`` strategy.

Each replica turns its ragged batch into dense model inputs and computes the
behavioural-consistency loss summed over its examples and divided by the
GLOBAL number of examples in the step; ``DistributedTrainer`` sums, clips and
applies the gradients. The loss is ``SumnModel.consistency_loss``'s, the
memory-bounded training form (no [batch, hops, vocabulary] logits, encoder
activations recomputed in chunks), or its sampled softmax with
``num_sampled`` > 0 (``sampled_consistency_loss.py``). Objectives beyond
SUMN's are added by weight: the InfoNCE loss of two disjoint random views of
each user (``view_contrastive_loss.py``) and the consistency loss against the
user's own history (``history_target.py``), from the same user vectors.
"""

import tensorflow as tf

from contracts import schema
from data_loader.batch_format import TARGET_WEIGHTS
from model.sumn.history_target import history_targets
from model.sumn.model_inputs import BEHAVIOUR_MASK, history_to_model_inputs
from model.sumn.view_contrastive_loss import disjoint_views, view_contrastive_loss
from model.training.distributed_trainer import DistributedTrainer, global_count


def dense_targets(batch):
    """Ragged target words/weights -> dense [B, T] padded with word 0 and weight 0."""
    words = batch[schema.TARGET_WORDS].to_tensor(default_value=0)
    weights = batch[TARGET_WEIGHTS].to_tensor(default_value=0.0)
    return words, weights


class SumnTrainer(DistributedTrainer):
    """Trains a ``SumnModel``.

    Args:
        model: a built ``SumnModel`` created in ``strategy.scope()``.
        optimizer, strategy, max_grad_norm, variables: as ``DistributedTrainer``.

    ``train_step`` returns the global ``loss``, ``hop_losses`` [num_hops]
    and ``gradient_norm``; with an objective beyond SUMN's also every term,
    ``loss/consistency``, ``loss/contrastive``, ``loss/history``
    (TensorBoard scalars).
    """

    def __init__(self, model, optimizer, strategy, max_grad_norm=0.0, variables=None, num_sampled=0,
                 contrastive_weight=0.0, contrastive_temperature=0.1, history_target_weight=0.0):
        super().__init__(model, optimizer, strategy, max_grad_norm, variables)
        self.num_sampled = int(num_sampled)
        self.contrastive_weight = float(contrastive_weight)
        self.contrastive_temperature = float(contrastive_temperature)
        self.history_target_weight = float(history_target_weight)

    def replica_loss(self, batch):
        # A short batch (or an empty replica slice) still divides correctly.
        global_examples = global_count(tf.shape(batch[schema.ID])[0])
        inputs = history_to_model_inputs(batch[schema.HISTORY])
        target_words, target_weights = dense_targets(batch)
        # SUMN: the mean over hops, summed over examples, over the GLOBAL count.
        loss_weights = tf.fill(
            [tf.shape(target_words)[0], self.model.num_hops], 1.0 / (self.model.num_hops * global_examples))
        # The decoder's vocabulary layer and the loss run fused, hop by hop:
        # the [batch, hops, vocabulary] logits are never materialised.
        user_vectors = self.model.training_user_vectors(inputs)
        loss, per_hop = self.model.decoder.consistency_loss(
            user_vectors, target_words, target_weights, loss_weights, training=True,
            num_sampled=self.num_sampled)
        metrics = {"hop_losses": tf.reduce_sum(per_hop, axis=0) / global_examples}
        terms = {}
        if self.contrastive_weight > 0:
            terms["contrastive"] = (self.contrastive_weight, tf.reduce_sum(
                self.view_losses(batch[schema.HISTORY])) / global_examples)
        if self.history_target_weight > 0:
            history_words, history_weights = history_targets(batch[schema.HISTORY])
            terms["history"] = (self.history_target_weight, self.model.decoder.consistency_loss(
                user_vectors, history_words, history_weights, loss_weights, training=True,
                num_sampled=self.num_sampled)[0])
        if terms:
            metrics["loss/consistency"] = loss
        for name, (weight, term) in terms.items():
            metrics[f"loss/{name}"] = term
            loss = loss + weight * term
        return loss, metrics

    def view_losses(self, history):
        """[batch] InfoNCE losses of two disjoint random views of each user (0 without a pair)."""
        views = [history_to_model_inputs(view) for view in disjoint_views(history)]
        # The last hop's vector: the one inference writes.
        first, second = (self.model.training_user_vectors(view)[:, -1] for view in views)
        valid = tf.reduce_any(views[0][BEHAVIOUR_MASK], axis=1) & tf.reduce_any(views[1][BEHAVIOUR_MASK], axis=1)
        return view_contrastive_loss(first, second, valid, self.contrastive_temperature)
