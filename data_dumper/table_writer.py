"""Writes one table (training, inference or sequences) as shard files: Parquet or TFRecord.

``write_shard_file`` writes one shard from Arrow record batches; both engines
write through it (DuckDB here, shard by shard; Spark from one task per shard,
``spark_shard_writer``), so their files carry the same schema and encoding.
Rows come in the order the query fixes, so the files are the same on every run.
Each shard is written under a temporary name and renamed. Parquet shards carry exactly
``schema.TRAINING_SCHEMA`` / ``schema.INFERENCE_SCHEMA`` /
``schema.SEQUENCE_SCHEMA``; TFRecord shards hold one ``tf.train.Example`` per
row, flattened as ``contracts/schema.py`` documents. TensorFlow is imported
only for TFRecord.
"""

import os

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import schema
from util.atomic import atomic_path
from util.quiet_tensorflow import import_tensorflow

# Rows per Arrow batch taken from DuckDB (and per Parquet row group).
BATCH_ROWS = 4096


def write_table_shards(con, shard_rows_sql, table_schema, folder, num_shards, file_format):
    """Writes one table as ``num_shards`` shard files.

    Args:
      con: a DuckDB connection.
      shard_rows_sql: ``shard index -> SQL`` yielding that shard's rows with the
        columns of ``table_schema`` (and possibly more), in a fixed order.
      table_schema: ``schema.TRAINING_SCHEMA``, ``schema.INFERENCE_SCHEMA`` or
        ``schema.SEQUENCE_SCHEMA``.
      folder: where the shards go (created if needed).
      num_shards: number of shard files; a shard without users is still written (empty).
      file_format: ``schema.PARQUET`` or ``schema.TFRECORD``.

    Returns:
      The shard file names, in shard order.
    """
    os.makedirs(folder, exist_ok=True)
    names = []
    for index in range(num_shards):
        name = schema.shard_name(index, num_shards, file_format)
        reader = con.sql(shard_rows_sql(index)).to_arrow_reader(BATCH_ROWS)
        write_shard_file(reader, table_schema, os.path.join(folder, name), file_format)
        names.append(name)
    return names


def write_shard_file(batches, table_schema, path, file_format):
    """Writes one shard file from Arrow record batches, atomically (temporary name, then rename).

    Args:
      batches: record batches holding at least the columns of ``table_schema``
        (others, such as the placement columns, are dropped), in row order.
      table_schema: the shard's schema; each batch is cast to it exactly, so
        field names, nullability and list types are the contract's whatever
        engine produced the batches.
      path: the shard file to write.
      file_format: ``schema.PARQUET`` or ``schema.TFRECORD``.

    Returns:
      The number of rows written.
    """
    written = 0

    def exact(batches):
        nonlocal written
        for batch in batches:
            written += batch.num_rows
            yield batch.select(table_schema.names).cast(table_schema)

    with atomic_path(path) as temporary:
        if file_format == schema.PARQUET:
            _write_parquet(exact(batches), table_schema, temporary)
        else:
            _write_tfrecord(exact(batches), temporary, table_schema)
    return written


def _write_parquet(batches, table_schema, path):
    with pq.ParquetWriter(path, table_schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


def _offsets(lengths):
    """Start offsets (length n + 1) of consecutive runs with these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets.tolist()  # plain ints: the per-row slicing below is Python


def _write_tfrecord(batches, path, table_schema):
    # Only this layout needs TensorFlow (a slow import, quietened: util/quiet_tensorflow.py).
    tf = import_tensorflow()

    examples = _sequence_examples if schema.ITEMS in table_schema.names else _behaviour_examples
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            for example in examples(batch, tf):
                writer.write(example.SerializeToString(deterministic=True))


def _int64_feature(tf, values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _bytes_feature(tf, text):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))


def _sequence_examples(batch, tf):
    """Yields one ``tf.train.Example`` per row of a sequence-table batch."""
    # Flatten once per batch with Arrow; per row only slice.
    items = batch.column(schema.ITEMS)
    item_offsets = _offsets(pc.list_value_length(items).to_numpy())
    item_values = pc.list_flatten(items).to_numpy().tolist()
    targets = batch.column(schema.TARGET_ITEMS)
    target_offsets = _offsets(pc.list_value_length(targets).to_numpy())
    target_values = pc.list_flatten(targets).to_numpy().tolist()
    for row, user_id in enumerate(batch.column(schema.ID).to_pylist()):
        feature = {
            schema.ID: _bytes_feature(tf, user_id),
            schema.ITEMS: _int64_feature(tf, item_values[item_offsets[row]:item_offsets[row + 1]]),
            schema.TARGET_ITEMS: _int64_feature(
                tf, target_values[target_offsets[row]:target_offsets[row + 1]]),
        }
        yield tf.train.Example(features=tf.train.Features(feature=feature))


def _behaviour_examples(batch, tf):
    """Yields one ``tf.train.Example`` per row of a training or inference batch."""
    # Flatten the nested lists once per batch with Arrow; per row only slice.
    history = batch.column(schema.HISTORY)
    user_offsets = _offsets(pc.list_value_length(history).to_numpy())
    behaviours = pc.list_flatten(history)
    word_counts = pc.list_value_length(behaviours).to_numpy()
    word_offsets = _offsets(word_counts)
    words = pc.list_flatten(behaviours).to_numpy().tolist()
    word_counts = word_counts.tolist()
    has_target = schema.TARGET_WORDS in batch.schema.names
    if has_target:
        target = batch.column(schema.TARGET_WORDS)
        target_offsets = _offsets(pc.list_value_length(target).to_numpy())
        target_words = pc.list_flatten(target).to_numpy().tolist()
        target_counts = pc.list_flatten(batch.column(schema.TARGET_COUNTS)).to_numpy().tolist()
    for row, user_id in enumerate(batch.column(schema.ID).to_pylist()):
        first, last = user_offsets[row], user_offsets[row + 1]
        feature = {
            schema.ID: _bytes_feature(tf, user_id),
            schema.HISTORY_WORDS: _int64_feature(tf, words[word_offsets[first]:word_offsets[last]]),
            schema.HISTORY_WORD_COUNTS: _int64_feature(tf, word_counts[first:last]),
        }
        if has_target:
            start, end = target_offsets[row], target_offsets[row + 1]
            feature[schema.TARGET_WORDS] = _int64_feature(tf, target_words[start:end])
            feature[schema.TARGET_COUNTS] = _int64_feature(tf, target_counts[start:end])
        yield tf.train.Example(features=tf.train.Features(feature=feature))


def write_labels(labels, path):
    """Writes the per-user labels table as Parquet (atomically)."""
    with atomic_path(path) as temporary:
        pq.write_table(labels, temporary)

