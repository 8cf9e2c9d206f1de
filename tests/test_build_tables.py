"""Table building from a generic behaviour log: windows, vocabulary, shards, output folder."""

import collections
import json
import math
import os
import random

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from contracts import schema
from data_dumper import table_writer, vocabulary
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from util.errors import UserInputError

# A hand-made log. User 1 rates items 10..14 at times 1..5; user 2 rates four
# items, two of them at the same time (ties break by item id); user 3 rates once.
EVENTS = [
    (1, 1, 10), (1, 2, 11), (1, 3, 12), (1, 4, 13), (1, 5, 14),
    (2, 7, 12), (2, 5, 11), (2, 5, 10), (2, 9, 15),
    (3, 1, 10),
]
ITEM_TEXT = {10: "Red apple", 11: "green APPLE", 12: "Red, red wine!", 13: None, 14: "apple pie"}
# Item 15 is not in the item table: it keeps only its id token.


def write_log(folder, events=EVENTS, item_text=ITEM_TEXT, file_format="parquet"):
    users, times, items = zip(*events)
    log = pa.table({"user": list(users), "ts": list(times), "item": list(items)})
    table = pa.table({"id": list(item_text), "title": list(item_text.values())})
    suffix = ".parquet" if file_format == "parquet" else ".csv"
    log_path, items_path = os.path.join(folder, "log" + suffix), os.path.join(folder, "items" + suffix)
    if file_format == "parquet":
        pq.write_table(log, log_path)
        pq.write_table(table, items_path)
    else:
        pcsv.write_csv(log, log_path)
        pcsv.write_csv(table, items_path)
    return log_path, items_path


def build(tmp_path, log_path, items_path=None, name="tables", **flags):
    settings = dict(
        output_dir=str(tmp_path / name), log=log_path, log_user_column="user",
        log_order_column="ts", log_item_column="item", num_shards=2,
    )
    if items_path is not None:
        settings.update(items=items_path, item_id_column="id", item_text_column="title")
    settings.update(flags)
    manifest = build_tables(BuildConfig(**settings), log=lambda line: None)
    return manifest, str(tmp_path / name)


def read_rows(folder, manifest, subdir):
    """``{user id: row dict}`` over all Parquet shards of a table."""
    names = [os.path.basename(path) for path in manifest["files"][subdir]]
    table = pa.concat_tables([pq.read_table(os.path.join(folder, subdir, name)) for name in names])
    return {row[schema.ID]: row for row in table.to_pylist()}


def decode(words, row_history):
    return [[words[word_id] for word_id in behaviour] for behaviour in row_history]


@pytest.fixture
def hand_made(tmp_path):
    return write_log(str(tmp_path))


def test_windows_fraction_split(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made, target_fraction=0.4)
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    train = read_rows(folder, manifest, schema.TRAIN_SUBDIR)
    # User 1: 5 behaviours, ceil(0.4 * 5) = 2 form the target (items 13, 14).
    assert decode(words, train["1"][schema.HISTORY]) == [
        ["item:10", "red", "apple"],
        ["item:11", "green", "apple"],
        ["item:12", "red", "red", "wine"],
    ]
    assert train["1"][schema.HISTORY_LENGTH] == 3
    target = dict(zip(train["1"][schema.TARGET_WORDS], train["1"][schema.TARGET_COUNTS]))
    assert {words[word_id]: count for word_id, count in target.items()} == {
        "item:13": 1, "item:14": 1, "apple": 1, "pie": 1,
    }
    # User 2 in time order: 10 and 11 tie at time 5 (10 first), then 12, then 15.
    assert decode(words, train["2"][schema.HISTORY]) == [
        ["item:10", "red", "apple"], ["item:11", "green", "apple"],
    ]
    assert [words[w] for w in train["2"][schema.TARGET_WORDS]] == ["red", "item:12", "wine", "item:15"]
    assert train["2"][schema.TARGET_COUNTS] == [2, 1, 1, 1]
    # User 3 has one behaviour: it is the target, so the history is empty.
    assert "3" not in train
    assert manifest["skipped_users"]["empty_history"] == 1
    assert manifest["num_training_users"] == 2


def test_target_words_most_frequent_first_ties_by_id(tmp_path):
    events = [(1, 0, 20)] + [(1, t, item) for t, item in enumerate([10, 12, 11, 12], start=1)]
    log_path, items_path = write_log(str(tmp_path), events=events)
    manifest, folder = build(tmp_path, log_path, items_path, target_fraction=0.8, target_length=3)
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    row = read_rows(folder, manifest, schema.TRAIN_SUBDIR)["1"]
    # Target: items 10, 12, 11, 12 -> red 5, apple 2, item:12 2, wine 2, ...; 3 kept.
    counted = collections.Counter(
        ["item:10", "red", "apple", "item:12", "red", "red", "wine", "item:11", "green", "apple",
         "item:12", "red", "red", "wine"]
    )
    expected = sorted(counted, key=lambda word: (-counted[word], words.index(word)))[:3]
    assert [words[w] for w in row[schema.TARGET_WORDS]] == expected
    assert row[schema.TARGET_COUNTS] == [counted[word] for word in expected]
    assert expected[0] == "red" and row[schema.TARGET_COUNTS][0] == 5


def test_history_keeps_most_recent_behaviours(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made, target_fraction=0.2, max_query_per_week=2)
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    train = read_rows(folder, manifest, schema.TRAIN_SUBDIR)
    # User 1: history is items 10..13; the two most recent are kept, oldest first.
    assert [behaviour[0] for behaviour in decode(words, train["1"][schema.HISTORY])] == ["item:12", "item:13"]
    inference = read_rows(folder, manifest, schema.INFERENCE_SUBDIR)
    assert [b[0] for b in decode(words, inference["1"][schema.HISTORY])] == ["item:13", "item:14"]
    assert set(inference) == {"1", "2", "3"}
    assert inference["3"][schema.HISTORY_LENGTH] == 1


def test_words_per_behaviour_capped_keeping_the_id_token(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made, max_words_per_query=2)
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    inference = read_rows(folder, manifest, schema.INFERENCE_SUBDIR)
    assert decode(words, inference["1"][schema.HISTORY])[2] == ["item:12", "red"]
    assert "wine" not in words  # cut words never reach the vocabulary


def test_split_by_time(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made, split_time="5")
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    train = read_rows(folder, manifest, schema.TRAIN_SUBDIR)
    # Behaviours at or after time 5 are the target.
    assert [b[0] for b in decode(words, train["1"][schema.HISTORY])] == ["item:10", "item:11", "item:12", "item:13"]
    assert [words[w] for w in train["1"][schema.TARGET_WORDS]] == ["apple", "item:14", "pie"]
    # User 2's behaviours are all at or after time 5; user 3's all before it.
    assert set(train) == {"1"}
    assert manifest["skipped_users"]["empty_history"] == 1
    assert manifest["skipped_users"]["empty_target"] == 1
    assert manifest["flags"]["split_time"] == "5" and manifest["flags"]["target_fraction"] is None


def test_split_time_on_timestamps_from_csv(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "user,ts,item\n1,2003-01-01 10:00:00,10\n1,2003-02-01 10:00:00,11\n1,2003-03-01 10:00:00,12\n"
    )
    manifest, folder = build(tmp_path, str(path), split_time="2003-02-01")
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    row = read_rows(folder, manifest, schema.TRAIN_SUBDIR)["1"]
    assert decode(words, row[schema.HISTORY]) == [["item:10"]]
    assert sorted(words[w] for w in row[schema.TARGET_WORDS]) == ["item:11", "item:12"]
    with pytest.raises(UserInputError, match=r"--split_time=next week .*TIMESTAMP"):
        build(tmp_path, str(path), name="again", split_time="next week")


def test_vocabulary_ids_pad_oov_and_min_count(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made, min_count=3)
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    # Counts over the log's behaviours: red 7, apple 6, item:10 3, then words seen
    # twice or once, which min_count=3 sends to <oov>.
    assert words == [schema.PAD_TOKEN, schema.OOV_TOKEN, "red", "apple", "item:10"]
    assert manifest["vocabulary_size"] == 5
    assert manifest["words"] == {"total": 28, "oov": 12, "distinct": 11, "distinct_oov": 8}
    inference = read_rows(folder, manifest, schema.INFERENCE_SUBDIR)
    # User 1's second behaviour (item 11: "item:11 green apple") -> oov, oov, apple.
    assert inference["1"][schema.HISTORY][1] == [schema.OOV_ID, schema.OOV_ID, words.index("apple")]
    # <oov> never appears in a target.
    for row in read_rows(folder, manifest, schema.TRAIN_SUBDIR).values():
        assert schema.OOV_ID not in row[schema.TARGET_WORDS]


def test_max_vocabulary_counts_reserved_ids(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made, max_vocabulary=4)
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    assert words == [schema.PAD_TOKEN, schema.OOV_TOKEN, "red", "apple"]
    assert manifest["words"]["distinct_oov"] == manifest["words"]["distinct"] - 2


def reference_rows(events, item_text, fraction, max_query, max_words, target_length, min_count):
    """A plain-Python statement of the windowing rules, to check the SQL against."""
    def item_words(item):
        text = item_text.get(item) or ""
        import re
        return ([f"item:{item}"] + [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w])[:max_words]

    counts = collections.Counter(word for _, _, item in events for word in item_words(item))
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    ids = {word: index + schema.FIRST_WORD_ID for index, word in enumerate(kept)}
    by_user = collections.defaultdict(list)
    for user, time, item in events:
        by_user[user].append((time, item))
    train, inference = {}, {}
    for user, behaviours in by_user.items():
        sequence = [[ids.get(w, schema.OOV_ID) for w in item_words(item)] for _, item in sorted(behaviours)]
        inference[str(user)] = sequence[-max_query:]
        split = len(sequence) - math.ceil(round(len(sequence) * fraction, 9))
        target = collections.Counter(w for b in sequence[split:] for w in b if w != schema.OOV_ID)
        top = sorted(target, key=lambda w: (-target[w], w))[:target_length]
        if split > 0 and top:
            train[str(user)] = (sequence[:split][-max_query:], top, [target[w] for w in top])
    return ["<pad>", "<oov>", *kept], train, inference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_logs_match_the_reference(tmp_path, seed):
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
    item_text = {item: " ".join(rng.choices(words, k=rng.randint(0, 5))) for item in range(30)}
    events = [
        (rng.randint(1, 25), rng.randint(0, 40), rng.randint(0, 34)) for _ in range(400)
    ]
    settings = dict(fraction=0.3, max_query=6, max_words=4, target_length=5, min_count=2)
    log_path, items_path = write_log(str(tmp_path), events=events, item_text=item_text)
    manifest, folder = build(
        tmp_path, log_path, items_path, num_shards=3, target_fraction=settings["fraction"],
        max_query_per_week=settings["max_query"], max_words_per_query=settings["max_words"],
        target_length=settings["target_length"], min_count=settings["min_count"],
    )
    expected_words, expected_train, expected_inference = reference_rows(events, item_text, **settings)
    assert vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE)) == expected_words
    train = read_rows(folder, manifest, schema.TRAIN_SUBDIR)
    assert {
        user: (row[schema.HISTORY], row[schema.TARGET_WORDS], row[schema.TARGET_COUNTS])
        for user, row in train.items()
    } == expected_train
    inference = read_rows(folder, manifest, schema.INFERENCE_SUBDIR)
    assert {user: row[schema.HISTORY] for user, row in inference.items()} == expected_inference
    assert manifest["num_training_users"] == len(expected_train)
    assert manifest["num_inference_users"] == manifest["num_users"] == len(expected_inference)


def test_shards_have_the_exact_schema_and_deal_users_round_robin(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made, num_shards=2)
    assert manifest["files"][schema.TRAIN_SUBDIR] == [
        "train/part-00000-of-00002.parquet", "train/part-00001-of-00002.parquet",
    ]
    for subdir, expected in ((schema.TRAIN_SUBDIR, schema.TRAINING_SCHEMA),
                             (schema.INFERENCE_SUBDIR, schema.INFERENCE_SCHEMA)):
        for path in manifest["files"][subdir]:
            assert pq.read_schema(os.path.join(folder, path)).equals(expected)
    shard_users = [pq.read_table(os.path.join(folder, path))[schema.ID].to_pylist()
                   for path in manifest["files"][schema.INFERENCE_SUBDIR]]
    assert shard_users == [["1", "3"], ["2"]]
    assert manifest["num_shards"] == {"train": 2, "inference": 2, "sequences": 2}


def test_manifest_records_sizes_and_flags(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made)
    with open(os.path.join(folder, schema.MANIFEST_FILE)) as handle:
        assert json.load(handle) == manifest
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert (manifest["num_users"], manifest["num_items"], manifest["num_events"]) == (3, 6, 10)
    assert manifest["format"] == schema.PARQUET
    assert manifest["flags"]["log_order_column"] == "ts"
    assert manifest["flags"]["target_fraction"] == 0.2
    assert manifest["labels_file"] is None
    assert not os.path.exists(os.path.join(folder, schema.LABELS_FILE))
    assert sorted(os.listdir(folder)) == [
        "inference", "items.txt", "manifest.json", "sequences", "train", "vocabulary.txt"]


def test_csv_log_and_token_column(tmp_path):
    (tmp_path / "log.csv").write_text("u,t,i\nann,1,a\nann,2,b\nann,3,c\n")
    pq.write_table(pa.table({"item": ["a", "b"], "tags": [["Rock", " pop "], []]}), tmp_path / "items.parquet")
    manifest, folder = build(
        tmp_path, str(tmp_path / "log.csv"), log_user_column="u", log_order_column="t",
        log_item_column="i", items=str(tmp_path / "items.parquet"), item_id_column="item",
        item_tokens_column="tags", target_fraction=0.33,
    )
    words = vocabulary.read_vocabulary(os.path.join(folder, schema.VOCABULARY_FILE))
    row = read_rows(folder, manifest, schema.TRAIN_SUBDIR)["ann"]
    assert decode(words, row[schema.HISTORY]) == [["item:a", "Rock", "pop"], ["item:b"]]
    assert [words[w] for w in row[schema.TARGET_WORDS]] == ["item:c"]


def test_tfrecord_shards_hold_the_same_rows(tmp_path, hand_made):
    import tensorflow as tf

    manifest, folder = build(tmp_path, *hand_made, name="parquet")
    tf_manifest, tf_folder = build(tmp_path, *hand_made, name="tfrecord", format=schema.TFRECORD)
    assert tf_manifest["files"][schema.TRAIN_SUBDIR][0].endswith(".tfrecord")
    for subdir in (schema.TRAIN_SUBDIR, schema.INFERENCE_SUBDIR):
        expected = read_rows(folder, manifest, subdir)
        paths = [os.path.join(tf_folder, path) for path in tf_manifest["files"][subdir]]
        seen = {}
        for record in tf.data.TFRecordDataset(paths):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            user = feature[schema.ID].bytes_list.value[0].decode()
            flat = list(feature[schema.HISTORY_WORDS].int64_list.value)
            lengths = list(feature[schema.HISTORY_WORD_COUNTS].int64_list.value)
            offsets = [sum(lengths[:k]) for k in range(len(lengths) + 1)]
            seen[user] = [flat[offsets[k]:offsets[k + 1]] for k in range(len(lengths))]
            assert seen[user] == expected[user][schema.HISTORY]
            if subdir == schema.TRAIN_SUBDIR:
                assert list(feature[schema.TARGET_WORDS].int64_list.value) == expected[user][schema.TARGET_WORDS]
                assert list(feature[schema.TARGET_COUNTS].int64_list.value) == expected[user][schema.TARGET_COUNTS]
            else:
                assert schema.TARGET_WORDS not in feature
        assert set(seen) == set(expected)


def test_existing_output_needs_overwrite(tmp_path, hand_made):
    manifest, folder = build(tmp_path, *hand_made)
    with pytest.raises(UserInputError, match=r"--output_dir=.* is not empty; pass --overwrite"):
        build(tmp_path, *hand_made)
    build(tmp_path, *hand_made, overwrite=True, num_shards=1)
    assert os.listdir(os.path.join(folder, schema.TRAIN_SUBDIR)) == ["part-00000-of-00001.parquet"]


def test_overwrite_never_replaces_a_folder_that_is_not_a_table_folder(tmp_path, hand_made):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "thesis.tex").write_text("precious")
    with pytest.raises(UserInputError, match="not a table folder"):
        build(tmp_path, *hand_made, overwrite=True)
    assert (tmp_path / "tables" / "thesis.tex").read_text() == "precious"


def test_failed_build_leaves_the_old_tables_alone(tmp_path, hand_made, monkeypatch):
    manifest, folder = build(tmp_path, *hand_made)
    before = sorted(os.listdir(os.path.join(folder, schema.TRAIN_SUBDIR)))

    def broken_writer(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(table_writer, "write_table_shards", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        build(tmp_path, *hand_made, overwrite=True, num_shards=1)
    assert sorted(os.listdir(os.path.join(folder, schema.TRAIN_SUBDIR))) == before
    assert sorted(os.listdir(tmp_path)) == ["items.parquet", "log.parquet", "tables"]


@pytest.fixture
def million_event_log(tmp_path):
    """A 1M-behaviour log: its DuckDB tables (~50 MB) outgrow a 30 MB memory limit."""
    rng = np.random.default_rng(5)
    size = 1_000_000
    path = str(tmp_path / "big.parquet")
    pq.write_table(
        pa.table({"user": rng.integers(1, 5000, size), "ts": np.arange(size),
                  "item": rng.integers(1, 2000, size)}),
        path,
    )
    return path


def test_log_larger_than_the_memory_limit_spills_to_disk(tmp_path, million_event_log):
    manifest, _ = build(tmp_path, million_event_log, duckdb_memory_limit="30MB", num_shards=16)
    assert manifest["num_events"] == 1_000_000
    assert manifest["num_training_users"] == manifest["num_users"] == 4999


def test_running_out_of_memory_names_the_flags(tmp_path, million_event_log):
    with pytest.raises(UserInputError, match=r"--duckdb_memory_limit=30MB; raise it, or raise --num_shards"):
        build(tmp_path, million_event_log, duckdb_memory_limit="30MB", num_shards=1)
    assert not os.path.exists(tmp_path / "tables")
