"""Fresh behavioural-consistency windows for every batch.

SUMN's objective only needs the history and the target to be DISJOINT sets of
the same user's behaviours. A table holds one fixed split per user, which a
small data set (MovieLens: 6,040 users) exhausts within a few epochs. Drawing
a new random split of each user's whole sequence for every batch gives the
encoder a different (history, target) pair every time it sees a user.

All in TF ops on the ragged batch: no Python per user.
"""

import tensorflow as tf

from contracts import schema


def _random_targets(row_lengths, fraction, seed):
    """[num_behaviours] bool: which behaviours form the target, per user.

    Every user with two or more behaviours gets round(fraction * length)
    targets, at least one, leaving at least one behaviour in the history. A
    user with one behaviour keeps it as history and has an empty target,
    which adds nothing to the loss.
    """
    num_behaviours = tf.reduce_sum(row_lengths)
    user = tf.repeat(tf.range(tf.size(row_lengths, out_type=tf.int64)), row_lengths)
    scores = tf.random.uniform([num_behaviours], seed=seed, dtype=tf.float64)
    # Sorting user + score ranks each user's behaviours in a random order.
    order = tf.argsort(tf.cast(user, tf.float64) + scores, stable=True)
    rank_in_order = tf.range(num_behaviours) - tf.gather(
        tf.concat([[0], tf.cumsum(row_lengths)[:-1]], 0), tf.gather(user, order))
    rank = tf.scatter_nd(order[:, None], rank_in_order, [num_behaviours])
    lengths = tf.gather(row_lengths, user)
    wanted = tf.cast(tf.round(fraction * tf.cast(lengths, tf.float32)), tf.int64)
    wanted = tf.where(lengths >= 2, tf.clip_by_value(wanted, 1, tf.maximum(lengths - 1, 1)), 0)
    return rank < wanted


def _bag_of_words(target_behaviours, vocabulary_bound):
    """Distinct words per user with counts, most frequent first; <oov> left out.

    Args:
        target_behaviours: [B, (behaviours), (words)] int ragged.
        vocabulary_bound: any integer larger than every word id.

    Returns:
        (words, counts): [B, (targets)] int32 ragged each.
    """
    words = target_behaviours.merge_dims(1, 2)
    user = tf.cast(words.value_rowids(), tf.int64)
    values = tf.cast(words.flat_values, tf.int64)
    keep = values > schema.OOV_ID
    user, values = tf.boolean_mask(user, keep), tf.boolean_mask(values, keep)
    keys, _, counts = tf.unique_with_counts(user * vocabulary_bound + values, out_idx=tf.int64)
    # Order by user, then by descending count, then by word id: stable sorts
    # from the least to the most significant key.
    order = tf.argsort(keys % vocabulary_bound, stable=True)
    order = tf.gather(order, tf.argsort(-tf.gather(counts, order), stable=True))
    order = tf.gather(order, tf.argsort(tf.gather(keys // vocabulary_bound, order), stable=True))
    keys, counts = tf.gather(keys, order), tf.gather(counts, order)
    key_user = keys // vocabulary_bound
    nrows = words.nrows(out_type=tf.int64)
    word_ids = tf.RaggedTensor.from_value_rowids(
        tf.cast(keys % vocabulary_bound, tf.int32), key_user, nrows=nrows)
    word_counts = tf.RaggedTensor.from_value_rowids(tf.cast(counts, tf.int32), key_user, nrows=nrows)
    return word_ids, word_counts


def random_consistency_split(history, fraction, seed=None):
    """Splits every user's behaviours at random into a history and a target bag of words.

    Args:
        history: [B, (behaviours), (words)] ragged: each user's whole sequence,
            oldest first.
        fraction: share of each user's behaviours that become the target.
        seed: op seed, so a seeded reader gives the same splits every run.

    Returns:
        (history, target_words, target_counts): the kept behaviours in their
        original order [B, (behaviours), (words)], and the target's distinct
        words with counts, most frequent first, each [B, (targets)].
    """
    row_lengths = history.row_lengths()
    is_target = tf.RaggedTensor.from_row_lengths(
        _random_targets(row_lengths, fraction, seed), row_lengths)
    kept = tf.ragged.boolean_mask(history, tf.logical_not(is_target))
    targets = tf.ragged.boolean_mask(history, is_target)
    # Word ids are non-negative int32, so 2**31 bounds them without knowing the vocabulary.
    words, counts = _bag_of_words(targets, tf.constant(2 ** 31, tf.int64))
    return kept, words, counts
