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

from data_dumper import schema
from data_loader.random_split import random_consistency_split


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
    if weighted_target:
        raw = tf.math.log1p(tf.cast(target_counts, tf.float32))
    else:
        raw = tf.ones_like(tf.cast(target_words, tf.float32))
    totals = tf.reduce_sum(raw, axis=1, keepdims=True)
    return raw / tf.maximum(totals, 1e-12)


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
    history = tf.cast(history, tf.int32)
    if random_target_fraction:
        history, target_words, target_counts = random_consistency_split(
            history, random_target_fraction, seed)
    if max_behaviours:
        history = history[:, -max_behaviours:]
    if max_words:
        history = history[:, :, :max_words]
    batch = {
        schema.ID: ids,
        schema.HISTORY: history,
        schema.HISTORY_LENGTH: tf.cast(history.row_lengths(axis=1), tf.int32),
    }
    if target_words is not None:
        if max_targets:
            target_words = target_words[:, :max_targets]
            target_counts = target_counts[:, :max_targets]
        batch[schema.TARGET_WORDS] = tf.cast(target_words, tf.int32)
        batch["target_weights"] = target_weights(target_words, target_counts, weighted_target)
    return batch
