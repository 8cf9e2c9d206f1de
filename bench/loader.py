"""Input pipeline speed: our loader against a plain pyarrow scan of the same table.

    python bench/loader.py                        # demo data, 20,000 users, both formats
    python bench/loader.py --movielens            # ../shared/data/ml-1m instead
    python bench/loader.py --users=5000 --repeats=3 --json

Builds (once, cached in bench/work/) a training table in Parquet and in
TFRecord with data_dumper, then times, in one process and interleaved:

  * ``pyarrow_scan`` (the baseline): ``ParquetFile.iter_batches`` over the
    Parquet shards' training columns, every column turned into numpy buffers
    (offsets and flat values): the cost of reading the bytes, nothing more;
  * ``parquet`` / ``tfrecord``: ``data_loader.dataset.make_dataset`` with the
    options ``main/train.py`` uses (900 behaviours x 24 words, 500 targets)
    but no shuffle and no repeat;
  * ``tf.data floor``: the same batches replayed from ``Dataset.cache()``:
    what handing over tf.data batches costs with no reading at all, the best
    any tf.data loader can do for the same consumer.

Two consumers: ``python`` iterates in Python and fetches every tensor of
every batch to numpy; ``graph`` pulls the batches inside a ``tf.function``,
as the training loop does. Two rates: ``pass`` reads the table once with a
fresh iterator (repeat=False, so the ~0.1-0.3 s of starting a tf.data
pipeline is included); ``steady`` takes a table's worth of batches from one
long-lived iterator over the repeated table, the rate a training loop sees.
Ratio = loader examples/s / baseline examples/s (goal: >= 0.5 for both
formats). Every measurement is repeated ``--repeats`` times, interleaved;
the table shows medians.
"""

import argparse
import dataclasses
import os
import time

from common import REPO_ROOT, WORK_DIR, print_json, print_table  # also sets up sys.path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from contracts import schema
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from data_loader.dataset import make_dataset
from data_loader.reader_options import ReaderOptions
from data_loader.table_files import resolve_table_files

DEFAULT_MOVIELENS = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "ml-1m"))
TRAINING_COLUMNS = [schema.ID, schema.HISTORY, schema.TARGET_WORDS, schema.TARGET_COUNTS]
GOAL_RATIO = 0.5
FLOOR = "tf.data floor"


def parse_flags(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000, help="demo users in the table")
    parser.add_argument("--items", type=int, default=2_000, help="demo items")
    parser.add_argument("--movielens", nargs="?", const=DEFAULT_MOVIELENS, default=None,
                        help="build from this MovieLens folder instead of the demo "
                             "(bare --movielens: ../shared/data/ml-1m)")
    parser.add_argument("--num_shards", type=int, default=4, help="shard files per table")
    parser.add_argument("--formats", default=",".join(schema.FORMATS),
                        help="comma-separated formats to time")
    parser.add_argument("--consumers", default="python,graph",
                        help="comma-separated: python (iterate in Python, fetch every tensor to "
                             "numpy) and/or graph (pull batches inside a tf.function)")
    parser.add_argument("--batch_size", type=int, default=128, help="examples per batch")
    parser.add_argument("--max_behaviours", type=int, default=900,
                        help="ReaderOptions.max_behaviours (main/train.py --max_query_per_week)")
    parser.add_argument("--max_words", type=int, default=24,
                        help="ReaderOptions.max_words (--max_words_per_query)")
    parser.add_argument("--max_targets", type=int, default=500,
                        help="ReaderOptions.max_targets (--target_length)")
    parser.add_argument("--baseline_rows", type=int, default=65_536,
                        help="rows per pyarrow iter_batches record batch in the baseline "
                             "(pyarrow's default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per measurement")
    parser.add_argument("--work_dir", default=WORK_DIR, help="where tables are built and cached")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached tables")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    return parser.parse_args(argv)


def ensure_table(flags, file_format, log):
    """The table folder for ``file_format``, built with data_dumper unless cached."""
    if flags.movielens:
        name = f"ml-{os.path.basename(os.path.normpath(flags.movielens))}"
    else:
        name = f"demo-{flags.users}u-{flags.items}i"
    output_dir = os.path.join(flags.work_dir, f"{name}-{flags.num_shards}shards-{file_format}")
    if flags.rebuild or not os.path.exists(os.path.join(output_dir, schema.MANIFEST_FILE)):
        config = BuildConfig(output_dir=output_dir, overwrite=True, num_shards=flags.num_shards,
                             format=file_format)
        if flags.movielens:
            config.movielens = flags.movielens
        else:
            config.demo, config.demo_users, config.demo_items = True, flags.users, flags.items
        build_tables(config, log=log)
    return output_dir


def numpy_buffers(array):
    """An arrow array as numpy arrays: offsets of every list level, then the flat values."""
    if pa.types.is_list(array.type):
        return [array.offsets.to_numpy()] + numpy_buffers(array.flatten())
    if pa.types.is_string(array.type):
        _, offsets, data = array.buffers()
        return [np.frombuffer(offsets, np.int32), np.frombuffer(data, np.uint8)]
    return [array.to_numpy(zero_copy_only=False)]


def pyarrow_scan(files, rows_per_batch):
    """Reads every training column of every shard into numpy buffers; returns the row count."""
    rows = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows_per_batch,
                                                       columns=TRAINING_COLUMNS):
            for column in batch.columns:
                numpy_buffers(column)
            rows += batch.num_rows
    return rows


def fetch(batch):
    """Brings every buffer of a batch to numpy (so no work can escape the timing)."""
    for tensor in batch.values():
        if isinstance(tensor, tf.RaggedTensor):
            tensor.flat_values.numpy()
            for splits in tensor.nested_row_splits:
                splits.numpy()
        else:
            tensor.numpy()


@tf.function
def _pull_in_graph(iterator, num_batches):
    """Pulls ``num_batches`` batches inside a graph; returns (rows, a sum over every tensor)."""
    rows = tf.constant(0, tf.int64)
    touched = tf.constant(0, tf.int64)
    for _ in tf.range(num_batches):
        batch = next(iterator)
        for tensor in batch.values():
            parts = [tensor.flat_values, *tensor.nested_row_splits] if isinstance(
                tensor, tf.RaggedTensor) else [tensor]
            for part in parts:
                touched += tf.size(part, out_type=tf.int64)
        rows += tf.shape(batch[schema.ID], out_type=tf.int64)[0]
    return rows, touched


def pull(iterator, consumer, num_batches):
    """Takes ``num_batches`` batches from ``iterator`` with ``consumer``; returns the rows."""
    if consumer == "graph":
        return int(_pull_in_graph(iterator, tf.constant(num_batches, tf.int64))[0])
    rows = 0
    for _ in range(num_batches):
        batch = next(iterator)
        fetch(batch)
        rows += int(batch[schema.ID].shape[0])
    return rows


def measure(flags, tables, formats, consumers):
    """Times the baseline and every (reader, consumer), interleaved; returns result dicts.

    ``pass``: a fresh iterator reads the table once (repeat=False), setup
    included. ``steady``: one long-lived iterator over the repeated table
    (as in training) delivers a table's worth of batches; no setup.
    """
    parquet_files = tables[schema.PARQUET].files
    options = ReaderOptions(batch_size=flags.batch_size, with_target=True, shuffle=False, repeat=False,
                            max_behaviours=flags.max_behaviours, max_words=flags.max_words,
                            max_targets=flags.max_targets)
    repeated = dataclasses.replace(options, repeat=True)
    one_pass = {fmt: make_dataset(tables[fmt], options) for fmt in formats}
    one_pass[FLOOR] = make_dataset(tables[schema.PARQUET], options).cache()
    forever = {fmt: make_dataset(tables[fmt], repeated) for fmt in formats}
    forever[FLOOR] = one_pass[FLOOR].repeat()

    num_rows = pyarrow_scan(parquet_files, flags.baseline_rows)
    num_batches = -(-num_rows // flags.batch_size)
    # Untimed: warm the page cache, fill the cache(), trace the functions, start the iterators.
    iterators = {}
    for reader in one_pass:
        for consumer in consumers:
            rows = pull(iter(one_pass[reader]), consumer, num_batches)
            if rows != num_rows:
                raise SystemExit(f"{reader} ({consumer}) yielded {rows} rows, the Parquet scan {num_rows}")
            iterators[reader, consumer] = iter(forever[reader])
            pull(iterators[reader, consumer], consumer, num_batches)

    scan = []
    passes = {key: [] for key in iterators}
    steady = {key: [] for key in iterators}
    for _ in range(flags.repeats):  # interleaved, so drifting load hits every measurement alike
        started = time.perf_counter()
        pyarrow_scan(parquet_files, flags.baseline_rows)
        scan.append(time.perf_counter() - started)
        for reader, consumer in iterators:
            started = time.perf_counter()
            pull(iter(one_pass[reader]), consumer, num_batches)
            passes[reader, consumer].append(time.perf_counter() - started)
            started = time.perf_counter()
            pull(iterators[reader, consumer], consumer, num_batches)
            steady[reader, consumer].append(time.perf_counter() - started)

    scan_s = float(np.median(scan))
    results = [{"reader": "pyarrow_scan", "consumer": "-", "pass_s": scan_s, "pass_times_s": scan,
                "pass_examples_per_s": num_rows / scan_s, "pass_ratio": 1.0,
                "steady_s": scan_s, "steady_times_s": scan,
                "steady_examples_per_s": num_rows / scan_s, "steady_ratio": 1.0}]
    for reader, consumer in iterators:
        pass_s = float(np.median(passes[reader, consumer]))
        steady_s = float(np.median(steady[reader, consumer]))
        results.append({"reader": reader, "consumer": consumer,
                        "pass_s": pass_s, "pass_times_s": passes[reader, consumer],
                        "pass_examples_per_s": num_rows / pass_s, "pass_ratio": scan_s / pass_s,
                        "steady_s": steady_s, "steady_times_s": steady[reader, consumer],
                        "steady_examples_per_s": num_rows / steady_s, "steady_ratio": scan_s / steady_s})
    return num_rows, results


def main(argv=None):
    flags = parse_flags(argv)
    log = (lambda line: None) if flags.json else (lambda line: print(f"  build: {line}", flush=True))
    formats = [name.strip() for name in flags.formats.split(",") if name.strip()]
    consumers = [name.strip() for name in flags.consumers.split(",") if name.strip()]
    tables = {fmt: resolve_table_files(ensure_table(flags, fmt, log), schema.TRAIN_SUBDIR)
              for fmt in sorted(set(formats) | {schema.PARQUET})}
    num_rows, results = measure(flags, tables, formats, consumers)
    source = (tables[schema.PARQUET].manifest or {}).get("source")
    if flags.json:
        print_json({"rows": num_rows, "source": source, "batch_size": flags.batch_size,
                    "repeats": flags.repeats, "goal_ratio": GOAL_RATIO, "results": results})
        return 0
    print(f"{num_rows:,} training rows from {source}; batch {flags.batch_size}; "
          f"median of {flags.repeats}; ratio = loader examples/s / pyarrow scan examples/s "
          f"(goal >= {GOAL_RATIO})")
    print_table(
        ["reader", "consumer", "pass s", "pass ex/s", "pass ratio", "steady s", "steady ex/s",
         "steady ratio"],
        [[result["reader"], result["consumer"], f"{result['pass_s']:.3f}",
          f"{result['pass_examples_per_s']:,.0f}", f"{result['pass_ratio']:.2f}",
          f"{result['steady_s']:.3f}", f"{result['steady_examples_per_s']:,.0f}",
          f"{result['steady_ratio']:.2f}"]
         for result in results])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
