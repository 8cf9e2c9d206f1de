"""How a table is read: batching, shuffling, repetition and truncation."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    """Options shared by the Parquet and TFRecord readers.

    Attributes:
        batch_size: examples per batch for ONE input pipeline (under
            ``tf.distribute`` pass the per-replica size; ``make_dataset`` does).
        with_target: read ``target_words``/``target_counts`` (training tables).
        shuffle: shuffle file order and records (within ``shuffle_buffer``).
        shuffle_buffer: records held for shuffling.
        repeat: loop over the data forever (training).
        drop_remainder: drop a short final batch (only matters without repeat).
        seed: makes shuffling deterministic; None draws a fresh order.
        weighted_target: log(1 + count) target weights instead of uniform.
        max_behaviours: keep the most recent behaviours of each history.
        max_words: keep the first words of each behaviour.
        max_targets: keep the most frequent target words.
        group_by_length: within each shuffle buffer, batch users of similar
            history length together, then shuffle the batch order. The model
            pads a batch to its longest history, so this cuts padding (and
            step time) on long-tailed data; only with ``shuffle``.
        random_target_fraction: read whole sequences (no target columns) and
            draw a fresh random history/target split of every user in every
            batch, this share of behaviours as the target; None keeps the
            table's own targets.
        prefetch: batches prepared ahead (tf.data.AUTOTUNE by default).
    """

    batch_size: int
    with_target: bool = True
    shuffle: bool = False
    shuffle_buffer: int = 10_000
    repeat: bool = False
    drop_remainder: bool = False
    seed: int | None = None
    weighted_target: bool = False
    max_behaviours: int | None = None
    max_words: int | None = None
    max_targets: int | None = None
    group_by_length: bool = False
    random_target_fraction: float | None = None
    prefetch: int = -1  # tf.data.AUTOTUNE

    @property
    def reads_targets(self):
        """Whether the table's target columns are read (not drawn at random)."""
        return self.with_target and not self.random_target_fraction
