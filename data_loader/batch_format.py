"""The batch every reader yields, and the per-batch TF ops that finish it.

A batch is a dict (``B`` = batch size, ragged dimensions in parentheses):

    id              [B] string
    history         [B, (behaviours), (words)] int32 RaggedTensor: oldest -> newest,
                    at most ``max_behaviours`` (the most recent) of at most
                    ``max_words`` words each
    history_length  [B] int32: behaviours per user after truncation
    target_words    [B, (targets)] int32 RaggedTensor     (training tables only)
    target_weights  [B, (targets)] float32 RaggedTensor   (training tables only):
                    each row sums to 1; uniform 1/len, or log(1 + count)
                    normalised when ``weighted_target`` is set

Ragged, not padded: the loader keeps no padding at all, so the model decides
how to pad (per batch, to the longest real history), and cost follows the
real data rather than SUMN's 900 x 24 maxima.
"""

import tensorflow as tf

from contracts import schema
from data_loader.random_split import random_consistency_split

# The batch key of the soft target distribution: computed per batch from
# target_counts, so it is not a table column (see contracts/schema.py).
TARGET_WEIGHTS = "target_weights"


def target_weights(target_words, target_counts, weighted_target):
    """Soft target distribution over each user's target words.

    Args:
        target_words: [B, (T)] ragged word ids.
        target_counts: [B, (T)] ragged occurrence counts (>= 1).
        weighted_target: False for uniform 1/len, True for
            log(1 + count) / sum(log(1 + count)) (SUMN's ``--weighted_target``).

    Returns:
        [B, (T)] float32 ragged weights; every non-empty row sums to 1.
    """
    # On the flat values with the row ids: ragged reduce_sum and ragged-by-dense
    # division build many small ops per batch and were the loader's largest cost.
    row_ids = target_words.value_rowids()
    if weighted_target:
        raw = tf.math.log1p(tf.cast(target_counts.flat_values, tf.float32))
        totals = tf.math.unsorted_segment_sum(raw, row_ids, target_words.nrows())
        weights = raw / tf.gather(tf.maximum(totals, 1e-12), row_ids)
    else:
        lengths = tf.cast(target_words.row_lengths(), tf.float32)
        weights = tf.gather(1.0 / tf.maximum(lengths, 1.0), row_ids)
    return target_words.with_flat_values(weights)


def _longest(splits):
    """The longest row of a ragged dimension, from its row splits (0 when there are none)."""
    return tf.reduce_max(tf.concat([splits[1:] - splits[:-1], [0]], 0))


def _cut_if_longer(ragged, splits, limit, cut):
    """``cut(ragged)`` when some row of ``splits`` is longer than ``limit``, else ``ragged``.

    Tables are usually built with the same limits, and ragged slicing costs
    ~1 ms of small ops per batch even when it changes nothing.
    """
    return tf.cond(_longest(splits) > limit, lambda: cut(ragged), lambda: ragged)


def finish_batch(ids, history, target_words=None, target_counts=None, *,
                 max_behaviours=None, max_words=None, max_targets=None, weighted_target=False,
                 random_target_fraction=None, seed=None):
    """Truncates histories and derives lengths and target weights, all in TF ops.

    Args:
        ids: [B] string.
        history: [B, (behaviours), (words)] integer ragged.
        target_words, target_counts: [B, (T)] integer ragged, or None for
            inference tables.
        max_behaviours: keep only the most recent behaviours (SUMN's
            ``--max_query_per_week``); None keeps all.
        max_words: keep only the first words of each behaviour (SUMN's
            ``--max_words_per_query``); None keeps all.
        max_targets: keep only the first (most frequent: tables store them in
            that order) target words (SUMN's ``--target_length``); None keeps all.
        weighted_target: see ``target_weights``.
        random_target_fraction: when set, ``history`` holds whole sequences and
            each batch draws a fresh random split of them: this share of every
            user's behaviours becomes the target (data_loader/random_split.py).
        seed: seed of those random splits.

    Returns:
        The batch dict described in the module docstring.
    """
    history = history.with_flat_values(tf.cast(history.flat_values, tf.int32))
    if random_target_fraction:
        history, target_words, target_counts = random_consistency_split(
            history, random_target_fraction, seed)
    if max_behaviours:
        history = _cut_if_longer(history, history.row_splits, max_behaviours,
                                 lambda ragged: ragged[:, -max_behaviours:])
    if max_words:
        history = _cut_if_longer(history, history.values.row_splits, max_words,
                                 lambda ragged: ragged[:, :, :max_words])
    batch = {
        schema.ID: ids,
        schema.HISTORY: history,
        schema.HISTORY_LENGTH: tf.cast(history.row_lengths(axis=1), tf.int32),
    }
    if target_words is not None:
        if max_targets:
            target_words, target_counts = tf.cond(
                _longest(target_words.row_splits) > max_targets,
                lambda: (target_words[:, :max_targets], target_counts[:, :max_targets]),
                lambda: (target_words, target_counts))
        batch[schema.TARGET_WORDS] = target_words.with_flat_values(
            tf.cast(target_words.flat_values, tf.int32))
        batch[TARGET_WEIGHTS] = target_weights(target_words, target_counts, weighted_target)
    return batch


def cut_into_batches(chunk, starts, batch_size):
    """The batches of a finished chunk: rows [start, start + batch_size) for each start.

    A reader can finish thousands of rows with one ``finish_batch`` and cut
    them here; each batch then costs a few slices instead of a Python round
    trip plus ~50 small ops.

    Args:
        chunk: a batch dict from ``finish_batch`` holding many batches' rows.
        starts: [num_batches] int64, the first row of each batch, in output order.
        batch_size: rows per batch (a batch at the end of the chunk may be short).
    """
    num_rows = tf.shape(chunk[schema.ID], out_type=tf.int64)[0]

    def cut(first):
        last = tf.minimum(first + batch_size, num_rows)
        return {key: _slice_rows(value, first, last) for key, value in chunk.items()}

    return tf.data.Dataset.from_tensor_slices(starts).map(cut)


def _slice_rows(value, first, last):
    """Rows [first, last) of a dense or ragged tensor, with plain slices (RaggedTensor
    indexing with tensor bounds builds many more ops)."""
    if not isinstance(value, tf.RaggedTensor):
        return value[first:last]
    splits = value.row_splits[first:last + 1]
    return tf.RaggedTensor.from_row_splits(
        _slice_rows(value.values, splits[0], splits[-1]), splits - splits[0], validate=False)
