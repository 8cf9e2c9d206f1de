"""What a model family pretrains on: which table of a table folder, how it is checked and read.

Two kinds of table feed pretraining: SUMN's bag-of-words behaviour table
(``train/``, or ``inference/`` with random windows) and the item-sequence
table (``sequences/``) of NextItNet and GRec. A family names one of the
objects below in its registration (``model/model_family.py``); ``prepare``
resolves ``--tables``, validates the shards, says what it found, and returns
what ``main/train.py`` needs: the table files, the entries they add to
``model_arch.json``, and a reader ``(seed, input_context) -> tf.data.Dataset``.

``settings`` is the resolved flag namespace of ``main/train.py``.
"""

import dataclasses
import os
from typing import Any, Callable

from contracts import schema
from data_loader.dataset import make_dataset
from data_loader.reader_options import ReaderOptions
from data_loader.sequence_dataset import make_sequence_dataset
from data_loader.sequence_options import SequenceReaderOptions
from data_loader.table_files import resolve_table_files
from data_loader.validation import validate_sequence_table, validate_table
from util.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class PretrainingData:
    """A resolved, validated pretraining table.

    Attributes:
        tables: the ``TableFiles``.
        run_config: entries this table adds to ``model_arch.json`` (sizes, paths, manifest).
        reader: ``(seed, input_context) -> tf.data.Dataset`` of endless training batches.
        description: one line for the log.
        objective: what the family's pretrainer needs besides batches (SUPERMOE:
            its ``Task`` objects), or None.
    """

    tables: Any
    run_config: dict
    reader: Callable[[int, Any], Any]
    description: str
    objective: Any = None


def table_entries(tables):
    """The ``model_arch.json`` entries naming a resolved table: files, format, manifest, folder."""
    entries = {
        "tables": [os.path.abspath(path) for path in tables.files],
        "table_format": tables.file_format,
        "tables_manifest": tables.manifest,
    }
    if tables.manifest_path is not None:
        entries["tables_dir"] = os.path.dirname(os.path.abspath(tables.manifest_path))
    return entries


def resolve_vocabulary_size(flag_value, table_files):
    """``--num_vocabulary``, or the manifest's vocabulary size when the flag is 0.

    Raises:
        UserInputError: neither is known, or the flag is smaller than the
            vocabulary the tables were built with.
    """
    recorded = table_files.vocabulary_size
    if flag_value:
        if recorded and flag_value < recorded:
            raise UserInputError(
                f"--num_vocabulary={flag_value} is smaller than the vocabulary of "
                f"{recorded} words recorded in {table_files.manifest_path}")
        return flag_value
    if not recorded:
        raise UserInputError(
            "--num_vocabulary is 0 and the tables have no manifest.json beside them "
            "to take the vocabulary size from; pass --num_vocabulary")
    return int(recorded)


def check_num_sampled(num_sampled, num_classes, classes):
    """``--num_sampled`` must leave negatives to draw: below the ``num_classes`` ``classes``."""
    if num_sampled >= num_classes:
        raise UserInputError(f"--num_sampled={num_sampled} should be below the {num_classes:,} "
                             f"{classes} of the tables (0: the full softmax)")


def default_inference_tables(table_files):
    """The inference table that sits beside a training table, if any."""
    if table_files.manifest_path is None:
        return None
    folder = os.path.join(os.path.dirname(table_files.manifest_path), schema.INFERENCE_SUBDIR)
    return folder if os.path.isdir(folder) else None


def resolve_num_item_ids(table_files):
    """The item index size from the sequence table's manifest.

    Raises:
        UserInputError: the tables have no manifest with an item index.
    """
    if not table_files.num_item_ids:
        raise UserInputError(
            f"--tables: no manifest.json with num_item_ids beside {table_files.files[0]}; "
            f"item-sequence models read a table folder written by main/build_tables.py")
    return int(table_files.num_item_ids)


class BehaviourTableInputs:
    """SUMN's table: histories of bag-of-words behaviours and target windows."""

    def prepare(self, tables_flag, settings):
        random_windows = settings.random_target_fraction > 0
        # Random windows draw a fresh split of each WHOLE sequence: the inference table.
        subdir = schema.INFERENCE_SUBDIR if random_windows else schema.TRAIN_SUBDIR
        tables = resolve_table_files(tables_flag, default_subdir=subdir)
        vocabulary_size = resolve_vocabulary_size(settings.num_vocabulary, tables)
        rows = validate_table(tables, with_target=not random_windows,
                              vocabulary_size=vocabulary_size)
        check_num_sampled(settings.num_sampled, vocabulary_size, "word ids")
        windows = (f"random windows, {settings.random_target_fraction:.0%} of behaviours as target"
                   if random_windows else "the table's windows")
        entries = dict(table_entries(tables), num_vocabulary=int(vocabulary_size))
        entries.pop("tables_dir", None)
        inference_tables = default_inference_tables(tables)
        if inference_tables:
            entries["inference_tables"] = os.path.abspath(inference_tables)

        def reader(seed, context):
            options = ReaderOptions(
                batch_size=settings.batch_size, with_target=True,
                shuffle=settings.shuffle_buffer > 0, shuffle_buffer=max(settings.shuffle_buffer, 1),
                repeat=True, drop_remainder=True, seed=seed,
                weighted_target=settings.weighted_target,
                max_behaviours=settings.max_query_per_week, max_words=settings.max_words_per_query,
                max_targets=settings.target_length, group_by_length=settings.group_by_length,
                random_target_fraction=settings.random_target_fraction or None)
            return make_dataset(tables, options, context)

        description = (f"training on {windows}; table: {rows:,} users in {len(tables.files)} "
                       f"{tables.file_format} shards; vocabulary {vocabulary_size:,} words")
        return PretrainingData(tables, entries, reader, description)


class SequenceTableInputs:
    """The item-sequence table of NextItNet and GRec (``sequences/``)."""

    def prepare(self, tables_flag, settings):
        tables = resolve_table_files(tables_flag, default_subdir=schema.SEQUENCES_SUBDIR)
        num_item_ids = resolve_num_item_ids(tables)
        rows = validate_sequence_table(tables, num_item_ids)
        check_num_sampled(settings.num_sampled, num_item_ids, "item ids")
        entries = dict(table_entries(tables), num_item_ids=num_item_ids)

        def reader(seed, context):
            options = SequenceReaderOptions(
                batch_size=settings.batch_size, shuffle=settings.shuffle_buffer > 0,
                shuffle_buffer=max(settings.shuffle_buffer, 1), repeat=True,
                drop_remainder=True, seed=seed, max_items=settings.max_items_per_user,
                # One item predicts nothing: NextItNet needs a pair, GRec a context.
                min_items=2, with_target_items=False)
            return make_sequence_dataset(tables, options, context)

        description = (f"table: {rows:,} users in {len(tables.files)} {tables.file_format} "
                       f"shards; {num_item_ids:,} item ids")
        return PretrainingData(tables, entries, reader, description)


BEHAVIOUR_TABLE = BehaviourTableInputs()
SEQUENCE_TABLE = SequenceTableInputs()
