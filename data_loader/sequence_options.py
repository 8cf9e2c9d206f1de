"""How an item-sequence table is read: batching, shuffling, repetition, truncation, filtering."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class SequenceReaderOptions:
    """Options of ``data_loader.sequence_dataset.make_sequence_dataset``.

    Attributes:
        batch_size: users per batch for ONE input pipeline; under
            ``tf.distribute`` pass the GLOBAL batch size with an input context
            and ``make_sequence_dataset`` takes the per-replica share.
        shuffle: shuffle file order and users (within ``shuffle_buffer``).
        shuffle_buffer: users held for shuffling.
        repeat: loop over the data forever (training).
        drop_remainder: drop a short final batch (only matters without repeat).
        seed: makes shuffling deterministic.
        max_items: keep each user's MOST RECENT ``max_items`` history items;
            0 keeps them all.
        min_items: drop users with fewer history items than this (counted
            before the ``max_items`` cut); NextItNet needs 2 to predict anything.
        with_target_items: read ``target_items`` (the target window's items).
        prefetch: prefetch batches (``tf.data.AUTOTUNE``).
    """

    batch_size: int
    shuffle: bool = False
    shuffle_buffer: int = 10_000
    repeat: bool = False
    drop_remainder: bool = False
    seed: int = 0
    max_items: int = 0
    min_items: int = 1
    with_target_items: bool = True
    prefetch: bool = True

    def __post_init__(self):
        for name, lowest in (("batch_size", 1), ("shuffle_buffer", 1), ("max_items", 0),
                             ("min_items", 0)):
            value = getattr(self, name)
            if value < lowest:
                raise ValueError(f"SequenceReaderOptions.{name}={value} must be at least {lowest}")
