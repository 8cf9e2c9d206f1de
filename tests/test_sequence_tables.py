"""The item index and the item-sequence table that ``main/build_tables.py`` writes beside the SUMN tables."""

import collections
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import schema
from data_dumper import sequences, vocabulary
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from main.build_tables import parse_flags
from test_build_tables import build, write_log
from util.errors import UserInputError

# Item 30 is rated 3 times, items 9 and 10 twice (a tie: 9 before 10 as
# numbers, though "10" < "9" as text), item 7 once. User 1 rates five items,
# user 2 two, user 3 one.
EVENTS = [
    (1, 1, 30), (1, 2, 10), (1, 3, 30), (1, 4, 7), (1, 5, 9),
    (2, 1, 10), (2, 2, 30),
    (3, 1, 9),
]
INDEX = {30: 3, 9: 4, 10: 5, 7: 6}


@pytest.fixture
def log_path(tmp_path):
    path, _ = write_log(str(tmp_path), events=EVENTS, item_text={})
    return path


def read_sequences(folder, manifest):
    """``{user id: row dict}`` over all Parquet shards of the sequences table."""
    tables = [pq.read_table(os.path.join(folder, path))
              for path in manifest["files"][schema.SEQUENCES_SUBDIR]]
    return {row[schema.ID]: row for row in pa.concat_tables(tables).to_pylist()}


def indices(items):
    return [INDEX[item] for item in items]


def test_item_index_specials_first_then_descending_frequency_ties_by_id(tmp_path, log_path):
    manifest, folder = build(tmp_path, log_path)
    lines = sequences.read_item_index(os.path.join(folder, schema.ITEM_INDEX_FILE))
    assert lines == ["<pad>", "<mask>", "<cls>", "30", "9", "10", "7"]
    assert lines[schema.ITEM_PAD_ID] == schema.ITEM_PAD_TOKEN
    assert lines[schema.ITEM_MASK_ID] == schema.ITEM_MASK_TOKEN
    assert lines[schema.ITEM_CLS_ID] == schema.ITEM_CLS_TOKEN
    assert manifest["num_item_ids"] == len(lines) == manifest["num_items"] + schema.FIRST_ITEM_ID


def test_rows_split_history_and_target_like_the_training_table(tmp_path, log_path):
    manifest, folder = build(tmp_path, log_path, target_fraction=0.4)
    rows = read_sequences(folder, manifest)
    # User 1: ceil(0.4 * 5) = 2 target behaviours (items 7, 9); user 2: 1 (item 30).
    assert rows["1"] == {"id": "1", "items": indices([30, 10, 30]), "items_length": 3,
                         "target_items": indices([7, 9])}
    assert rows["2"] == {"id": "2", "items": indices([10]), "items_length": 1,
                         "target_items": indices([30])}
    # User 3's only behaviour is its target: no history, no row.
    assert set(rows) == {"1", "2"}
    assert manifest["num_sequence_users"] == 2


def test_split_by_time_keeps_users_with_an_empty_target(tmp_path, log_path):
    manifest, folder = build(tmp_path, log_path, split_time="5")
    rows = read_sequences(folder, manifest)
    assert rows["1"][schema.ITEMS] == indices([30, 10, 30, 7])
    assert rows["1"][schema.TARGET_ITEMS] == indices([9])
    # Users 2 and 3 have no training row (no target) but do have a sequence.
    assert manifest["num_training_users"] == 1
    assert rows["2"][schema.ITEMS] == indices([10, 30]) and rows["2"][schema.TARGET_ITEMS] == []
    assert rows["3"][schema.ITEMS] == indices([9]) and rows["3"][schema.TARGET_ITEMS] == []


def test_max_items_per_user_keeps_the_most_recent_history_items(tmp_path, log_path):
    manifest, folder = build(tmp_path, log_path, target_fraction=0.2, max_items_per_user=2,
                             max_query_per_week=1)
    rows = read_sequences(folder, manifest)
    # User 1's history is items 30, 10, 30, 7; the target (item 9) is never cut.
    assert rows["1"][schema.ITEMS] == indices([30, 7])
    assert rows["1"][schema.ITEMS_LENGTH] == 2
    assert rows["1"][schema.TARGET_ITEMS] == indices([9])
    # --max_query_per_week cuts the SUMN tables only.
    assert manifest["flags"]["max_items_per_user"] == 2


def test_manifest_files_and_shards(tmp_path, log_path):
    manifest, folder = build(tmp_path, log_path, num_shards=2, split_time="5")
    with open(os.path.join(folder, schema.MANIFEST_FILE)) as handle:
        assert json.load(handle) == manifest
    assert manifest["item_index_file"] == schema.ITEM_INDEX_FILE
    assert manifest["files"][schema.SEQUENCES_SUBDIR] == [
        "sequences/part-00000-of-00002.parquet", "sequences/part-00001-of-00002.parquet"]
    assert manifest["num_shards"][schema.SEQUENCES_SUBDIR] == 2
    for path in manifest["files"][schema.SEQUENCES_SUBDIR]:
        assert pq.read_schema(os.path.join(folder, path)).equals(schema.SEQUENCE_SCHEMA)
    # The same users per shard as the inference table (user rank % 2), in rank order.
    shard_users = [pq.read_table(os.path.join(folder, path))[schema.ID].to_pylist()
                   for path in manifest["files"][schema.SEQUENCES_SUBDIR]]
    assert shard_users == [["1", "3"], ["2"]]
    assert {"items.txt", "sequences"} <= set(os.listdir(folder))


@pytest.fixture(scope="module")
def demo_tables(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("demo") / "tables")
    manifest = build_tables(BuildConfig(output_dir=folder, demo=True, demo_users=200,
                                        demo_items=50, num_shards=3), log=lambda line: None)
    return manifest, folder


def _read_table(folder, manifest, subdir):
    tables = [pq.read_table(os.path.join(folder, path)) for path in manifest["files"][subdir]]
    return {row[schema.ID]: row for row in pa.concat_tables(tables).to_pylist()}


def test_demo_sequences_hold_the_same_behaviours_as_the_sumn_tables(demo_tables):
    manifest, folder = demo_tables
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    items = sequences.read_item_index(os.path.join(folder, schema.ITEM_INDEX_FILE))
    rows = _read_table(folder, manifest, schema.SEQUENCES_SUBDIR)
    train = _read_table(folder, manifest, schema.TRAIN_SUBDIR)
    inference = _read_table(folder, manifest, schema.INFERENCE_SUBDIR)

    def item_ids(history):  # a behaviour's first word is its item:<id> token
        return [words[behaviour[0]].removeprefix("item:") for behaviour in history]

    assert manifest["num_sequence_users"] == len(rows) == (
        manifest["num_users"] - manifest["skipped_users"]["empty_history"])
    assert set(train) <= set(rows)
    for user, row in train.items():
        # Same split: the SUMN history is the sequence's history (no cut at these lengths).
        assert rows[user][schema.ITEMS_LENGTH] == row[schema.HISTORY_LENGTH]
        assert [items[i] for i in rows[user][schema.ITEMS]] == item_ids(row[schema.HISTORY])
    for user, row in rows.items():
        # History + target = the user's whole sequence, as the inference table holds it.
        whole = [items[i] for i in row[schema.ITEMS] + row[schema.TARGET_ITEMS]]
        assert whole == item_ids(inference[user][schema.HISTORY])
        assert min(row[schema.ITEMS]) >= schema.FIRST_ITEM_ID


def test_demo_item_index_is_ordered_by_descending_frequency(demo_tables):
    manifest, folder = demo_tables
    rows = _read_table(folder, manifest, schema.SEQUENCES_SUBDIR)
    counts = collections.Counter(
        index for row in rows.values() for index in row[schema.ITEMS] + row[schema.TARGET_ITEMS])
    assert manifest["skipped_users"]["empty_history"] == 0  # so the rows hold every behaviour
    frequencies = [counts[index] for index in range(schema.FIRST_ITEM_ID, manifest["num_item_ids"])]
    assert frequencies == sorted(frequencies, reverse=True)
    assert sum(frequencies) == manifest["num_events"]


def test_tfrecord_sequences_hold_the_same_rows(tmp_path, log_path):
    import tensorflow as tf

    manifest, folder = build(tmp_path, log_path, name="parquet", split_time="5")
    tf_manifest, tf_folder = build(tmp_path, log_path, name="tfrecord", split_time="5",
                                   format=schema.TFRECORD)
    expected = read_sequences(folder, manifest)
    paths = [os.path.join(tf_folder, path) for path in tf_manifest["files"][schema.SEQUENCES_SUBDIR]]
    assert all(path.endswith(".tfrecord") for path in paths)
    seen = {}
    for record in tf.data.TFRecordDataset(paths):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        assert set(feature) == {schema.ID, schema.ITEMS, schema.TARGET_ITEMS}
        user = feature[schema.ID].bytes_list.value[0].decode()
        seen[user] = (list(feature[schema.ITEMS].int64_list.value),
                      list(feature[schema.TARGET_ITEMS].int64_list.value))
    assert seen == {user: (row[schema.ITEMS], row[schema.TARGET_ITEMS])
                    for user, row in expected.items()}
    assert tf_manifest["num_item_ids"] == manifest["num_item_ids"]


def test_max_items_per_user_flag_and_its_check(tmp_path, log_path):
    assert parse_flags(["--output_dir=x"]).max_items_per_user == 200
    assert parse_flags(["--output_dir=x", "--max_items_per_user=7"]).max_items_per_user == 7
    with pytest.raises(UserInputError, match="--max_items_per_user=0 must be at least 1"):
        build(tmp_path, log_path, max_items_per_user=0)

