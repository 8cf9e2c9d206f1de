"""Next-item prediction as a task: the pretraining objective of NextItNet, kept as task 1.

A continual model folder (Conure) learns its first task, T1, on the
pretraining objective itself, and must go on serving it: the item after a
user's history. Training: the next item at every position of each user's
history (NextItNet's loss; sampled softmax with ``num_sampled`` > 0), the
same self-supervised signal main/train.py pretrains on, so every user with
two or more history items trains it and no target window is ever read.
Scoring: each validation or test user's FIRST target-window item (never seen
in training) is ranked from the hidden state at the last history item, with
``item_recommendation.ranking_scores`` (full ranking HR@10 / NDCG@10 is the
headline, plus HR@5 / MRR@5 among 99 sampled unseen items).

The head is an ``ItemSoftmax`` (the pretraining model's output layer, copied
in from the pretrained run); the user state is read at the last item, not at
a CLS token, because that is the state next-item pretraining trained.
"""

import numpy as np
import tensorflow as tf

from data_loader.task_dataset import ITEMS, sequence_dataset
from evaluation import probes
from model.nextitnet.item_prediction_loss import item_prediction_loss
from model.nextitnet.item_softmax import ItemSoftmax
from model.nextitnet.sequence_inputs import left_pad, next_item_targets
from model.tasks.classification import test_mask
from model.tasks.item_recommendation import ranking_scores
from model.tasks.task import Task, TaskSplit, validation_rows
from model.tasks.user_vectors import batches, inference_function, top_unseen_items
from util.errors import UserInputError


class NextItemTask(Task):
    """Predicts each user's next item (``--task=next_item``; a continual folder's T1).

    Args:
        train: users whose histories train (every user with >= 2 items).
        validation, test: users with a target window, scored on its first item.
        num_item_ids: size of the item index.
        num_sampled: negatives of the sampled softmax in training; 0: full softmax.
    """

    kind = "next_item"
    NAME = "next_item"

    def __init__(self, train, validation, test, num_item_ids, num_sampled=0):
        super().__init__(self.NAME, train, validation, test)
        self.num_item_ids = int(num_item_ids)
        self.num_sampled = int(num_sampled)

    @classmethod
    def from_sequences(cls, sequences, labels, split_column, validation_fraction, seed,
                       num_item_ids, num_sampled=0):
        """The task over ``sequences``; ``labels`` is read only for a split column."""
        lengths = sequences.items.row_lengths().numpy()
        has_target = sequences.target_items.row_lengths().numpy() > 0
        scored = np.flatnonzero(has_target)
        if len(scored) == 0:
            raise UserInputError(f"--task={cls.NAME}: no user of the sequence table has target items")
        is_test = test_mask(sequences.ids[scored], labels, split_column, "the sequence table")
        train_side, test = probes.split_task_users(np.ones(len(scored), dtype=bool), is_test,
                                                   task=cls.NAME, source="the sequence table")
        _, validation = validation_rows(train_side, validation_fraction, seed)
        training_rows = np.flatnonzero(lengths >= 2)
        return cls(TaskSplit(sequences.take(training_rows)),
                   TaskSplit(sequences.take(scored[validation])),
                   TaskSplit(sequences.take(scored[test])), num_item_ids, num_sampled)

    @property
    def headline(self):
        return "hr@10_full"

    def description_entries(self):
        return dict(super().description_entries(), class_values=[], num_classes=0)

    @classmethod
    def head_from_description(cls, description, dim):
        return ItemSoftmax(description["num_item_ids"], name="head")

    def example_losses(self, model, batch):
        return self.user_losses(model, model.head, batch[ITEMS], self.num_sampled)

    @staticmethod
    def user_losses(model, head, items, num_sampled):
        """float32 [batch]: each user's mean next-item loss over the positions of its history.

        Args:
            model: a model with an ``encoder`` (run as it is set up: masks, task).
            head: the ``ItemSoftmax`` that scores the items.
            items: tf.RaggedTensor [batch, (length)] of item ids; a user with one
                item predicts nothing and gets 0.
            num_sampled: sampled-softmax negatives; 0: full softmax.
        """
        inputs, targets, weights = next_item_targets(left_pad(items))
        hidden = model.encoder(inputs, training=True)
        chosen = weights > 0
        losses = item_prediction_loss(
            tf.boolean_mask(hidden, chosen), tf.boolean_mask(targets, chosen),
            tf.boolean_mask(weights, chosen), head, num_sampled=num_sampled, training=True)
        # One loss per user: the mean over its predicted positions.
        rows = tf.cast(tf.where(chosen)[:, 0], tf.int32)
        users = tf.shape(inputs)[0]
        total = tf.math.unsorted_segment_sum(losses, rows, users)
        count = tf.math.unsorted_segment_sum(tf.ones_like(losses), rows, users)
        return total / tf.maximum(count, 1.0)

    def training_dataset(self, batch_size, seed, settings):
        return sequence_dataset(self.train.sequences.items, batch_size, shuffle=True, seed=seed,
                                repeat=True)

    def scores(self, model, split):
        items = split.sequences.items
        return ranking_scores(last_item_states(model, items), model.head, self.num_item_ids,
                              items, split.sequences.target_items)

    @classmethod
    def serving_vectors(cls, model, items):
        return last_item_states(model, items)

    @classmethod
    def predictions(cls, model, items, vectors, top_k):
        return {"top_items": top_unseen_items(model.head, items, vectors, top_k)}

    @classmethod
    def head_outputs(cls, model, head, items, training=False):
        # The state at the newest item, the one next-item prediction reads.
        hidden = model.encoder(left_pad(items), training=training)[:, -1, :]
        return tf.cast(head(hidden), tf.float32)

    @classmethod
    def head_outputs_at_every_position(cls, model, head, items, training=False):
        """The head at every position, as next-item pretraining trained it.

        Args:
            items: tf.RaggedTensor [batch, (length)] of item ids.
        Returns:
            (float32 [batch, max_length, num_item_ids] logits, bool [batch, max_length]
            True at real items; left padding is False).
        """
        padded = left_pad(items)
        hidden = model.encoder(padded, training=training)
        return tf.cast(head(hidden), tf.float32), padded > 0


def last_item_states(model, items):
    """float32 [num_users, dim]: the encoder's state at each user's newest item (inference mode)."""
    encode = inference_function(
        model, "last_item_states",
        lambda user_model, padded: user_model.encoder(padded, training=False)[:, -1, :])
    parts = [encode(left_pad(chunk)).numpy() for _, chunk in batches(items)]
    if not parts:
        return np.zeros((0, model.dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)
