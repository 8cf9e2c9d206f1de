"""The item-sequence loader: batches, cuts, filters, format parity, sharding, validation."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from contracts import schema
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from data_loader.sequence_dataset import make_sequence_dataset
from data_loader.sequence_options import SequenceReaderOptions
from data_loader.table_files import resolve_table_files
from data_loader.validation import validate_sequence_table
from util.errors import UserInputError

NUM_ITEM_IDS = 40


def _user(index, rng):
    items = list(map(int, rng.integers(schema.FIRST_ITEM_ID, NUM_ITEM_IDS, rng.integers(1, 9))))
    targets = list(map(int, rng.integers(schema.FIRST_ITEM_ID, NUM_ITEM_IDS, rng.integers(0, 4))))
    return {"id": f"user{index:02d}", "items": items, "items_length": len(items),
            "target_items": targets}


def write_sequence_table(folder, num_users=37, num_shards=3, seed=0):
    """A small sequences/ table in the builder's layout, with a manifest."""
    rng = np.random.default_rng(seed)
    users = [_user(index, rng) for index in range(num_users)]
    sequences = os.path.join(folder, schema.SEQUENCES_SUBDIR)
    os.makedirs(sequences, exist_ok=True)
    for shard in range(num_shards):
        table = pa.Table.from_pylist(users[shard::num_shards], schema=schema.SEQUENCE_SCHEMA)
        pq.write_table(table, os.path.join(sequences, schema.shard_name(shard, num_shards, "parquet")))
    with open(os.path.join(folder, schema.MANIFEST_FILE), "w") as handle:
        json.dump({"schema_version": 1, "num_item_ids": NUM_ITEM_IDS}, handle)
    return users


@pytest.fixture
def sequence_table(tmp_path):
    users = write_sequence_table(str(tmp_path))
    return resolve_table_files(str(tmp_path), default_subdir=schema.SEQUENCES_SUBDIR), users


def read_all(table, input_context=None, **options):
    batches = list(make_sequence_dataset(table, SequenceReaderOptions(**options), input_context))
    ids = [i.decode() for batch in batches for i in batch["id"].numpy()]
    return batches, ids


def test_table_folder_resolves_to_the_sequence_shards(sequence_table, tmp_path):
    table, _ = sequence_table
    assert table.file_format == "parquet" and len(table.files) == 3
    assert all(f"/{schema.SEQUENCES_SUBDIR}/" in path for path in table.files)
    assert table.num_item_ids == NUM_ITEM_IDS
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / schema.MANIFEST_FILE).write_text("{}")
    with pytest.raises(UserInputError, match=r"table folder .*old has no sequences/ table"):
        resolve_table_files(str(tmp_path / "old"), default_subdir=schema.SEQUENCES_SUBDIR)


def test_every_user_read_once_with_exact_values(sequence_table):
    table, users = sequence_table
    batches, ids = read_all(table, batch_size=8)
    assert [len(batch["id"]) for batch in batches] == [8, 8, 8, 8, len(users) - 32]
    # Unshuffled: files in order, users in file order.
    assert ids == [user["id"] for shard in range(3) for user in users[shard::3]]
    by_id = {user["id"]: user for user in users}
    for batch in batches:
        assert list(batch) == ["id", "items", "items_length", "target_items"]
        assert isinstance(batch["items"], tf.RaggedTensor) and batch["items"].dtype == tf.int32
        assert isinstance(batch["target_items"], tf.RaggedTensor)
        assert batch["target_items"].dtype == tf.int32 and batch["items_length"].dtype == tf.int32
        for row, user_id in enumerate(batch["id"].numpy()):
            user = by_id[user_id.decode()]
            assert batch["items"][row].numpy().tolist() == user["items"]
            assert batch["items_length"][row] == user["items_length"]
            assert batch["target_items"][row].numpy().tolist() == user["target_items"]


def test_max_items_keeps_the_most_recent_items(sequence_table):
    table, users = sequence_table
    batches, _ = read_all(table, batch_size=64, max_items=3)
    by_id = {user["id"]: user for user in users}
    batch = batches[0]
    for row, user_id in enumerate(batch["id"].numpy()):
        expected = by_id[user_id.decode()]["items"][-3:]
        assert batch["items"][row].numpy().tolist() == expected
        assert batch["items_length"][row] == len(expected)
    assert max(batch["items_length"].numpy()) == 3


def test_min_items_drops_short_users_counted_before_the_cut(sequence_table):
    table, users = sequence_table
    batches, ids = read_all(table, batch_size=5, min_items=4, max_items=2, drop_remainder=True)
    long_enough = [user["id"] for shard in range(3) for user in users[shard::3]
                   if len(user["items"]) >= 4]
    assert 0 < len(long_enough) < len(users)
    # Filtering comes before batching: full batches, none short but the dropped last one.
    assert all(len(batch["id"]) == 5 for batch in batches)
    assert ids == long_enough[:len(long_enough) - len(long_enough) % 5]
    assert all(max(batch["items_length"].numpy()) <= 2 for batch in batches)


def test_without_target_items(sequence_table):
    table, _ = sequence_table
    batches, _ = read_all(table, batch_size=16, with_target_items=False, prefetch=False)
    assert set(batches[0]) == {"id", "items", "items_length"}


def test_shuffle_is_seeded_complete_and_repeat_streams_on(sequence_table):
    table, users = sequence_table
    options = dict(batch_size=8, shuffle=True, shuffle_buffer=16, seed=7)
    _, first = read_all(table, **options)
    _, second = read_all(table, **options)
    _, unshuffled = read_all(table, batch_size=8)
    assert first == second
    assert sorted(first) == sorted(unshuffled) and first != unshuffled
    endless = make_sequence_dataset(table, SequenceReaderOptions(
        batch_size=10, repeat=True, drop_remainder=True))
    assert all(len(batch["id"]) == 10 for batch in endless.take(8))


def test_files_are_sharded_by_input_context(sequence_table):
    table, users = sequence_table
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        batches, ids = read_all(table, context, batch_size=8)
        assert max(len(batch["id"]) for batch in batches) == 4  # the per-replica share of 8
        assert ids == [user["id"] for shard in range(pipeline, 3, 2) for user in users[shard::3]]
        seen += ids
    assert sorted(seen) == sorted(user["id"] for user in users)
    context = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=0)
    with pytest.raises(UserInputError, match="3 shard files.*4 input pipelines"):
        make_sequence_dataset(table, SequenceReaderOptions(batch_size=8), context)


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_items=-1 must be at least 0"):
        SequenceReaderOptions(batch_size=8, max_items=-1)
    with pytest.raises(ValueError, match="batch_size=0 must be at least 1"):
        SequenceReaderOptions(batch_size=0)


# ---- both formats, from real builds ----------------------------------------------------


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence_parity")
    folders = {}
    for file_format in schema.FORMATS:
        folder = str(root / file_format)
        build_tables(BuildConfig(output_dir=folder, demo=True, demo_users=150, demo_items=40,
                                 num_shards=3, format=file_format),
                     log=lambda line: None)
        folders[file_format] = folder
    return folders


def _format_batches(folder, **options):
    table = resolve_table_files(folder, default_subdir=schema.SEQUENCES_SUBDIR)
    return list(make_sequence_dataset(table, SequenceReaderOptions(**options)))


@pytest.mark.parametrize("options", [
    dict(batch_size=16, max_items=7, min_items=20),
    dict(batch_size=16, shuffle=True, shuffle_buffer=50, seed=3, with_target_items=False),
], ids=["cut_and_filter", "shuffled"])
def test_parquet_and_tfrecord_give_the_same_batches(both_formats, options):
    parquet = _format_batches(both_formats["parquet"], **options)
    tfrecord = _format_batches(both_formats["tfrecord"], **options)
    assert len(parquet) == len(tfrecord) > 1
    for left, right in zip(parquet, tfrecord):
        assert list(left) == list(right)
        for key in left:
            if isinstance(left[key], tf.RaggedTensor):
                assert left[key].to_list() == right[key].to_list()
                assert left[key].dtype == right[key].dtype
            else:
                np.testing.assert_array_equal(left[key].numpy(), right[key].numpy())


def test_built_tables_validate_in_both_formats(both_formats):
    counts = set()
    for folder in both_formats.values():
        table = resolve_table_files(folder, default_subdir=schema.SEQUENCES_SUBDIR)
        counts.add(validate_sequence_table(table, table.num_item_ids))
        assert counts == {table.manifest["num_sequence_users"]}


def test_tfrecord_table_of_another_kind_is_named(both_formats):
    table = resolve_table_files(both_formats["tfrecord"], default_subdir=schema.TRAIN_SUBDIR)
    with pytest.raises(UserInputError, match=r"column items, row 0: is empty .*sequences/ table"):
        validate_sequence_table(table, 100)


def test_tfrecord_item_outside_the_index_names_file_column_and_row(tmp_path):
    path = str(tmp_path / "t.tfrecord")

    def example(user, items, targets):
        feature = {
            "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[user])),
            "items": tf.train.Feature(int64_list=tf.train.Int64List(value=items)),
            "target_items": tf.train.Feature(int64_list=tf.train.Int64List(value=targets)),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    with tf.io.TFRecordWriter(path) as writer:
        writer.write(example(b"a", [3, 4], []))
        writer.write(example(b"b", [5], [3, 99]))
    table = resolve_table_files(path)
    assert validate_sequence_table(table, 100) == 2
    with pytest.raises(UserInputError, match=f"file {path}, column target_items, row 1: item "
                                             f"index 99 is outside the item index of 10 ids"):
        validate_sequence_table(table, 10)


def test_tfrecord_of_another_schema_or_truncated_names_file_and_column(tmp_path):
    path = str(tmp_path / "floats.tfrecord")
    feature = {
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a"])),
        "items": tf.train.Feature(float_list=tf.train.FloatList(value=[3.0, 4.0])),
        "target_items": tf.train.Feature(int64_list=tf.train.Int64List(value=[5])),
    }
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    with pytest.raises(UserInputError, match=f"file {path}, column items: records after row 0 "
                                             f"do not match the sequence table schema"):
        validate_sequence_table(resolve_table_files(path), 100)

    damaged = tmp_path / "damaged.tfrecord"
    damaged.write_bytes(open(path, "rb").read()[:-5])
    with pytest.raises(UserInputError, match=f"file {damaged} is truncated or corrupt"):
        validate_sequence_table(resolve_table_files(str(damaged)), 100)


# ---- validation of Parquet rows ----------------------------------------------------------


def _write_rows(path, rows, table_schema=schema.SEQUENCE_SCHEMA):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=table_schema), path)
    return resolve_table_files(path)


def _row(**overrides):
    row = {"id": "u", "items": [3, 4, 5], "items_length": 3, "target_items": [6]}
    row.update(overrides)
    return row


def test_valid_table_counts_rows(tmp_path):
    table = _write_rows(str(tmp_path / "t.parquet"), [_row(), _row(id="v", target_items=[])])
    assert validate_sequence_table(table, num_item_ids=10) == 2


@pytest.mark.parametrize("row, column, message", [
    (_row(items=[3, 40, 5]), "items", r"row 1: item index 40 is outside the item index of 10 ids"),
    (_row(items=[3, -4, 5]), "items", r"row 1: negative item index -4"),
    (_row(items=[3, 1, 5]), "items", r"row 1: item index 1 is the special token <mask>"),
    (_row(target_items=[0]), "target_items", r"row 1: item index 0 is the special token <pad>"),
    (_row(target_items=[10]), "target_items", r"row 1: item index 10 is outside"),
    (_row(items_length=2), "items_length", r"row 1: says 2 items but items holds 3"),
    (_row(items=[], items_length=0), "items", r"row 1: is empty"),
    (_row(id="first"), "id", r"row 1: id 'first' appears more than once in the table"),
], ids=["beyond_index", "negative", "special_in_items", "special_in_target", "target_beyond_index",
        "wrong_length", "empty_items", "repeated_id"])
def test_bad_rows_name_file_column_and_row(tmp_path, row, column, message):
    path = str(tmp_path / "bad.parquet")
    table = _write_rows(path, [_row(id="first"), row])
    with pytest.raises(UserInputError, match=f"file {path}, column {column}, {message}"):
        validate_sequence_table(table, num_item_ids=10)


def test_missing_column_wrong_type_and_empty_table(tmp_path):
    path = str(tmp_path / "missing.parquet")
    pq.write_table(pa.table({"id": ["u"], "items": pa.array([[3]])}), path)
    with pytest.raises(UserInputError, match=f"file {path} has no column items_length"):
        validate_sequence_table(resolve_table_files(path), 10)

    path = str(tmp_path / "type.parquet")
    pq.write_table(pa.table({"id": ["u"], "items": ["3 4"], "items_length": [2],
                             "target_items": pa.array([[3]])}), path)
    with pytest.raises(UserInputError, match=f"file {path}, column items: expected type"):
        validate_sequence_table(resolve_table_files(path), 10)

    empty = _write_rows(str(tmp_path / "none" / "t.parquet"), [])
    with pytest.raises(UserInputError, match="the sequence table is empty"):
        validate_sequence_table(empty, 10)
