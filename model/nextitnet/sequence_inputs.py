"""Item sequences -> the encoder's inputs and the pretraining targets (TensorFlow ops).

Sequences are LEFT-padded with ``schema.ITEM_PAD_ID`` (0): a user's newest
item, or its closing CLS token, is always at the last position, where a
causal encoder has read the whole sequence. These functions run inside
``tf.function`` and ``tf.data`` and use stateless random ops, so a seed fixes
their output.
"""

import tensorflow as tf

from contracts import schema

# BERT's split of the chosen positions (GRec uses it too).
MASK_SHARE = 0.8
RANDOM_ITEM_SHARE = 0.1


def _check_ragged(items, argument):
    if not isinstance(items, tf.RaggedTensor) or items.shape.rank != 2:
        raise TypeError(f"`{argument}` should be a tf.RaggedTensor [batch_size, (length)] of item ids. "
                        f"Received: {type(items).__name__} of shape {getattr(items, 'shape', None)}.")


def _check_padded(padded, argument):
    if padded.shape.rank != 2:
        raise ValueError(f"`{argument}` should have shape [batch_size, length]. "
                         f"Received: `{argument}.shape` = {padded.shape}.")
    if not padded.dtype.is_integer:
        raise TypeError(f"`{argument}` should hold integer item ids. Received: dtype {padded.dtype.name}.")


def left_pad(items):
    """Ragged item ids [batch, (length)] -> int32 [batch, max_length], left-padded with 0.

    Args:
        items: tf.RaggedTensor [batch_size, (length)] of item ids, oldest first.

    Returns:
        int32 [batch_size, max_length]: each row's items end at the last column.
    """
    _check_ragged(items, "items")
    items = tf.cast(items, tf.int32)
    lengths = tf.cast(items.row_lengths(), tf.int32)
    max_length = tf.reduce_max(tf.concat([lengths, [0]], axis=0))
    rows = tf.cast(items.value_rowids(), tf.int32)
    positions_in_row = tf.range(tf.size(rows, out_type=tf.int32)) - tf.gather(
        tf.cast(items.row_starts(), tf.int32), rows)
    columns = max_length - tf.gather(lengths, rows) + positions_in_row
    batch_size = tf.cast(items.nrows(), tf.int32)
    return tf.scatter_nd(tf.stack([rows, columns], axis=1), items.flat_values,
                         tf.stack([batch_size, max_length]))


def append_cls(items, causal):
    """Adds PeterRec's CLS token(s), then left-pads.

    Args:
        items: tf.RaggedTensor [batch_size, (length)] of item ids.
        causal: True gives ``[items..., CLS]`` (NextItNet); False gives
            ``[CLS, items..., CLS]`` (GRec).

    Returns:
        int32 [batch_size, max_length + 1] (causal) or [batch_size, max_length + 2].
    """
    _check_ragged(items, "items")
    items = tf.cast(items, tf.int32)
    cls = tf.RaggedTensor.from_tensor(
        tf.fill(tf.stack([items.nrows(out_type=tf.int32), 1]), schema.ITEM_CLS_ID))
    parts = [items, cls] if causal else [cls, items, cls]
    return left_pad(tf.concat(parts, axis=1))


def next_item_targets(padded):
    """NextItNet's training pairs: predict item t+1 from the states up to t.

    Args:
        padded: int [batch_size, length] left-padded item ids.

    Returns:
        (inputs, targets, weights), each [batch_size, length - 1]: inputs =
        padded[:, :-1], targets = padded[:, 1:], weights 1.0 where both the
        input and the target are items, else 0.0.
    """
    _check_padded(padded, "padded")
    inputs, targets = padded[:, :-1], padded[:, 1:]
    weights = tf.logical_and(tf.not_equal(inputs, schema.ITEM_PAD_ID),
                             tf.not_equal(targets, schema.ITEM_PAD_ID))
    return inputs, targets, tf.cast(weights, tf.float32)


def mask_items(padded, fraction, seed, num_item_ids):
    """GRec's masked-item inputs: BERT-style masking of a share of each user's items.

    Of every user's n real (non-padding) positions, round(fraction * n) are
    chosen, at least one when n >= 1, uniformly at random. A chosen position
    becomes ``schema.ITEM_MASK_ID`` with probability 0.8, a uniformly drawn
    real item (>= ``schema.FIRST_ITEM_ID``) with 0.1, and stays as it is with
    0.1; the encoder must predict the original item there.

    Args:
        padded: int [batch_size, length] left-padded item ids.
        fraction: share of each user's positions to choose, in [0, 1].
        seed: int32/int64 [2] seed of the stateless random ops (a tensor or a pair).
        num_item_ids: size of the item index, the 3 special ids included.

    Returns:
        (masked_inputs int32 [B, L], targets int32 [B, L] (the original items,
        0 elsewhere), weights float32 [B, L] (1.0 at chosen positions)).
    """
    _check_padded(padded, "padded")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"`fraction` should be in [0, 1]. Received: fraction={fraction}.")
    if int(num_item_ids) <= schema.FIRST_ITEM_ID:
        raise ValueError(f"`num_item_ids` should exceed the {schema.FIRST_ITEM_ID} special ids. "
                         f"Received: num_item_ids={num_item_ids}.")
    padded = tf.cast(padded, tf.int32)
    shape = tf.shape(padded)
    choice_seed, action_seed, item_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3))
    real = tf.not_equal(padded, schema.ITEM_PAD_ID)

    # Rank the real positions of each row in random order (padding ranks last);
    # the first k of that order are chosen.
    keys = tf.where(real, tf.random.stateless_uniform(shape, choice_seed), 2.0)
    ranks = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)
    num_real = tf.reduce_sum(tf.cast(real, tf.float32), axis=1, keepdims=True)
    num_chosen = tf.maximum(tf.floor(float(fraction) * num_real + 0.5), tf.minimum(num_real, 1.0))
    chosen = tf.logical_and(real, tf.cast(ranks, tf.float32) < num_chosen)

    action = tf.random.stateless_uniform(shape, action_seed)
    random_items = tf.random.stateless_uniform(
        shape, item_seed, minval=schema.FIRST_ITEM_ID, maxval=int(num_item_ids), dtype=tf.int32)
    replaced = tf.where(action < MASK_SHARE, schema.ITEM_MASK_ID,
                        tf.where(action < MASK_SHARE + RANDOM_ITEM_SHARE, random_items, padded))
    masked_inputs = tf.where(chosen, replaced, padded)
    targets = tf.where(chosen, padded, tf.zeros_like(padded))
    return masked_inputs, targets, tf.cast(chosen, tf.float32)
