"""Reads the item sequences of a task's users into memory, for fine-tuning.

A downstream task (PeterRec's fine-tuning) has labelled users in the
thousands to millions, and every epoch visits each of them, so their
sequences are read once with the sequence loader and kept as flat numpy
arrays with row offsets (no per-user Python objects).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from contracts import schema
from data_loader.sequence_dataset import make_sequence_dataset
from data_loader.sequence_options import SequenceReaderOptions

# Users per batch while reading; only the read's speed depends on it.
_READ_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class UserSequences:
    """Item sequences of users, row i belonging to ``ids[i]``.

    Attributes:
        ids: np.ndarray[str] [num_users].
        items: tf.RaggedTensor int32 [num_users, (length)], oldest -> newest.
        target_items: tf.RaggedTensor int32 [num_users, (targets)] (may be empty rows).
    """

    ids: np.ndarray
    items: tf.RaggedTensor
    target_items: tf.RaggedTensor

    def __len__(self):
        return len(self.ids)

    def take(self, rows):
        """The users at ``rows`` (an int array), in that order."""
        rows = tf.constant(np.asarray(rows, dtype=np.int64))
        return UserSequences(
            ids=self.ids[rows.numpy()],
            items=tf.gather(self.items, rows),
            target_items=tf.gather(self.target_items, rows))


def read_user_sequences(table_files, max_items=0):
    """Every user of a sequence table, with at least one history item.

    Args:
        table_files: a ``TableFiles`` of the ``sequences`` table.
        max_items: keep each user's most recent ``max_items`` items; 0 keeps all.

    Returns:
        ``UserSequences``.
    """
    options = SequenceReaderOptions(batch_size=_READ_BATCH, max_items=max_items, min_items=1,
                                    with_target_items=True, prefetch=False)
    ids, items, targets = [], [], []
    for batch in make_sequence_dataset(table_files, options):
        ids.append(batch[schema.ID].numpy())
        items.append(batch[schema.ITEMS])
        targets.append(batch[schema.TARGET_ITEMS])
    if not ids:
        return UserSequences(np.array([], dtype=str),
                             tf.ragged.constant([], dtype=tf.int32, ragged_rank=1),
                             tf.ragged.constant([], dtype=tf.int32, ragged_rank=1))
    return UserSequences(
        ids=np.char.decode(np.concatenate(ids).astype(bytes), "utf-8"),
        items=tf.concat(items, axis=0),
        target_items=tf.concat(targets, axis=0))
