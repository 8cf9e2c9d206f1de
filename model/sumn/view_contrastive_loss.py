"""A contrastive objective beside SUMN's: two disjoint random views of each user should match.

Each of a user's behaviours goes to one of two views at random (a coin per
behaviour, so the views are disjoint and together the whole history); both
views are encoded by the same model, and the last hop's vectors (what
inference writes) of a user's two views should be nearer to each other than
to the other users' views in the batch: the symmetric InfoNCE / NT-Xent loss
of SimCLR (Chen et al., ICML 2020) over cosine similarities at a temperature,
the form CL4SRec (Xie et al., ICDE 2022) brought to behaviour sequences with
crop/mask/reorder views. Disjoint halves fit SUMN's premise that any part of
a user's behaviours speaks for the user (behavioural consistency).

Negatives are the other users of the replica's batch; a user with fewer than
two present behaviours has no pair of views and neither adds a loss nor
serves as a negative. Losses are summed, not averaged: the trainer divides
by the GLOBAL batch size (``tf.distribute`` convention). TensorFlow ops, as
``model_inputs.py``: the input is a ragged tensor.
"""

import tensorflow as tf

from model.layers.input_checks import check_rank


def disjoint_views(history, seed=None):
    """Splits every user's behaviours into two disjoint random views.

    Args:
        history: ``tf.RaggedTensor`` [batch, (behaviours), (words)].
        seed: op seed of the coins (with the global seed, fixes the split).

    Returns:
        ``(first, second)``: two ``tf.RaggedTensor`` [batch, (behaviours),
        (words)]; each behaviour of a user is in exactly one of them, in its
        original order.
    """
    coins = tf.random.uniform(tf.reshape(history.values.nrows(), [1]), seed=seed) < 0.5
    in_first = tf.RaggedTensor.from_row_splits(coins, history.row_splits, validate=False)
    first = tf.ragged.boolean_mask(history, in_first)
    second = tf.ragged.boolean_mask(history, tf.logical_not(in_first))
    return first, second


def view_contrastive_loss(first, second, valid, temperature):
    """Symmetric InfoNCE between the two views' vectors; each user's other view is its positive.

    Args:
        first: [batch, dim] vectors of the first views.
        second: [batch, dim] vectors of the second views.
        valid: [batch] bool, users whose two views both hold a behaviour.
        temperature: positive float dividing the cosine similarities
            (SimCLR: 0.1-0.5).

    Returns:
        [batch] float32 losses, 0 for users that are not ``valid`` (summed
        over the batch by the caller).
    """
    check_rank(first, 2, "first", "[batch, dim]")
    check_rank(second, 2, "second", "[batch, dim]")
    if not float(temperature) > 0:
        raise ValueError(f"`temperature` should be positive. Received: temperature={temperature}.")
    first = tf.math.l2_normalize(tf.cast(first, tf.float32), axis=-1)
    second = tf.math.l2_normalize(tf.cast(second, tf.float32), axis=-1)
    valid = tf.cast(valid, tf.bool)
    similarities = tf.matmul(first, second, transpose_b=True) / float(temperature)  # [batch, batch]
    # Users without a pair are nobody's negative either.
    pairs = valid[:, None] & valid[None, :]
    similarities = tf.where(pairs, similarities, -1e9)
    positives = tf.linalg.diag_part(similarities)
    first_to_second = tf.reduce_logsumexp(similarities, axis=1) - positives
    second_to_first = tf.reduce_logsumexp(similarities, axis=0) - positives
    return tf.where(valid, 0.5 * (first_to_second + second_to_first), 0.0)
