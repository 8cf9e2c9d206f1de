"""Builds SUMN training and inference tables, and the item-sequence table, from a behaviour log.

    python main/build_tables.py --demo --output_dir=runs/demo/tables
    python main/build_tables.py --movielens=../shared/data/ml-1m --output_dir=runs/ml1m/tables
    python main/build_tables.py --log=events.parquet --log_order_column=ts \\
        --items=items.csv --item_text_column=title --output_dir=runs/mine/tables
    python main/build_tables.py --engine=spark --spark_master=local[2] --demo --output_dir=runs/demo/tables_spark
    spark-submit main/build_tables.py --engine=spark --log=s3a://bucket/events/ --output_dir=/shared/tables

Writes ``--output_dir`` as ``contracts/schema.py`` documents: vocabulary.txt,
items.txt, train/, inference/ and sequences/ shards, labels.parquet (demo and
MovieLens) and manifest.json. A bad flag or input prints ``error: ...`` and exits 2.
"""

import argparse

from contracts import schema
from data_dumper import demo_data, movielens, table_engine
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from main.flags.common import FlagHelpFormatter, add_history_limit_flags
from util.cli import run_cli
from util.flag_types import finite_float
from util.folder_lock import FolderLock
from util.output_folder import check_writable


def parse_flags(argv=None):
    parser = argparse.ArgumentParser(
        description="Build SUMN training/inference tables (Parquet or TFRecord) from a behaviour log.",
        formatter_class=FlagHelpFormatter)
    output = parser.add_argument_group("output")
    output.add_argument("--output_dir", required=True,
                        help="folder to write the tables to (required)")
    output.add_argument("--overwrite", action="store_true",
                        help="replace an existing table folder at --output_dir; a folder holding "
                             "anything else is never replaced (default: refuse)")
    output.add_argument("--format", default=schema.PARQUET, choices=schema.FORMATS,
                        help="shard file format (default: %(default)s)")
    output.add_argument("--num_shards", type=int, default=4,
                        help="shard files per table; users are dealt round robin by sorted id, and "
                             "DuckDB builds one shard at a time, so more shards need less memory "
                             "(default: %(default)s)")

    source = parser.add_argument_group("source: one of --demo, --movielens, --log (default: --demo)")
    source.add_argument("--demo", action="store_true",
                        help="synthetic behaviours with planted user traits (data_dumper/demo_data.py)")
    source.add_argument("--seed", type=int, default=demo_data.DEFAULT_SEED,
                        help="demo: random seed (default: %(default)s)")
    source.add_argument("--demo_users", type=int, default=demo_data.DEFAULT_USERS,
                        help="demo: number of users (default: %(default)s)")
    source.add_argument("--demo_items", type=int, default=demo_data.DEFAULT_ITEMS,
                        help=f"demo: number of items, at least {demo_data.NUM_TOPICS} (default: %(default)s)")
    source.add_argument("--movielens", default=None,
                        help="MovieLens folder: GroupLens ml-1m or ml-100k, or events.parquet + "
                             "users.dat + movies.dat")
    source.add_argument("--movielens_layout", default=movielens.AUTO,
                        choices=(movielens.AUTO, *movielens.LAYOUTS),
                        help="layout of --movielens (default: %(default)s, from the file names)")
    source.add_argument("--log", default=None,
                        help="behaviour log file: Parquet, or CSV with a header row")
    source.add_argument("--log_user_column", default="user_id",
                        help="--log column of user ids, integers or strings (default: %(default)s)")
    source.add_argument("--log_order_column", default="timestamp",
                        help="--log column ordering a user's behaviours: number, date or timestamp "
                             "(default: %(default)s)")
    source.add_argument("--log_item_column", default="item_id",
                        help="--log column of item ids, integers or strings (default: %(default)s)")
    source.add_argument("--items", default=None,
                        help="item table file, Parquet or CSV (optional: items without a row keep "
                             "just their item:<id> word)")
    source.add_argument("--item_id_column", default="item_id",
                        help="--items column of item ids, matched to the log's as text "
                             "(default: %(default)s)")
    source.add_argument("--item_text_column", default=None,
                        help="--items column of text, lower-cased and split on non-alphanumerics")
    source.add_argument("--item_tokens_column", default=None,
                        help="--items column of tokens used as words as they are: a list, or a "
                             "string split on --item_token_separator")
    source.add_argument("--item_token_separator", default="|",
                        help="separator of a string --item_tokens_column (default: %(default)s)")

    windows = parser.add_argument_group("windows")
    windows.add_argument("--target_fraction", type=finite_float, default=None,
                         help="share of each user's behaviours, the latest, forming the target "
                              "window; in (0, 1) (default: 0.2 unless --split_time is given)")
    windows.add_argument("--split_time", default=None,
                         help="split by time instead: behaviours whose order value is >= this value "
                              "of the order column (e.g. 2003-01-01 or 975000000) form the target")
    add_history_limit_flags(windows, positive=False)
    windows.add_argument("--target_length", type=int, default=500,
                         help="target words kept per user, the most frequent (default: %(default)s)")

    sequences = parser.add_argument_group("item sequences (sequences/ table: PeterRec, NextItNet, GRec)")
    sequences.add_argument("--max_items_per_user", type=int, default=200,
                           help="history items kept per user in the sequences/ table, the most "
                                "recent; independent of --max_query_per_week (default: %(default)s)")

    vocab = parser.add_argument_group("vocabulary")
    vocab.add_argument("--min_count", type=int, default=1,
                       help="occurrences in the log a word needs for its own id, else <oov> "
                            "(default: %(default)s)")
    vocab.add_argument("--max_vocabulary", type=int, default=None,
                       help="most ids in all, <pad> and <oov> included (default: no cap)")

    engines = parser.add_argument_group("engine")
    engines.add_argument("--engine", default=table_engine.DUCKDB, choices=table_engine.ENGINES,
                         help="what runs the SQL: duckdb on this machine, or spark (local[N] or a "
                              "cluster; pip install '.[spark]', needs Java 17+); both write the same "
                              "tables (default: %(default)s)")
    engines.add_argument("--spark_master", default=None,
                         help="Spark master URL, e.g. local[2], yarn, spark://host:7077; ignored when "
                              "a SparkSession is already active (default: spark-submit's --master, "
                              "else local[*])")
    engines.add_argument("--spark_driver_memory", default=None,
                         help="memory of the Spark driver JVM, e.g. 4g; in local mode it holds the "
                              "executors too (default: Spark's, 1g; ignored under spark-submit, "
                              "which takes --driver-memory)")

    engine = parser.add_argument_group("DuckDB")
    engine.add_argument("--duckdb_memory_limit", default="4GB",
                        help="DuckDB memory limit, bytes with a unit; beyond it DuckDB spills to "
                             "disk (default: %(default)s)")
    engine.add_argument("--duckdb_temp_directory", default=None,
                        help="folder in which a scratch folder for DuckDB's working tables and spill "
                             "files is made and removed (default: the system temp folder)")
    engine.add_argument("--duckdb_threads", type=int, default=None,
                        help="DuckDB worker threads (default: one per core)")
    return parser.parse_args(argv)


def main(argv=None):
    flags = parse_flags(argv)
    check_writable(flags.output_dir, "--output_dir")  # before the inputs are even opened
    with FolderLock(flags.output_dir, "--output_dir"):
        build_tables(BuildConfig(**vars(flags)))
    return 0


if __name__ == "__main__":
    run_cli(main)
