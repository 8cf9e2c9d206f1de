"""tf.data pipelines of a fine-tuning task, from sequences held in memory.

Classification batches: ``{"items": ragged int32 [B, (L)], "label": int32 [B]}``.
Sequence batches (next-item prediction): ``{"items": ragged int32 [B, (L)]}``.
Recommendation batches: ``{"items": ..., "positive": int32 [B], "negatives": int32 [B, N]}``:
each visit of a user draws one of its target-window items as the positive and
``N`` uniform items as negatives (PeterRec's fine-tuning protocol; a negative
that happens to be one of the user's items is rare and left in, as there).
"""

import tensorflow as tf

from contracts import schema

ITEMS = schema.ITEMS
LABEL = "label"
POSITIVE = "positive"
NEGATIVES = "negatives"


def _batched(dataset, batch_size, shuffle, seed, repeat, num_rows):
    if shuffle:
        dataset = dataset.shuffle(max(num_rows, 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size, drop_remainder=False)


def classification_dataset(items, labels, batch_size, shuffle=False, seed=0, repeat=False):
    """Batches of users and their class index.

    Args:
        items: tf.RaggedTensor int32 [num_users, (length)].
        labels: int array [num_users], class indices.
        batch_size: users per batch.
        shuffle, seed, repeat: reshuffled every epoch with ``shuffle``; endless with ``repeat``.
    """
    dataset = tf.data.Dataset.from_tensor_slices(
        {ITEMS: items, LABEL: tf.constant(labels, dtype=tf.int32)})
    dataset = _batched(dataset, batch_size, shuffle, seed, repeat, int(items.nrows()))
    return dataset.prefetch(tf.data.AUTOTUNE)


def recommendation_dataset(items, target_items, num_item_ids, batch_size, num_negatives=1,
                           shuffle=False, seed=0, repeat=False):
    """Batches of users, one positive target item each and uniform negatives.

    Args:
        items: tf.RaggedTensor int32 [num_users, (length)].
        target_items: tf.RaggedTensor int32 [num_users, (targets)], no empty row.
        num_item_ids: size of the item index; negatives come from the real items.
        batch_size, num_negatives, shuffle, seed, repeat: as named.
    """
    dataset = tf.data.Dataset.from_tensor_slices({ITEMS: items, "targets": target_items})
    dataset = _batched(dataset, batch_size, shuffle, seed, repeat, int(items.nrows()))

    def draw(batch):
        targets = batch.pop("targets")
        lengths = targets.row_lengths()
        pick = tf.cast(tf.random.uniform(tf.shape(lengths), seed=seed) *
                       tf.cast(lengths, tf.float32), tf.int64)
        pick = tf.minimum(pick, lengths - 1)
        batch[POSITIVE] = tf.gather(targets.values, targets.row_starts() + pick)
        batch[NEGATIVES] = tf.random.uniform(
            [tf.shape(lengths)[0], num_negatives], minval=schema.FIRST_ITEM_ID,
            maxval=num_item_ids, dtype=tf.int32, seed=seed + 1)
        return batch

    return dataset.map(draw, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def sequence_dataset(items, batch_size, shuffle=False, seed=0, repeat=False):
    """Batches of users' item sequences alone (next-item prediction needs nothing else).

    Args:
        items: tf.RaggedTensor int32 [num_users, (length)].
        batch_size, shuffle, seed, repeat: as in ``classification_dataset``.
    """
    dataset = tf.data.Dataset.from_tensor_slices({ITEMS: items})
    dataset = _batched(dataset, batch_size, shuffle, seed, repeat, int(items.nrows()))
    return dataset.prefetch(tf.data.AUTOTUNE)
