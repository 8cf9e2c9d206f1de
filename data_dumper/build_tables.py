"""Builds a SUMN table folder from a behaviour log: the orchestration of one build.

``build_tables(config)`` runs the stages in order: read the behaviours (demo,
MovieLens or a generic log) into the engine (``--engine``: DuckDB on one machine,
Spark on a cluster; ``open_table_engine``), give items their words, build the
vocabulary and the item index, cut each user's windows, then write vocabulary,
item index, shards (training, inference and item sequences), labels and
manifest into a temporary folder that replaces ``--output_dir`` only when all is
written (``util.atomic.atomic_directory``). Inputs are read and checked before
anything is written, so a bad input leaves ``--output_dir`` untouched.
"""

import json
import os
import time

import duckdb

from contracts import schema
from data_dumper import (
    behaviour_log,
    build_config,
    demo_data,
    movielens,
    sequences,
    table_writer,
    vocabulary,
    windows,
)
from data_dumper.open_table_engine import open_engine
from util.atomic import atomic_directory, write_text_atomically
from util.errors import UserInputError
from util.output_folder import check_overwritable, check_writable


def check_output_dir(output_dir, overwrite):
    """Raises unless ``output_dir`` may be (re)written.

    A missing or empty folder is fine, if it can be written. An existing
    table folder (one holding a manifest and nothing but tables) is replaced
    only with ``--overwrite``; any other non-empty folder is never replaced,
    so a typo cannot wipe unrelated files.
    """
    check_writable(output_dir, "--output_dir")
    if not os.path.exists(output_dir) or not os.listdir(output_dir):
        return
    if not overwrite:
        raise UserInputError(
            f"--output_dir={output_dir} is not empty; pass --overwrite to replace its tables."
        )
    check_overwritable(output_dir, schema.TABLE_FOLDER, "--output_dir")


# The tables every reader leaves (behaviour_log.py).
_READER_TABLES = (behaviour_log.EVENTS_TABLE, behaviour_log.ITEM_TEXT_TABLE)


def _load_source(engine, config):
    if config.source == build_config.SOURCE_LOG:
        return behaviour_log.load_log_files(
            engine,
            config.log,
            config.log_user_column,
            config.log_order_column,
            config.log_item_column,
            items=config.items,
            item_id_column=config.item_id_column,
            item_text_column=config.item_text_column,
            item_tokens_column=config.item_tokens_column,
            item_token_separator=config.item_token_separator,
        )
    # The MovieLens and demo readers are DuckDB code over local files; another
    # engine takes their tables over.
    with engine.local_reader(_READER_TABLES) as con:
        if config.source == build_config.SOURCE_MOVIELENS:
            return movielens.load_movielens(con, config.movielens, config.movielens_layout)
        return demo_data.load_demo(con, config.seed, config.demo_users, config.demo_items)


def build_tables(config, log=print):
    """Builds the training and inference tables described by ``config``.

    Args:
      config: a ``build_config.BuildConfig``.
      log: called with each progress line.

    Returns:
      The manifest (a dict), also written as ``manifest.json``.

    Raises:
      UserInputError: a bad setting or input; nothing is written then.
    """
    started = time.perf_counter()
    config = config.resolved()
    check_output_dir(config.output_dir, config.overwrite)

    try:
        with open_engine(config) as engine:
            manifest = _build(config, engine, log, started)
    except duckdb.OutOfMemoryException as error:
        raise UserInputError(
            f"DuckDB ran out of memory under --duckdb_memory_limit={config.duckdb_memory_limit}; "
            f"raise it, or raise --num_shards so that each shard's rows are smaller."
        ) from error
    log(
        f"done in {time.perf_counter() - started:.1f} s: {manifest['num_training_users']:,} training "
        f"and {manifest['num_inference_users']:,} inference users, "
        f"{manifest['num_sequence_users']:,} item sequences, vocabulary "
        f"{manifest['vocabulary_size']:,}, {manifest['num_item_ids']:,} item ids, "
        f"{manifest['num_events']:,} behaviours -> {config.output_dir}"
    )
    return manifest


def _build(config, engine, log, started):
    """The stages of ``build_tables`` on one table engine; returns the manifest."""
    if config.source == build_config.SOURCE_DEMO and not config.demo:
        log("no --log or --movielens given: building the demo data (see --demo)")
    log(f"reading {_source_name(config)} with {engine.name} {engine.version}")
    loaded = _load_source(engine, config)
    sizes = behaviour_log.log_sizes(engine)
    log(
        f"read {sizes.num_events:,} behaviours of {sizes.num_users:,} users on "
        f"{sizes.num_items:,} items ({time.perf_counter() - started:.1f} s)"
    )

    behaviour_log.create_item_words(engine, config.max_words_per_query)
    vocab = vocabulary.build_vocabulary(engine, config.min_count, config.max_vocabulary)
    log(
        f"vocabulary: {vocab.size:,} ids ({vocab.num_distinct_words:,} distinct words, "
        f"{vocab.num_oov_words:,} below --min_count={config.min_count} or past "
        f"--max_vocabulary map to <oov>) ({time.perf_counter() - started:.1f} s)"
    )

    item_index = sequences.build_item_index(engine)
    log(
        f"item index: {item_index.num_item_ids:,} ids ({item_index.num_items:,} items, most "
        f"frequent first, after <pad>, <mask>, <cls>)"
    )

    prepared = windows.create_windows(
        engine,
        config.max_query_per_week,
        config.target_length,
        config.num_shards,
        target_fraction=config.target_fraction,
        split_time=config.split_time,
    )
    window_stats = prepared.stats
    log(
        f"windows: {window_stats.num_training_users:,} training users, "
        f"{window_stats.num_inference_users:,} inference users; left out of training: "
        f"{window_stats.num_empty_history:,} with an empty history, "
        f"{window_stats.num_empty_target:,} with an empty target "
        f"({time.perf_counter() - started:.1f} s)"
    )

    item_sequences = sequences.create_sequences(engine, config.max_items_per_user)
    log(
        f"item sequences: {item_sequences.num_users:,} users with a history, the "
        f"{config.max_items_per_user:,} most recent items each (--max_items_per_user)"
    )

    log(f"writing {config.num_shards} {config.format} shards per table to {config.output_dir}")
    with atomic_directory(config.output_dir) as staging:
        vocabulary.write_vocabulary(engine, os.path.join(staging, schema.VOCABULARY_FILE))
        sequences.write_item_index(engine, os.path.join(staging, schema.ITEM_INDEX_FILE))
        train_files = engine.write_table_shards(
            prepared.training_rows_sql, schema.TRAINING_SCHEMA,
            os.path.join(staging, schema.TRAIN_SUBDIR), config.num_shards, config.format,
        )
        inference_files = engine.write_table_shards(
            prepared.inference_rows_sql, schema.INFERENCE_SCHEMA,
            os.path.join(staging, schema.INFERENCE_SUBDIR), config.num_shards, config.format,
        )
        sequence_files = engine.write_table_shards(
            item_sequences.rows_sql, schema.SEQUENCE_SCHEMA,
            os.path.join(staging, schema.SEQUENCES_SUBDIR), config.num_shards, config.format,
        )
        if loaded.labels is not None:
            table_writer.write_labels(loaded.labels, os.path.join(staging, schema.LABELS_FILE))
        files = {
            schema.TRAIN_SUBDIR: [f"{schema.TRAIN_SUBDIR}/{name}" for name in train_files],
            schema.INFERENCE_SUBDIR: [f"{schema.INFERENCE_SUBDIR}/{name}" for name in inference_files],
            schema.SEQUENCES_SUBDIR: [f"{schema.SEQUENCES_SUBDIR}/{name}" for name in sequence_files],
        }
        manifest = _manifest(config, engine, loaded, sizes, vocab, window_stats, item_index,
                             item_sequences, files)
        write_text_atomically(
            os.path.join(staging, schema.MANIFEST_FILE), json.dumps(manifest, indent=2) + "\n"
        )
    return manifest


def _source_name(config):
    if config.source == build_config.SOURCE_LOG:
        return f"behaviour log {config.log}" + (f" and item table {config.items}" if config.items else "")
    if config.source == build_config.SOURCE_MOVIELENS:
        return f"MovieLens folder {config.movielens}"
    return "the built-in demo generator"


def _manifest(config, engine, loaded, sizes, vocab, window_stats, item_index, item_sequences, files):
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "engine": engine.name,
        "engine_version": engine.version,
        "source": loaded.description,
        "format": config.format,
        "vocabulary_file": schema.VOCABULARY_FILE,
        "vocabulary_size": vocab.size,
        "item_index_file": schema.ITEM_INDEX_FILE,
        "num_item_ids": item_index.num_item_ids,
        "num_users": sizes.num_users,
        "num_items": sizes.num_items,
        "num_events": sizes.num_events,
        "num_training_users": window_stats.num_training_users,
        "num_inference_users": window_stats.num_inference_users,
        "num_sequence_users": item_sequences.num_users,
        "skipped_users": {
            "empty_history": window_stats.num_empty_history,
            "empty_target": window_stats.num_empty_target,
            "why": (
                "left out of the training table: empty_history = no behaviour before the split "
                "point; empty_target = no target word after it (no behaviour, or only <oov> words). "
                "The inference table keeps every user; the sequences table every user with a "
                "history (its target_items may be empty)."
            ),
        },
        "words": {
            "total": vocab.num_word_occurrences,
            "oov": vocab.num_oov_occurrences,
            "distinct": vocab.num_distinct_words,
            "distinct_oov": vocab.num_oov_words,
        },
        "num_shards": {subdir: len(names) for subdir, names in files.items()},
        "files": files,
        "labels_file": schema.LABELS_FILE if loaded.labels is not None else None,
        "flags": config.as_flags(),
    }
