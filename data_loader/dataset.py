"""One entry point for every table format: shard, read, batch, prefetch.

``make_dataset`` is what ``strategy.distribute_datasets_from_function`` calls
with a ``tf.distribute.InputContext``: each input pipeline takes a disjoint
slice of the FILES (not of the records, so no pipeline reads data it then
throws away) and batches at the per-replica batch size.
"""

import dataclasses

import tensorflow as tf

from contracts import schema
from data_loader.parquet_reader import parquet_dataset
from data_loader.tfrecord_reader import tfrecord_dataset
from util.errors import UserInputError

_READERS = {schema.PARQUET: parquet_dataset, schema.TFRECORD: tfrecord_dataset}


def shard_files(files, input_context=None):
    """The files input pipeline ``input_context.input_pipeline_id`` reads.

    Raises:
        UserInputError: fewer files than input pipelines (a pipeline would
            have nothing to read; rebuild the tables with more shards).
    """
    files = list(files)
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    count = input_context.num_input_pipelines
    if len(files) < count:
        raise UserInputError(
            f"the table has {len(files)} shard files but training uses {count} input "
            f"pipelines; rebuild it with --num_shards={count} or more")
    return files[input_context.input_pipeline_id::count]


def make_dataset(table_files, options, input_context=None):
    """A ``tf.data.Dataset`` of batches (data_loader.batch_format) from a table.

    Args:
        table_files: a ``TableFiles`` (see data_loader.table_files).
        options: a ``ReaderOptions``; ``batch_size`` is the GLOBAL batch size
            when ``input_context`` is given, else the batch size.
        input_context: a ``tf.distribute.InputContext`` or None.
    """
    if input_context is not None:
        per_replica = input_context.get_per_replica_batch_size(options.batch_size)
        seed = options.seed
        if seed is not None:
            # Different pipelines must not shuffle in lockstep.
            seed = seed + 1000 * input_context.input_pipeline_id
        options = dataclasses.replace(options, batch_size=per_replica, seed=seed)
    files = shard_files(table_files.files, input_context)
    dataset = _READERS[table_files.file_format](files, options)
    return dataset.prefetch(options.prefetch if options.prefetch >= 0 else tf.data.AUTOTUNE)
