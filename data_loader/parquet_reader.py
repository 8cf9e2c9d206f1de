"""Reads Parquet table shards into batches with pyarrow, one batch at a time.

pyarrow decodes a record batch of nested lists into flat value buffers and
offsets in C++; each batch is cut from those buffers with vectorised numpy and
handed to TensorFlow as flat arrays plus row splits, so no Python runs per
record. (tensorflow-io is not used: see README, "Stack".)

Shuffling permutes rows inside a buffer of ``shuffle_buffer`` records (and the
file order), the same guarantee as ``tf.data.Dataset.shuffle``.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf

from contracts import schema
from data_loader.arrow_buffers import flat_values, row_splits, string_parts
from data_loader.batch_format import cut_into_batches
from data_loader.batch_format import finish_batch
from data_loader.table_schema import conform, select
from util.errors import UserInputError

_READ_ROWS = 4096  # rows pyarrow decodes at a time; small enough to stay cache friendly


def shard_rows(path):
    """The number of rows of a Parquet shard, from its footer (nothing else is read)."""
    return pq.ParquetFile(path).metadata.num_rows


def _components(table, with_target):
    """Flat numpy parts of a batch table: ids, nested splits, values."""
    table = table.combine_chunks()
    history = table.column(schema.HISTORY).chunk(0) if table.num_rows else pa.array(
        [], type=pa.list_(pa.list_(pa.int32())))
    behaviours = pc.list_flatten(history)
    id_blob, id_offsets = string_parts(table.column(schema.ID).chunk(0) if table.num_rows
                                        else pa.array([], pa.string()))
    parts = [
        id_blob,
        id_offsets,
        row_splits(history),
        row_splits(behaviours),
        flat_values(behaviours),
    ]
    if with_target:
        targets = table.column(schema.TARGET_WORDS).chunk(0)
        counts = table.column(schema.TARGET_COUNTS).chunk(0)
        parts += [row_splits(targets), flat_values(targets), flat_values(counts)]
    return tuple(parts)


def _columns(with_target):
    columns = [schema.ID, schema.HISTORY]
    if with_target:
        columns += [schema.TARGET_WORDS, schema.TARGET_COUNTS]
    return columns


def _record_tables(files, columns, options, rng):
    """Yields arrow tables of records, file by file, forever when repeating.

    Each table has exactly the contract's schema of ``columns`` (see
    data_loader.table_schema), so that tables of shards written by different
    writers concatenate in the shuffle buffer.
    """
    expected = select(schema.TRAINING_SCHEMA, columns)
    while True:
        order = rng.permutation(len(files)) if options.shuffle else range(len(files))
        for index in order:
            path = files[index]
            try:
                for record_batch in pq.ParquetFile(path).iter_batches(
                        batch_size=_READ_ROWS, columns=columns):
                    yield pa.Table.from_batches([conform(path, record_batch, expected)])
            except (OSError, pa.ArrowException) as error:
                raise UserInputError(f"cannot read Parquet file {path}: {error}") from None
        if not options.repeat:
            return


def _batch_starts(table, options, rng):
    """The table (sorted by history length when grouping) and the first row of each batch, in order."""
    if options.shuffle and options.group_by_length and table.num_rows > options.batch_size:
        lengths = pc.list_value_length(table.column(schema.HISTORY)).to_numpy(zero_copy_only=False)
        table = table.take(pa.array(np.argsort(lengths, kind="stable")))
        starts = rng.permutation(np.arange(0, table.num_rows, options.batch_size))
    else:
        starts = np.arange(0, table.num_rows, options.batch_size)
    return table, starts.astype(np.int64)


def _chunk_tables(files, options, rng):
    """Yields (arrow table, first row of each batch): many batches at a time.

    A chunk crosses into TensorFlow as ONE generator element, is finished
    there by one ``finish_batch`` and cut into batches by
    ``batch_format.cut_into_batches``: a Python round trip and ~50 small TF
    ops per batch cost more than reading the batch's bytes.
    """
    columns = _columns(options.reads_targets)
    buffer_rows = max(options.shuffle_buffer, options.batch_size) if options.shuffle else options.batch_size
    if not options.shuffle:
        buffer_rows = max(buffer_rows, _READ_ROWS)  # still a record batch's rows per chunk
    pending = []
    pending_rows = 0
    for table in _record_tables(files, columns, options, rng):
        pending.append(table)
        pending_rows += table.num_rows
        if pending_rows < buffer_rows:
            continue
        merged = pa.concat_tables(pending)
        if options.shuffle:
            merged = merged.take(pa.array(rng.permutation(merged.num_rows)))
        usable = merged.num_rows - merged.num_rows % options.batch_size
        if usable:
            yield _batch_starts(merged.slice(0, usable), options, rng)
        rest = merged.slice(usable)
        pending, pending_rows = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
    if pending_rows:
        merged = pa.concat_tables(pending)
        if options.shuffle:
            merged = merged.take(pa.array(rng.permutation(merged.num_rows)))
        usable = merged.num_rows
        if options.drop_remainder:
            usable -= usable % options.batch_size
        if usable:  # the last batch may be short, never longer than batch_size
            yield _batch_starts(merged.slice(0, usable), options, rng)


def parquet_dataset(files, options):
    """A ``tf.data.Dataset`` of batches (see data_loader.batch_format) from Parquet shards.

    Args:
        files: the shard paths this input pipeline reads.
        options: a ``ReaderOptions``.
    """
    files = list(files)
    with_target = options.reads_targets

    def generate():
        rng = np.random.default_rng(options.seed)
        for table, starts in _chunk_tables(files, options, rng):
            yield (starts,) + _components(table, with_target)

    int64 = tf.TensorSpec([None], tf.int64)
    int32 = tf.TensorSpec([None], tf.int32)
    signature = (int64, tf.TensorSpec([], tf.string), int64, int64, int64, int32)
    if with_target:
        signature += (int64, int32, int32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)

    def assemble(starts, id_blob, id_offsets, outer_splits, inner_splits, words, *target_parts):
        ids = tf.strings.substr(id_blob, id_offsets[:-1], id_offsets[1:] - id_offsets[:-1])
        history = tf.RaggedTensor.from_nested_row_splits(
            words, [outer_splits, inner_splits], validate=False)
        target_words = target_counts = None
        if with_target:
            target_splits, target_values, count_values = target_parts
            target_words = tf.RaggedTensor.from_row_splits(target_values, target_splits, validate=False)
            target_counts = tf.RaggedTensor.from_row_splits(count_values, target_splits, validate=False)
        return starts, finish_batch(
            ids, history, target_words, target_counts,
            max_behaviours=options.max_behaviours, max_words=options.max_words,
            max_targets=options.max_targets,
            random_target_fraction=options.random_target_fraction, seed=options.seed,
            weighted_target=options.weighted_target)

    chunks = dataset.map(assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return chunks.flat_map(lambda starts, chunk: cut_into_batches(chunk, starts, options.batch_size))
