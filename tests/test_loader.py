"""The loaders: batches, truncation, target weights, sharding, determinism, bad input."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from contracts import schema
from data_loader.dataset import make_dataset, shard_files
from data_loader.reader_options import ReaderOptions
from data_loader.table_files import resolve_table_files
from data_loader.validation import validate_table
from util.errors import UserInputError

VOCABULARY_SIZE = 50


def _user(index, rng):
    behaviours = [list(map(int, rng.integers(2, VOCABULARY_SIZE, rng.integers(1, 6))))
                  for _ in range(int(rng.integers(1, 9)))]
    targets = np.array(sorted(set(map(int, rng.integers(2, VOCABULARY_SIZE, rng.integers(1, 7))))))
    counts = rng.integers(1, 5, len(targets))
    most_frequent_first = np.argsort(-counts, kind="stable")  # as contracts/schema.py orders them
    targets, counts = targets[most_frequent_first].tolist(), counts[most_frequent_first].tolist()
    return {"id": f"user{index}", "history": behaviours, "history_length": len(behaviours),
            "target_words": targets, "target_counts": counts}


def write_parquet_table(folder, num_users=37, num_shards=3, seed=0):
    """A small training table in the builder's layout, with a manifest."""
    rng = np.random.default_rng(seed)
    users = [_user(index, rng) for index in range(num_users)]
    train = os.path.join(folder, schema.TRAIN_SUBDIR)
    os.makedirs(train, exist_ok=True)
    for shard in range(num_shards):
        rows = users[shard::num_shards]
        table = pa.Table.from_pylist(rows, schema=schema.TRAINING_SCHEMA)
        pq.write_table(table, os.path.join(train, schema.shard_name(shard, num_shards, "parquet")))
    with open(os.path.join(folder, schema.MANIFEST_FILE), "w") as handle:
        json.dump({"schema_version": 1, "vocabulary_size": VOCABULARY_SIZE}, handle)
    return users


def read_all(table, **options):
    batches = list(make_dataset(table, ReaderOptions(**options)))
    ids = [i.decode() for batch in batches for i in batch["id"].numpy()]
    return batches, ids


@pytest.fixture
def parquet_table(tmp_path):
    users = write_parquet_table(str(tmp_path))
    return resolve_table_files(str(tmp_path)), users


def test_folder_resolves_to_train_shards_and_manifest(parquet_table):
    table, _ = parquet_table
    assert table.file_format == "parquet"
    assert len(table.files) == 3 and all("/train/" in path for path in table.files)
    assert table.vocabulary_size == VOCABULARY_SIZE


def test_every_user_read_once_with_exact_values(parquet_table):
    table, users = parquet_table
    batches, ids = read_all(table, batch_size=8)
    assert sorted(ids) == sorted(user["id"] for user in users)
    by_id = {user["id"]: user for user in users}
    for batch in batches:
        for row, user_id in enumerate(batch["id"].numpy()):
            user = by_id[user_id.decode()]
            assert batch["history"][row].to_list() == user["history"]
            assert batch["history_length"][row] == user["history_length"]
            assert batch["target_words"][row].numpy().tolist() == user["target_words"]
            np.testing.assert_allclose(batch["target_weights"][row].numpy().sum(), 1.0, rtol=1e-6)


def test_short_last_batch_is_kept_or_dropped(parquet_table):
    table, users = parquet_table
    kept, _ = read_all(table, batch_size=8)
    dropped, _ = read_all(table, batch_size=8, drop_remainder=True)
    assert [len(b["id"]) for b in kept] == [8, 8, 8, 8, len(users) - 32]
    assert [len(b["id"]) for b in dropped] == [8, 8, 8, 8]


def test_truncation_keeps_most_recent_behaviours_first_words_top_targets(parquet_table):
    table, users = parquet_table
    batches, _ = read_all(table, batch_size=64, max_behaviours=2, max_words=1, max_targets=1)
    by_id = {user["id"]: user for user in users}
    batch = batches[0]
    for row, user_id in enumerate(batch["id"].numpy()):
        user = by_id[user_id.decode()]
        expected = [behaviour[:1] for behaviour in user["history"][-2:]]
        assert batch["history"][row].to_list() == expected
        assert batch["history_length"][row] == len(expected)
        assert batch["target_words"][row].numpy().tolist() == user["target_words"][:1]


@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "log1p_count"])
def test_target_weights(parquet_table, weighted):
    table, users = parquet_table
    batches, _ = read_all(table, batch_size=64, weighted_target=weighted)
    by_id = {user["id"]: user for user in users}
    batch = batches[0]
    for row, user_id in enumerate(batch["id"].numpy()):
        counts = np.array(by_id[user_id.decode()]["target_counts"], dtype=np.float64)
        raw = np.log1p(counts) if weighted else np.ones_like(counts)
        np.testing.assert_allclose(batch["target_weights"][row].numpy(), raw / raw.sum(), rtol=1e-5)


def test_inference_reading_ignores_targets(parquet_table):
    table, _ = parquet_table
    batches, _ = read_all(table, batch_size=16, with_target=False)
    assert set(batches[0]) == {"id", "history", "history_length"}


def test_shuffle_is_deterministic_under_a_seed_and_changes_order(parquet_table):
    table, users = parquet_table
    options = dict(batch_size=8, shuffle=True, shuffle_buffer=16, seed=7)
    _, first = read_all(table, **options)
    _, second = read_all(table, **options)
    _, unshuffled = read_all(table, batch_size=8)
    assert first == second
    assert sorted(first) == sorted(unshuffled) and first != unshuffled


def test_repeat_streams_past_the_end(parquet_table):
    table, users = parquet_table
    dataset = make_dataset(table, ReaderOptions(batch_size=10, repeat=True, drop_remainder=True))
    batches = list(dataset.take(10))
    assert all(len(b["id"]) == 10 for b in batches)


def test_files_are_sharded_by_input_context(parquet_table):
    table, users = parquet_table
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        assert shard_files(table.files, context) == list(table.files[pipeline::2])
        dataset = make_dataset(table, ReaderOptions(batch_size=8), context)
        batches = list(dataset)
        assert max(len(b["id"]) for b in batches) == 4  # the per-replica share of 8
        seen += [i.decode() for b in batches for i in b["id"].numpy()]
    assert sorted(seen) == sorted(user["id"] for user in users)


def test_more_pipelines_than_files_is_a_clear_error(parquet_table):
    table, _ = parquet_table
    context = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=0)
    with pytest.raises(UserInputError, match="3 shard files.*4 input pipelines"):
        shard_files(table.files, context)


# ---- --tables resolution -------------------------------------------------------------


def test_tables_flag_accepts_glob_and_list(parquet_table, tmp_path):
    table, _ = parquet_table
    by_glob = resolve_table_files(str(tmp_path / "train" / "*.parquet"))
    by_list = resolve_table_files(",".join(table.files))
    assert by_glob.files == by_list.files == table.files


@pytest.mark.parametrize("spec, message", [
    ("", "--tables is empty"),
    ("/no/such/file.parquet", "file /no/such/file.parquet does not exist"),
    ("/no/such/*.parquet", "matches no file"),
])
def test_tables_flag_errors(spec, message):
    with pytest.raises(UserInputError, match=message):
        resolve_table_files(spec)


def test_mixed_formats_are_rejected(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"x")
    (tmp_path / "b.tfrecord").write_bytes(b"x")
    with pytest.raises(UserInputError, match="mixes Parquet and TFRecord"):
        resolve_table_files(str(tmp_path))


# ---- validation ------------------------------------------------------------------------


def _write_rows(path, rows, table_schema=schema.TRAINING_SCHEMA):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=table_schema), path)
    return resolve_table_files(path)


def _row(**overrides):
    row = {"id": "u", "history": [[2, 3], [4]], "history_length": 2,
           "target_words": [5], "target_counts": [1]}
    row.update(overrides)
    return row


def test_valid_table_counts_rows(tmp_path):
    table = _write_rows(str(tmp_path / "t.parquet"), [_row(), _row(id="v")])
    assert validate_table(table, with_target=True, vocabulary_size=10) == 2


@pytest.mark.parametrize("row, column, message", [
    (_row(history=[[2, 3], [40]]), "history", r"row 1: word id 40 is outside the vocabulary of 10"),
    (_row(history=[[2, -3], [4]]), "history", r"row 1: negative word id -3"),
    (_row(target_words=[12]), "target_words", r"row 1: word id 12 is outside"),
    (_row(history_length=5), "history_length", r"row 1: says 5 behaviours but history holds 2"),
    (_row(target_counts=[1, 2]), "target_counts", r"row 1: has 2 counts for 1 target words"),
    (_row(target_counts=[0]), "target_counts", r"row 1: count 0 is below 1"),
    (_row(history=[], history_length=0), "history", r"row 1: is empty"),
    (_row(target_words=[], target_counts=[]), "target_words", r"row 1: is empty"),
    (_row(history=[[2, 0], [4]]), "history", r"row 1: word id 0 is padding"),
    (_row(target_words=[0], target_counts=[1]), "target_words", r"row 1: word id 0 is padding"),
    (_row(target_words=[5, 6, 5], target_counts=[2, 1, 1]), "target_words",
     r"row 1: word id 5 appears more than once"),
    (_row(target_words=[5, 6], target_counts=[1, 3]), "target_counts",
     r"row 1: count 3 follows a smaller count; target words are ordered most frequent first"),
    (_row(id="first"), "id", r"row 1: id 'first' appears more than once in the table"),
], ids=["id_beyond_vocabulary", "negative_id", "target_beyond_vocabulary",
        "wrong_history_length", "counts_mismatch", "zero_count", "empty_history", "empty_target",
        "padding_in_behaviour", "padding_target", "repeated_target", "counts_rising",
        "repeated_id"])
def test_bad_rows_name_file_column_and_row(tmp_path, row, column, message):
    path = str(tmp_path / "bad.parquet")
    table = _write_rows(path, [_row(id="first"), row])
    with pytest.raises(UserInputError, match=f"file {path}, column {column}, {message}"):
        validate_table(table, with_target=True, vocabulary_size=10)


def test_missing_column_names_file_and_column(tmp_path):
    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"id": ["u"], "history": pa.array([[[2]]])}), path)
    with pytest.raises(UserInputError, match=f"file {path} has no column history_length"):
        validate_table(resolve_table_files(path), with_target=True)


def test_wrong_column_type_names_file_and_column(tmp_path):
    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"id": ["u"], "history": ["not a list"], "history_length": [1]}), path)
    with pytest.raises(UserInputError, match=f"file {path}, column history: expected type"):
        validate_table(resolve_table_files(path), with_target=False)


def test_empty_file_truncated_file_and_empty_table(tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(UserInputError, match=f"file {empty} is empty"):
        validate_table(resolve_table_files(str(empty)), with_target=True)

    good = str(tmp_path / "good" / "t.parquet")
    _write_rows(good, [_row()] * 50)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(open(good, "rb").read()[:-40])
    with pytest.raises(UserInputError, match=f"file {truncated} is not a readable Parquet file"):
        validate_table(resolve_table_files(str(truncated)), with_target=True)

    no_rows = _write_rows(str(tmp_path / "none" / "t.parquet"), [])
    with pytest.raises(UserInputError, match="the table is empty"):
        validate_table(no_rows, with_target=True)


def test_length_grouping_batches_similar_histories_and_keeps_every_user(tmp_path):
    users = write_parquet_table(str(tmp_path), num_users=400, num_shards=2, seed=5)
    table = resolve_table_files(str(tmp_path))
    options = dict(batch_size=20, shuffle=True, shuffle_buffer=400, seed=1)
    grouped, grouped_ids = read_all(table, group_by_length=True, **options)
    plain, _ = read_all(table, **options)
    assert sorted(grouped_ids) == sorted(user["id"] for user in users)

    def padded_cells(batches):
        return sum(len(b["id"]) * int(max(b["history_length"].numpy())) for b in batches)

    assert padded_cells(grouped) < 0.8 * padded_cells(plain)
    # Batch order is shuffled, not sorted from short to long.
    maxima = [int(max(b["history_length"].numpy())) for b in grouped]
    assert maxima != sorted(maxima)


def test_random_split_draws_disjoint_windows_from_whole_sequences(parquet_table):
    """Every batch: kept history + target behaviours = the user's behaviours, disjoint."""
    table, users = parquet_table
    by_id = {user["id"]: user for user in users}
    options = dict(batch_size=64, random_target_fraction=0.3, seed=11)
    first, _ = read_all(table, **options)
    again, _ = read_all(table, **options)
    for batch, repeat in zip(first, again):
        assert batch["history"].to_list() == repeat["history"].to_list()  # seeded
        for row, user_id in enumerate(batch["id"].numpy()):
            user = by_id[user_id.decode()]
            kept = batch["history"][row].to_list()
            targets = batch["target_words"][row].numpy().tolist()
            behaviours = user["history"]
            if len(behaviours) == 1:
                assert kept == behaviours and targets == []
                continue
            assert 1 <= len(kept) < len(behaviours)
            # The kept behaviours are a subsequence, in their original order.
            remaining = iter(behaviours)
            assert all(any(b == candidate for candidate in remaining) for b in kept)
            dropped = list(behaviours)
            for behaviour in kept:
                dropped.remove(behaviour)
            expected = {}
            for behaviour in dropped:
                for word in behaviour:
                    expected[word] = expected.get(word, 0) + 1
            assert sorted(targets) == sorted(expected)
            counts = dict(zip(targets, batch["target_weights"][row].numpy()))
            np.testing.assert_allclose(sum(counts.values()), 1.0, rtol=1e-5)
            # Most frequent first.
            frequencies = [expected[word] for word in targets]
            assert frequencies == sorted(frequencies, reverse=True)
