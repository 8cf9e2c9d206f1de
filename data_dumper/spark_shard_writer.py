"""Writes one table's shard files from Spark: one task per shard, committed task by task.

The rows of every shard come from one Spark query (``windows.py``: the schema's
columns, then ``shard`` and ``user_rank``). They are hash-partitioned by shard
into ``num_shards`` partitions (equal keys share a partition, so a shard is
never split between tasks; two shards may share one, and then that task writes
both) and sorted by (shard, user rank) inside each partition. Range
partitioning would balance them better but samples its input first, which
runs the whole aggregation twice. Each task then streams its
Arrow batches into ``table_writer.write_shard_file``, the writer DuckDB builds
use, so the files have exactly ``contracts/schema.py``'s schema (Spark's own
Parquet writer would mark every column nullable and name list elements
``element``) and TFRecord works too.

Commit protocol, as Spark's file committers do it:
  * task commit: a shard is written under a temporary name and renamed when
    complete (``util.atomic.atomic_path``); a failed task removes its temporary
    file, a retried or speculative one replaces the shard with the same rows;
  * job commit: the driver writes the shards no task produced (shards without
    users are empty files, as in DuckDB builds), removes what killed attempts
    left behind, and the build publishes the table folder only when every table
    is complete (``util.atomic.atomic_directory``).
The folder must be one the driver and every executor see at the same path:
local disk in local mode, a shared mount on a cluster.
"""

import functools
import itertools
import os

import numpy as np
import pyarrow as pa

from contracts import schema
from data_dumper import table_writer
from data_dumper.windows import SHARD, USER_RANK

# What each task reports per shard it wrote.
_REPORT_SCHEMA = pa.schema([pa.field(SHARD, pa.int32()), pa.field("num_rows", pa.int64())])
_REPORT_DDL = f"{SHARD} INT, num_rows BIGINT"


def write_table_shards(session, rows_sql, table_schema, folder, num_shards, file_format):
    """Runs ``rows_sql`` (every shard) and writes ``num_shards`` shard files into ``folder``.

    Args:
      session: the SparkSession.
      rows_sql: SQL yielding the table's rows with the columns of ``table_schema``
        followed by ``shard`` and ``user_rank``.
      table_schema: the table's ``schema.*_SCHEMA``.
      folder: where the shards go (created if needed); seen by the driver and the executors.
      num_shards: number of shard files.
      file_format: ``schema.PARQUET`` or ``schema.TFRECORD``.

    Returns:
      The shard file names, in shard order.
    """
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    rows = (
        session.sql(rows_sql)
        .repartition(num_shards, SHARD)
        .sortWithinPartitions(SHARD, USER_RANK)
    )
    write = functools.partial(
        write_partition, table_schema=table_schema, folder=folder, num_shards=num_shards,
        file_format=file_format,
    )
    reports = rows.mapInArrow(write, _REPORT_DDL).collect()
    written = [report[SHARD] for report in reports]
    if len(written) != len(set(written)):
        raise RuntimeError(f"a shard was written by two tasks: {sorted(written)}")
    names = [schema.shard_name(index, num_shards, file_format) for index in range(num_shards)]
    for index in set(range(num_shards)) - set(written):
        table_writer.write_shard_file(iter(()), table_schema, os.path.join(folder, names[index]),
                                      file_format)
    _remove_abandoned_attempts(folder, names)
    return names


def write_partition(batches, table_schema, folder, num_shards, file_format):
    """The task of one partition: writes each shard in it; yields one report batch per shard.

    Args:
      batches: the partition's Arrow record batches, sorted by (shard, user rank).
      table_schema, folder, num_shards, file_format: as for ``write_table_shards``.
    """
    for shard, runs in itertools.groupby(_runs_by_shard(batches), key=lambda run: run[0]):
        path = os.path.join(folder, schema.shard_name(shard, num_shards, file_format))
        num_rows = table_writer.write_shard_file(
            (rows for _, rows in runs), table_schema, path, file_format
        )
        yield pa.RecordBatch.from_arrays(
            [pa.array([shard], pa.int32()), pa.array([num_rows], pa.int64())], schema=_REPORT_SCHEMA
        )


def _runs_by_shard(batches):
    """``(shard, batch slice)`` for each run of consecutive rows of one shard."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        shards = batch.column(SHARD).to_numpy(zero_copy_only=False)
        starts = np.concatenate([[0], np.flatnonzero(shards[1:] != shards[:-1]) + 1, [len(shards)]])
        for start, end in zip(starts[:-1], starts[1:]):
            yield int(shards[start]), batch.slice(start, end - start)


def _remove_abandoned_attempts(folder, names):
    """Removes temporary files of task attempts that died before they could clean up."""
    keep = set(names)
    for entry in os.listdir(folder):
        if entry not in keep:
            os.remove(os.path.join(folder, entry))
