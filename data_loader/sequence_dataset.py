"""Reads an item-sequence table (``sequences/``) into batches: Parquet or TFRecord.

``make_sequence_dataset`` is what ``strategy.distribute_datasets_from_function``
calls with a ``tf.distribute.InputContext``: each input pipeline takes a
disjoint slice of the FILES and batches at the per-replica batch size.

A batch is a dict (``B`` = batch size, ragged dimensions in parentheses):

    id            [B] string
    items         [B, (L)] int32 RaggedTensor: history item indices, oldest -> newest,
                  at most ``max_items`` (the most recent)
    items_length  [B] int32: ``L`` of each row, after the ``max_items`` cut
    target_items  [B, (T)] int32 RaggedTensor: the target window's items, in
                  order, possibly empty (only with ``with_target_items``)

Both formats are decoded a chunk of users at a time into the same ragged
form: Parquet with pyarrow (flat value buffers and offsets, no Python per
user), TFRecord with one ``tf.io.parse_example`` per chunk. The ``min_items``
filter and the ``max_items`` cut run on whole chunks; only then are users
split apart, shuffled and batched by tf.data (C++), so both formats yield the
same batches in the same order.
"""

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from contracts import schema
from data_loader.arrow_buffers import flat_values, row_splits, string_parts
from data_loader.dataset import shard_files
from data_loader.table_schema import conform, select
from util.errors import UserInputError

# Users decoded per chunk: big enough that per-chunk TF ops are amortised,
# small enough to stay cache friendly.
_PARQUET_CHUNK_ROWS = 4096
_TFRECORD_CHUNK_ROWS = 1024
_READ_BUFFER_BYTES = 8 << 20


def _ragged_int64():
    return tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)


def feature_spec(with_target_items):
    """``tf.io.parse_example`` features of a sequence table's Example records."""
    spec = {schema.ID: tf.io.FixedLenFeature([], tf.string), schema.ITEMS: _ragged_int64()}
    if with_target_items:
        spec[schema.TARGET_ITEMS] = _ragged_int64()
    return spec


def parse_sequence_examples(serialized, with_target_items):
    """Parses [N] serialized Examples into a chunk dict.

    Returns:
        ``{"id": [N] string, "items": [N, (L)] int32 ragged,
        "target_items": [N, (T)] int32 ragged (with ``with_target_items``)}``.
    """
    parsed = tf.io.parse_example(serialized, feature_spec(with_target_items))
    chunk = {schema.ID: parsed[schema.ID], schema.ITEMS: tf.cast(parsed[schema.ITEMS], tf.int32)}
    if with_target_items:
        chunk[schema.TARGET_ITEMS] = tf.cast(parsed[schema.TARGET_ITEMS], tf.int32)
    return chunk


def _tfrecord_chunks(path, with_target_items):
    records = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES)
    return records.batch(_TFRECORD_CHUNK_ROWS).map(
        lambda serialized: parse_sequence_examples(serialized, with_target_items))


# Builds a dataset (no tensor maths): AutoGraph cannot convert its generator.
@tf.autograph.experimental.do_not_convert
def _parquet_chunks(path, with_target_items):
    columns = [schema.ID, schema.ITEMS] + ([schema.TARGET_ITEMS] if with_target_items else [])
    expected = select(schema.SEQUENCE_SCHEMA, columns)

    def generate(path):
        path = path.decode("utf-8")
        try:
            for batch in pq.ParquetFile(path).iter_batches(
                    batch_size=_PARQUET_CHUNK_ROWS, columns=columns):
                if not batch.num_rows:
                    continue
                batch = conform(path, batch, expected)
                id_blob, id_offsets = string_parts(batch.column(schema.ID))
                parts = (id_blob, id_offsets)
                for column in columns[1:]:
                    values = batch.column(column)
                    parts += (flat_values(values), row_splits(values))
                yield parts
        except (OSError, pa.ArrowException) as error:
            raise UserInputError(f"cannot read Parquet file {path}: {error}") from None

    int64 = tf.TensorSpec([None], tf.int64)
    int32 = tf.TensorSpec([None], tf.int32)
    signature = (tf.TensorSpec([], tf.string), int64) + (int32, int64) * (len(columns) - 1)
    parts = tf.data.Dataset.from_generator(generate, args=(path,), output_signature=signature)

    def assemble(id_blob, id_offsets, *lists):
        chunk = {schema.ID: tf.strings.substr(id_blob, id_offsets[:-1],
                                              id_offsets[1:] - id_offsets[:-1])}
        for index, column in enumerate(columns[1:]):
            values, splits = lists[2 * index], lists[2 * index + 1]
            chunk[column] = tf.RaggedTensor.from_row_splits(values, splits, validate=False)
        return chunk

    return parts.map(assemble)


_CHUNK_READERS = {schema.PARQUET: _parquet_chunks, schema.TFRECORD: _tfrecord_chunks}


def _select_and_cut(chunk, min_items, max_items):
    """Drops users with fewer than ``min_items`` items, then keeps the last ``max_items``."""
    keep = chunk[schema.ITEMS].row_lengths() >= min_items
    chunk = {key: tf.ragged.boolean_mask(value, keep) if isinstance(value, tf.RaggedTensor)
             else tf.boolean_mask(value, keep) for key, value in chunk.items()}
    if max_items > 0:
        chunk[schema.ITEMS] = chunk[schema.ITEMS][:, -max_items:]
    return chunk


def _with_lengths(batch):
    """Orders the keys as documented and adds ``items_length`` [B] int32."""
    finished = {
        schema.ID: batch[schema.ID],
        schema.ITEMS: batch[schema.ITEMS],
        schema.ITEMS_LENGTH: tf.cast(batch[schema.ITEMS].row_lengths(), tf.int32),
    }
    if schema.TARGET_ITEMS in batch:
        finished[schema.TARGET_ITEMS] = batch[schema.TARGET_ITEMS]
    return finished


def make_sequence_dataset(table_files, options, input_context=None):
    """A ``tf.data.Dataset`` of item-sequence batches (see the module docstring).

    Args:
        table_files: a ``TableFiles`` of a ``sequences`` table (see data_loader.table_files).
        options: a ``SequenceReaderOptions``; ``batch_size`` is the GLOBAL batch
            size when ``input_context`` is given, else the batch size.
        input_context: a ``tf.distribute.InputContext`` or None.

    Raises:
        UserInputError: fewer shard files than input pipelines.
    """
    if input_context is not None:
        options = dataclasses.replace(
            options,
            batch_size=input_context.get_per_replica_batch_size(options.batch_size),
            # Different pipelines must not shuffle in lockstep.
            seed=options.seed + 1000 * input_context.input_pipeline_id)
    files = shard_files(table_files.files, input_context)
    read_chunks = _CHUNK_READERS[table_files.file_format]

    file_names = tf.data.Dataset.from_tensor_slices(tf.constant(files, dtype=tf.string))
    if options.shuffle:
        file_names = file_names.shuffle(len(files), seed=options.seed, reshuffle_each_iteration=True)
    chunks = file_names.flat_map(lambda path: read_chunks(path, options.with_target_items))
    users = chunks.map(
        lambda chunk: _select_and_cut(chunk, options.min_items, options.max_items),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    if options.shuffle:
        users = users.shuffle(options.shuffle_buffer, seed=options.seed,
                              reshuffle_each_iteration=True)
    if options.repeat:
        users = users.repeat()
    batches = users.batch(options.batch_size, drop_remainder=options.drop_remainder)
    batches = batches.map(_with_lengths, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE) if options.prefetch else batches
