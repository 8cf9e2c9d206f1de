"""Reads TFRecord table shards with TensorFlow's own ``TFRecordDataset``.

Records are shuffled and batched as serialized strings, and a whole batch is
parsed by one ``tf.io.parse_example`` call (C++), so no Python runs per
record. The flattened Example layout is documented in contracts/schema.py.
"""

import tensorflow as tf

from contracts import schema
from data_loader.batch_format import finish_batch

_READ_BUFFER_BYTES = 8 << 20


def _ragged_int64():
    # int64 row splits everywhere, as the Parquet reader produces.
    return tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)


def feature_spec(with_target):
    """``tf.io.parse_example`` features of a table's Example records."""
    spec = {
        schema.ID: tf.io.FixedLenFeature([], tf.string),
        schema.HISTORY_WORDS: _ragged_int64(),
        schema.HISTORY_WORD_COUNTS: _ragged_int64(),
    }
    if with_target:
        spec[schema.TARGET_WORDS] = _ragged_int64()
        spec[schema.TARGET_COUNTS] = _ragged_int64()
    return spec


def parse_batch(serialized, with_target):
    """Parses [B] serialized Examples into ragged parts (history, targets, counts)."""
    parsed = tf.io.parse_example(serialized, feature_spec(with_target))
    words = parsed[schema.HISTORY_WORDS]
    word_counts = parsed[schema.HISTORY_WORD_COUNTS]
    history = tf.RaggedTensor.from_nested_row_lengths(
        words.flat_values,
        [tf.cast(word_counts.row_lengths(), tf.int64), word_counts.flat_values],
        validate=False)
    if not with_target:
        return parsed[schema.ID], history, None, None
    return parsed[schema.ID], history, parsed[schema.TARGET_WORDS], parsed[schema.TARGET_COUNTS]


def _length_grouped_batches(records, options):
    """Batches of serialized records whose histories have similar lengths.

    Records are taken a buffer at a time; one ``parse_example`` of just the
    per-behaviour word counts gives every history's length, the buffer is
    sorted by it and cut into batches, and the batches are shuffled.
    """
    batches_per_group = max(options.shuffle_buffer // options.batch_size, 1)
    group_size = batches_per_group * options.batch_size
    lengths_spec = {schema.HISTORY_WORD_COUNTS: _ragged_int64()}

    def sort_by_length(serialized):
        lengths = tf.io.parse_example(serialized, lengths_spec)[schema.HISTORY_WORD_COUNTS].row_lengths()
        return tf.gather(serialized, tf.argsort(lengths, stable=True))

    groups = records.batch(group_size).map(sort_by_length, num_parallel_calls=tf.data.AUTOTUNE)
    batches = groups.flat_map(
        lambda serialized: tf.data.Dataset.from_tensor_slices(serialized).batch(
            options.batch_size, drop_remainder=options.drop_remainder))
    return batches.shuffle(batches_per_group, seed=options.seed)


def tfrecord_dataset(files, options):
    """A ``tf.data.Dataset`` of batches (see data_loader.batch_format) from TFRecord shards.

    Args:
        files: the shard paths this input pipeline reads.
        options: a ``ReaderOptions``.
    """
    files = list(files)
    file_names = tf.data.Dataset.from_tensor_slices(files)
    if options.shuffle:
        file_names = file_names.shuffle(len(files), seed=options.seed, reshuffle_each_iteration=True)
    # Files are read one after another so an unshuffled read has the same
    # order as the Parquet reader; parsing, not reading, is the cost here.
    records = file_names.flat_map(
        lambda name: tf.data.TFRecordDataset(name, buffer_size=_READ_BUFFER_BYTES))
    if options.shuffle:
        records = records.shuffle(options.shuffle_buffer, seed=options.seed,
                                  reshuffle_each_iteration=True)
    if options.repeat:
        records = records.repeat()
    if options.shuffle and options.group_by_length:
        batches = _length_grouped_batches(records, options)
    else:
        batches = records.batch(options.batch_size, drop_remainder=options.drop_remainder)

    def parse(serialized):
        ids, history, target_words, target_counts = parse_batch(serialized, options.reads_targets)
        return finish_batch(
            ids, history, target_words, target_counts,
            max_behaviours=options.max_behaviours, max_words=options.max_words,
            max_targets=options.max_targets,
            random_target_fraction=options.random_target_fraction, seed=options.seed,
            weighted_target=options.weighted_target)

    return batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
