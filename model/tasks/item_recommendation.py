"""Item recommendation: the items of each user's target window (cold-start recommendation).

Only users with a non-empty target window take part. Training: PeterRec's
loss -log s(u.e+) - sum log(1 - s(u.e-)) over uniform negatives. The item
vectors e are the task's own new table (``--item_head=own``,
``ItemScoringHead``, PeterRec's) or the backbone's item embedding itself
(``--item_head=item_embedding``, ``EmbeddingItemScoringHead``: 2 * dim
weights of the task's own, which keeps a continual folder's added task far
below 1% of the backbone). Metrics, each test user's positive being
the first item of its target window (the item that follows its history):

* PeterRec's protocol: the positive among 99 uniformly sampled items the
  user never met, HR@5 and MRR@5;
* full ranking over every item but the user's history and the special ids:
  HR@10 and NDCG@10 (the headline).

Ranking metrics are keras-rs's (``RecallAtK`` with one relevant item is the
hit ratio).
"""

import keras_rs
import numpy as np
import tensorflow as tf

from contracts import schema
from data_loader.task_dataset import ITEMS, NEGATIVES, POSITIVE, recommendation_dataset
from evaluation import probes
from evaluation.sampled_negatives import sample_unseen_items
from model.tasks.classification import test_mask
from model.tasks.heads import EmbeddingItemScoringHead, ItemScoringHead
from model.tasks.task import Task, TaskSplit, validation_rows
from model.tasks.user_vectors import batches, task_user_vectors, top_unseen_items
from util.errors import UserInputError

SAMPLED_K = 5
FULL_K = 10
_EXCLUDED_SCORE = -1e9
# What a recommendation head scores users against: its own item table, or the backbone's
# item embedding (weight tying).
OWN_ITEM_TABLE = "own"
ITEM_EMBEDDING = "item_embedding"
ITEM_HEADS = (OWN_ITEM_TABLE, ITEM_EMBEDDING)


class ItemRecommendationTask(Task):
    """Recommends the items of each user's target window (``--task=items``).

    Args:
        train, validation, test: users with a target window.
        num_item_ids: size of the item index.
        item_head: ``own`` (a new item table) or ``item_embedding`` (the backbone's).
    """

    kind = "recommendation"
    NAME = "items"

    def __init__(self, train, validation, test, num_item_ids, item_head=OWN_ITEM_TABLE):
        super().__init__(self.NAME, train, validation, test)
        if item_head not in ITEM_HEADS:
            raise UserInputError(f"--item_head={item_head} is not one of {', '.join(ITEM_HEADS)}")
        self.num_item_ids = int(num_item_ids)
        self.item_head = item_head

    @classmethod
    def from_sequences(cls, sequences, labels, split_column, validation_fraction, seed,
                       num_item_ids, item_head=OWN_ITEM_TABLE):
        """The task over ``sequences``; ``labels`` is read only for a split column."""
        lengths = sequences.target_items.row_lengths().numpy()
        rows = np.flatnonzero(lengths > 0)
        if len(rows) == 0:
            raise UserInputError("--task=items: no user of the sequence table has target items")
        is_test = test_mask(sequences.ids[rows], labels, split_column, "the sequence table")
        train, test = probes.split_task_users(np.ones(len(rows), dtype=bool), is_test,
                                              task=cls.NAME, source="the sequence table")
        train, validation = validation_rows(train, validation_fraction, seed)

        def split(part):
            return TaskSplit(sequences.take(rows[part]))

        return cls(split(train), split(validation), split(test), num_item_ids, item_head)

    @property
    def headline(self):
        return "hr@10_full"

    def description_entries(self):
        return dict(super().description_entries(), class_values=[], num_classes=0,
                    item_head=self.item_head)

    @classmethod
    def head_from_description(cls, description, dim):
        # A description from before item heads had a choice holds its own table.
        if description.get("item_head", OWN_ITEM_TABLE) == ITEM_EMBEDDING:
            return EmbeddingItemScoringHead(dim, name="head")
        return ItemScoringHead(description["num_item_ids"], dim, name="head")

    def example_losses(self, model, batch):
        positive = batch[POSITIVE]
        users = model(model.inputs_for(batch[ITEMS]), training=True)
        candidates = tf.concat([positive[:, None], batch[NEGATIVES]], axis=1)
        score, _ = item_scorers(model, model.head)
        scores = tf.cast(score(users, candidates), tf.float32)
        labels = tf.concat([tf.ones_like(scores[:, :1]), tf.zeros_like(scores[:, 1:])], axis=1)
        return tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=scores), axis=1)

    def training_dataset(self, batch_size, seed, settings):
        train = self.train.sequences
        return recommendation_dataset(train.items, train.target_items, self.num_item_ids,
                                      batch_size, num_negatives=settings.num_negatives,
                                      shuffle=True, seed=seed, repeat=True)

    def scores(self, model, split):
        items = split.sequences.items
        _, score_all = item_scorers(model, model.head)
        return ranking_scores(task_user_vectors(model, items), score_all,
                              self.num_item_ids, items, split.sequences.target_items)

    @classmethod
    def head_outputs(cls, model, head, items, training=False):
        users = model(model.inputs_for(items), training=training)
        _, score_all = item_scorers(model, head)
        return tf.cast(score_all(users), tf.float32)

    @classmethod
    def predictions(cls, model, items, vectors, top_k):
        _, score_all = item_scorers(model, model.head)
        return {"top_items": top_unseen_items(score_all, items, vectors, top_k)}


def item_scorers(model, head):
    """(score(users, item_ids), score_all(users)) of a recommendation ``head`` within ``model``.

    An ``EmbeddingItemScoringHead`` scores against ``model``'s own item
    embedding, so a frozen teacher's copy of a head scores against the
    teacher's embedding and a student's against the student's.
    """
    if isinstance(head, EmbeddingItemScoringHead):
        scorer = _TiedScorer(head, model.item_table())
        return scorer, scorer.score_all
    return head, head.score_all


class _TiedScorer:
    """An ``EmbeddingItemScoringHead`` bound to one item table, called as an ``ItemScoringHead`` is."""

    def __init__(self, head, table):
        self.head = head
        self.table = table

    def __call__(self, users, item_ids):
        return self.head(users, item_ids, self.table)

    def score_all(self, users):
        return self.head.score_all(users, self.table)


def ranking_scores(vectors, score_all, num_item_ids, items, targets, seed=0):
    """HR@5 / MRR@5 (99 sampled negatives) and HR@10 / NDCG@10 (full ranking).

    Args:
        vectors: float32 [num_users, dim] the users' vectors.
        score_all: [batch, dim] user vectors -> [batch, num_item_ids] scores of every item.
        num_item_ids: size of the item index, the special ids included.
        items: tf.RaggedTensor [num_users, (length)], the users' histories.
        targets: tf.RaggedTensor [num_users, (targets)], no empty row; the first is the positive.
    """
    positives = tf.gather(targets.values, targets.row_starts()).numpy()
    negatives = sample_unseen_items(items, targets, num_item_ids, seed=seed)
    sampled_hr = keras_rs.metrics.RecallAtK(k=SAMPLED_K, shuffle_ties=False)
    sampled_mrr = keras_rs.metrics.MeanReciprocalRank(k=SAMPLED_K, shuffle_ties=False)
    full_hr = keras_rs.metrics.RecallAtK(k=FULL_K, shuffle_ties=False)
    full_ndcg = keras_rs.metrics.NDCG(k=FULL_K, shuffle_ties=False)
    score_all = tf.function(score_all, reduce_retracing=True)
    for start, chunk in batches(items):
        end = start + int(chunk.nrows())
        users = tf.constant(vectors[start:end])
        all_scores = tf.cast(score_all(users), tf.float32).numpy()
        rows = np.arange(end - start)
        candidates = np.concatenate([positives[start:end, None], negatives[start:end]], axis=1)
        sampled = all_scores[rows[:, None], candidates]
        sampled_truth = np.zeros_like(sampled)
        sampled_truth[:, 0] = 1.0
        sampled_hr.update_state(sampled_truth, sampled)
        sampled_mrr.update_state(sampled_truth, sampled)
        # Full ranking: the user's own history and the special ids are not candidates.
        all_scores[:, :schema.FIRST_ITEM_ID] = _EXCLUDED_SCORE
        history = chunk
        all_scores[history.value_rowids().numpy(), history.values.numpy()] = _EXCLUDED_SCORE
        all_scores[rows, positives[start:end]] = sampled[:, 0]
        full_truth = np.zeros_like(all_scores)
        full_truth[rows, positives[start:end]] = 1.0
        full_hr.update_state(full_truth, all_scores)
        full_ndcg.update_state(full_truth, all_scores)
    return {
        "hr@5_sampled": float(sampled_hr.result()),
        "mrr@5_sampled": float(sampled_mrr.result()),
        "hr@10_full": float(full_hr.result()),
        "ndcg@10_full": float(full_ndcg.result()),
    }
