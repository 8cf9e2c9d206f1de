"""Scores a fine-tuned ``TaskModel`` on held-out users.

Classification: class probabilities, then accuracy / macro-F1 / AUC
(``evaluation.probes.classification_metrics``, scikit-learn).

Recommendation, each test user's positive being the first item of its target
window (the item that follows its history):

* PeterRec's protocol: the positive ranked among 99 uniformly sampled items
  the user never met, HR@5 and MRR@5. The authors note that sampled metrics
  behave like AUC, so the full-ranking figures are reported too;
* full ranking over every item but the user's history items and the special
  ids: HR@10 and NDCG@10.

Ranking metrics are keras-rs's (``RecallAtK`` with one relevant item is the hit
ratio).
"""

import keras_rs
import numpy as np
import tensorflow as tf

from contracts import schema
from evaluation.probes import classification_metrics

# Users encoded per forward pass when evaluating.
EVAL_BATCH = 256
SAMPLED_NEGATIVES = 99
SAMPLED_K = 5
FULL_K = 10
_EXCLUDED_SCORE = -1e9


def _batches(items, batch_size=EVAL_BATCH):
    rows = int(items.nrows())
    for start in range(0, rows, batch_size):
        yield start, items[start:start + batch_size]


def user_vectors(model, items, batch_size=EVAL_BATCH):
    """[num_users, model_dim] float32 user vectors of a ``TaskModel`` (inference mode)."""
    encode = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    parts = [encode(model.inputs_for(chunk)).numpy() for _, chunk in _batches(items, batch_size)]
    if not parts:
        return np.zeros((0, model.model_dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


def classification_scores(model, items, labels, class_values):
    """Accuracy, macro-F1 and AUC of a classification ``TaskModel``.

    Args:
        items: tf.RaggedTensor [num_users, (length)].
        labels: int [num_users], class indices.
        class_values: [num_classes] the label each class index stands for (for the report).
    """
    vectors = user_vectors(model, items)
    logits = model.class_logits(tf.constant(vectors), training=False)
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32)).numpy()
    return classification_metrics(np.asarray(labels), probabilities, np.arange(len(class_values)))


def _seen_keys(items, targets, num_item_ids):
    """Sorted int64 keys ``row * num_item_ids + item`` of every item each user met."""
    rows = np.concatenate([items.value_rowids().numpy(), targets.value_rowids().numpy()])
    values = np.concatenate([items.values.numpy(), targets.values.numpy()]).astype(np.int64)
    return np.unique(rows * num_item_ids + values)


def sample_unseen_items(items, targets, num_item_ids, count=SAMPLED_NEGATIVES, seed=0):
    """``count`` distinct-from-history uniform items per user: int32 [num_users, count].

    Vectorised rejection sampling: draws, drops the user's own items, redraws
    where too few remain.
    """
    rng = np.random.default_rng(seed)
    num_users = int(items.nrows())
    seen = _seen_keys(items, targets, num_item_ids)
    result = np.zeros((num_users, count), dtype=np.int32)
    missing = np.arange(num_users)
    filled = np.zeros(num_users, dtype=np.int64)
    while len(missing):
        draws = rng.integers(schema.FIRST_ITEM_ID, num_item_ids, size=(len(missing), 2 * count))
        keys = missing[:, None].astype(np.int64) * num_item_ids + draws
        position = np.searchsorted(seen, keys).clip(max=max(len(seen) - 1, 0))
        unseen = seen[position] != keys if len(seen) else np.ones_like(keys, dtype=bool)
        still = []
        for row, user in enumerate(missing):
            fresh = draws[row][unseen[row]][: count - filled[user]]
            result[user, filled[user]:filled[user] + len(fresh)] = fresh
            filled[user] += len(fresh)
            if filled[user] < count:
                still.append(user)
        missing = np.asarray(still, dtype=np.int64)
    return result


def ranking_scores(model, items, targets, seed=0):
    """HR@5 / MRR@5 (99 sampled negatives) and HR@10 / NDCG@10 (full ranking).

    Args:
        model: a recommendation ``TaskModel``.
        items: tf.RaggedTensor [num_users, (length)], the users' histories.
        targets: tf.RaggedTensor [num_users, (targets)], no empty row; the first is the positive.
    """
    num_item_ids = model.num_item_ids
    positives = tf.gather(targets.values, targets.row_starts()).numpy()
    negatives = sample_unseen_items(items, targets, num_item_ids, seed=seed)
    vectors = user_vectors(model, items)
    sampled_hr = keras_rs.metrics.RecallAtK(k=SAMPLED_K, shuffle_ties=False)
    sampled_mrr = keras_rs.metrics.MeanReciprocalRank(k=SAMPLED_K, shuffle_ties=False)
    full_hr = keras_rs.metrics.RecallAtK(k=FULL_K, shuffle_ties=False)
    full_ndcg = keras_rs.metrics.NDCG(k=FULL_K, shuffle_ties=False)
    score_all = tf.function(model.head.score_all, reduce_retracing=True)
    for start, chunk in _batches(items):
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
