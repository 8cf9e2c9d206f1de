"""User vectors of a ``TaskModel`` for a whole split, batch by batch in inference mode."""

import numpy as np
import tensorflow as tf

# Users encoded per forward pass when evaluating.
EVAL_BATCH = 256


def batches(items, batch_size=EVAL_BATCH):
    """``(start, items[start:start + batch_size])`` over a ragged [num_users, (length)] tensor."""
    rows = int(items.nrows())
    for start in range(0, rows, batch_size):
        yield start, items[start:start + batch_size]


def task_user_vectors(model, items, batch_size=EVAL_BATCH):
    """[num_users, dim] float32 user vectors of a ``TaskModel`` (inference mode)."""
    encode = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    parts = [encode(model.inputs_for(chunk)).numpy() for _, chunk in batches(items, batch_size)]
    if not parts:
        return np.zeros((0, model.dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)
