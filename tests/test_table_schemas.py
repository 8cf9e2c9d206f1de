"""Shards written by other Parquet writers (Spark, pandas, pyarrow defaults) read like our own.

Their schemas differ from contracts/schema.py only in spelling: nullable
fields, non-nullable list items, list items named ``element``, int64 values,
large lists. A table mixing such shards with ours must validate and read
through tf.data exactly as a table of our own shards does; a value that does
not fit the contract is named by file, column and row.
"""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import schema
from data_loader.dataset import make_dataset
from data_loader.reader_options import ReaderOptions
from data_loader.sequence_dataset import make_sequence_dataset
from data_loader.sequence_options import SequenceReaderOptions
from data_loader.table_files import resolve_table_files
from data_loader.validation import validate_sequence_table, validate_table
from util.errors import UserInputError

VOCABULARY_SIZE = 60
NUM_ITEM_IDS = 40


def _list(value_type, nullable=True, name="item", large=False):
    field = pa.field(name, value_type, nullable=nullable)
    return pa.large_list(field) if large else pa.list_(field)


def _spellings(leaf):
    """{name: a function of (nesting depth) -> list type} for each writer's spelling of a list."""
    def nested(depth, **kwargs):
        arrow_type = leaf
        for _ in range(depth):
            arrow_type = _list(arrow_type, **kwargs)
        return arrow_type
    return {
        "spark_nullable_element": lambda depth: nested(depth, nullable=True, name="element"),
        "non_nullable_items": lambda depth: nested(depth, nullable=False),
        "int64_large_lists": lambda depth: nested(depth, large=True),
    }


WRITERS = ["ours", "spark_nullable_element", "non_nullable_items", "int64_large_lists"]


def _foreign_schema(contract, writer):
    """``contract`` as ``writer`` spells it: every field nullable, lists and integers respelled."""
    if writer == "ours":
        return contract
    leaf = pa.int64() if writer == "int64_large_lists" else pa.int32()
    spell = _spellings(leaf)[writer]
    fields = []
    for field in contract:
        depth = 0
        arrow_type = field.type
        while pa.types.is_list(arrow_type):
            arrow_type, depth = arrow_type.value_type, depth + 1
        if pa.types.is_integer(arrow_type):
            arrow_type = spell(depth) if depth else leaf
        fields.append(pa.field(field.name, arrow_type, nullable=True))
    return pa.schema(fields)


def _sumn_users(num_users, seed):
    rng = np.random.default_rng(seed)
    users = []
    for index in range(num_users):
        history = [rng.integers(2, VOCABULARY_SIZE, rng.integers(1, 5)).tolist()
                   for _ in range(int(rng.integers(1, 6)))]
        targets = rng.choice(np.arange(2, VOCABULARY_SIZE), int(rng.integers(1, 5)), replace=False)
        counts = np.sort(rng.integers(1, 6, len(targets)))[::-1]
        users.append({"id": f"user{index:03d}", "history": history, "history_length": len(history),
                      "target_words": targets.tolist(), "target_counts": counts.tolist()})
    return users


def _sequence_users(num_users, seed):
    rng = np.random.default_rng(seed)
    users = []
    for index in range(num_users):
        items = rng.integers(schema.FIRST_ITEM_ID, NUM_ITEM_IDS, rng.integers(1, 8)).tolist()
        targets = rng.integers(schema.FIRST_ITEM_ID, NUM_ITEM_IDS, rng.integers(0, 3)).tolist()
        users.append({"id": f"user{index:03d}", "items": items, "items_length": len(items),
                      "target_items": targets})
    return users


def _write_table(folder, subdir, users, contract, writers):
    """One shard per writer, users dealt round robin; returns the table's TableFiles."""
    os.makedirs(os.path.join(folder, subdir), exist_ok=True)
    for shard, writer in enumerate(writers):
        rows = [{name: user[name] for name in contract.names} for user in users[shard::len(writers)]]
        pq.write_table(pa.Table.from_pylist(rows, schema=_foreign_schema(contract, writer)),
                       os.path.join(folder, subdir, schema.shard_name(shard, len(writers), "parquet")))
    with open(os.path.join(folder, schema.MANIFEST_FILE), "w") as handle:
        json.dump({"schema_version": 1, "vocabulary_size": VOCABULARY_SIZE,
                   "num_item_ids": NUM_ITEM_IDS}, handle)
    return resolve_table_files(folder, default_subdir=subdir)


def _sumn_rows(table, with_target, shuffle):
    options = ReaderOptions(batch_size=4, with_target=with_target, shuffle=shuffle,
                            shuffle_buffer=64, repeat=False, drop_remainder=False, seed=3)
    rows = {}
    for batch in make_dataset(table, options):
        for row, user_id in enumerate(batch["id"].numpy()):
            rows[user_id.decode()] = (
                batch["history"][row].to_list(),
                batch["target_words"][row].numpy().tolist() if with_target else None)
    return rows


@pytest.mark.parametrize("writers", [WRITERS, ["spark_nullable_element"] * 2],
                         ids=["every_writer_mixed_with_ours", "spark_only"])
@pytest.mark.parametrize("subdir, contract, with_target", [
    (schema.TRAIN_SUBDIR, schema.TRAINING_SCHEMA, True),
    (schema.INFERENCE_SUBDIR, schema.INFERENCE_SCHEMA, False),
], ids=["training", "inference"])
def test_sumn_tables_of_other_writers_validate_and_read_like_ours(
        tmp_path, subdir, contract, with_target, writers):
    users = _sumn_users(30, seed=1)
    theirs = _write_table(str(tmp_path / "theirs"), subdir, users, contract, writers)
    ours = _write_table(str(tmp_path / "ours"), subdir, users, contract, ["ours"] * len(writers))

    assert validate_table(theirs, with_target=with_target, vocabulary_size=VOCABULARY_SIZE) == 30
    for shuffle in (False, True):  # shuffling buffers rows of several shards in one table
        assert _sumn_rows(theirs, with_target, shuffle) == _sumn_rows(ours, with_target, shuffle)
    expected = {user["id"]: user["history"] for user in users}
    assert {key: value[0] for key, value in _sumn_rows(theirs, with_target, False).items()} == expected


@pytest.mark.parametrize("writers", [WRITERS, ["spark_nullable_element"] * 2],
                         ids=["every_writer_mixed_with_ours", "spark_only"])
def test_sequence_tables_of_other_writers_validate_and_read_like_ours(tmp_path, writers):
    users = _sequence_users(30, seed=2)
    theirs = _write_table(str(tmp_path / "theirs"), schema.SEQUENCES_SUBDIR, users,
                          schema.SEQUENCE_SCHEMA, writers)
    assert validate_sequence_table(theirs, NUM_ITEM_IDS) == 30
    options = SequenceReaderOptions(batch_size=4, shuffle=False, repeat=False,
                                    drop_remainder=False, with_target_items=True, prefetch=False)
    read = {}
    for batch in make_sequence_dataset(theirs, options):
        for row, user_id in enumerate(batch["id"].numpy()):
            read[user_id.decode()] = (batch["items"][row].numpy().tolist(),
                                      batch["target_items"][row].numpy().tolist())
    assert read == {user["id"]: (user["items"], user["target_items"]) for user in users}


def test_null_inside_a_list_names_file_column_and_row(tmp_path):
    users = _sumn_users(3, seed=4)
    users[2]["history"][0][0] = None
    table = _write_table(str(tmp_path), schema.INFERENCE_SUBDIR, users, schema.INFERENCE_SCHEMA,
                         ["spark_nullable_element"])
    with pytest.raises(UserInputError, match=r"part-00000-of-00001.parquet, column history, row 2: "
                                             r"a value inside the list is missing \(null\)"):
        validate_table(table, with_target=False)


def test_value_beyond_int32_names_file_column_and_row(tmp_path):
    users = _sumn_users(3, seed=5)
    users[1]["history"][-1][-1] = 2 ** 40
    table = _write_table(str(tmp_path), schema.INFERENCE_SUBDIR, users, schema.INFERENCE_SCHEMA,
                         ["int64_large_lists"])
    with pytest.raises(UserInputError, match=r"column history, row 1: value 1099511627776 does not "
                                             r"fit in int32"):
        validate_table(table, with_target=False)


def test_bag_of_words_of_other_writers_matches_ours(tmp_path):
    from data_loader.bag_of_words import read_bag_of_words

    users = _sumn_users(12, seed=6)
    bags = {}
    for name, writers in (("ours", ["ours"] * 3), ("theirs", WRITERS[1:])):
        folder = str(tmp_path / name)
        _write_table(folder, schema.INFERENCE_SUBDIR, users, schema.INFERENCE_SCHEMA, writers)
        bags[name] = read_bag_of_words(folder)
    assert bags["theirs"].ids.tolist() == bags["ours"].ids.tolist()
    assert (bags["theirs"].counts != bags["ours"].counts).nnz == 0
