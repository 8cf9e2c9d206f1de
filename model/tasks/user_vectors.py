"""User vectors of a ``TaskModel`` for a whole split, batch by batch in inference mode, and top items."""

import weakref

import numpy as np
import tensorflow as tf

from contracts import schema

# Users encoded per forward pass when evaluating.
EVAL_BATCH = 256


def batches(items, batch_size=EVAL_BATCH):
    """``(start, items[start:start + batch_size])`` over a ragged [num_users, (length)] tensor."""
    rows = int(items.nrows())
    for start in range(0, rows, batch_size):
        yield start, items[start:start + batch_size]


# One traced encoder per model and purpose: validation after every epoch reuses it.
_ENCODERS = weakref.WeakKeyDictionary()


def inference_function(model, purpose, function):
    """``tf.function(lambda x: function(model, x))``, traced once and kept while ``model`` lives.

    The function holds the model weakly, so keeping it does not keep the model alive.
    """
    functions = _ENCODERS.setdefault(model, {})
    if purpose not in functions:
        owner = weakref.ref(model)
        functions[purpose] = tf.function(lambda inputs: function(owner(), inputs),
                                         reduce_retracing=True)
    return functions[purpose]


def task_user_vectors(model, items, batch_size=EVAL_BATCH):
    """[num_users, dim] float32 user vectors of a ``TaskModel`` (inference mode)."""
    encode = inference_function(model, "user_vectors",
                                lambda user_model, inputs: user_model(inputs, training=False))
    parts = [encode(model.inputs_for(chunk)).numpy() for _, chunk in batches(items, batch_size)]
    if not parts:
        return np.zeros((0, model.dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


def top_unseen_items(score_all, items, vectors, top_k):
    """int32 [num_users, top_k]: each user's best-scored item ids, its history and the special ids left out.

    Args:
        score_all: [batch, dim] vectors -> [batch, num_item_ids] scores.
        items: tf.RaggedTensor [num_users, (length)] the users' histories.
        vectors: float32 [num_users, dim].
        top_k: items per user.
    """
    score = tf.function(score_all, reduce_retracing=True)
    parts = []
    for start, chunk in batches(items):
        end = start + int(chunk.nrows())
        scores = tf.cast(score(tf.constant(vectors[start:end])), tf.float32).numpy()
        scores[:, :schema.FIRST_ITEM_ID] = -np.inf
        scores[chunk.value_rowids().numpy(), chunk.values.numpy()] = -np.inf
        parts.append(tf.math.top_k(scores, k=min(top_k, scores.shape[1])).indices.numpy())
    if not parts:
        return np.zeros((0, top_k), dtype=np.int32)
    return np.concatenate(parts).astype(np.int32)
