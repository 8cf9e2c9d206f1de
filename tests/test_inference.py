"""main/inference.py: user vectors from a tiny training run, in every layout, resumable and sliced."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from contracts import schema
from data_dumper import user_vector_writer
from data_dumper.user_vector_writer import vector_format
from data_loader.user_vectors import read_user_vectors
from model.inference import batch_inference, restore
from model.sumn.model_inputs import history_to_model_inputs
from test_loader import write_parquet_table
from util.errors import UserInputError
from util.run_config import read_run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_USERS = 40
NUM_SHARDS = 3
NUM_HOPS = 3
DIM = 8
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _load_entry_point():
    spec = importlib.util.spec_from_file_location(
        "inference_entry_point", os.path.join(REPO, "main", "inference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inference = _load_entry_point()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step training run (ckpt-2, ckpt-4) on 40 users, with an inference table beside it."""
    root = tmp_path_factory.mktemp("inference_run")
    tables = os.path.join(root, "tables")
    users = write_parquet_table(tables, num_users=NUM_USERS, num_shards=NUM_SHARDS)
    inference_dir = os.path.join(tables, schema.INFERENCE_SUBDIR)
    os.makedirs(inference_dir)
    for shard in range(NUM_SHARDS):
        rows = [{key: user[key] for key in schema.INFERENCE_SCHEMA.names}
                for user in users[shard::NUM_SHARDS]]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema.INFERENCE_SCHEMA),
                       os.path.join(inference_dir, schema.shard_name(shard, NUM_SHARDS, "parquet")))
    checkpoint_dir = os.path.join(root, "run")
    result = subprocess.run(
        [sys.executable, "main/train.py", f"--tables={tables}", f"--checkpoint_dir={checkpoint_dir}",
         "--max_steps=4", "--snapshot=2", "--batch_size=8", f"--model_dim={DIM}",
         f"--word_emb_dim={DIM}", "--mlp_layers=16", f"--num_hops={NUM_HOPS}", "--log_every=2"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": str(root), "tables": tables, "checkpoint_dir": checkpoint_dir,
            "users": {user["id"]: user for user in users}}


@pytest.fixture(scope="module")
def reference(trained):
    """{step: {id: [hops, dim] vectors}} from model.encode on the whole table in one batch."""
    def encode(step):
        run_config = read_run_config(trained["checkpoint_dir"], required=True)
        model = restore.restore_model(run_config, os.path.join(trained["checkpoint_dir"], f"ckpt-{step}"))
        ids = sorted(trained["users"])
        history = tf.ragged.constant([trained["users"][i]["history"] for i in ids], dtype=tf.int32)
        vectors = model.encode(history_to_model_inputs(history)).numpy()
        return {user_id: vectors[row] for row, user_id in enumerate(ids)}
    return {4: encode(4), 2: encode(2)}


@pytest.fixture(scope="module")
def written(trained, tmp_path_factory):
    """Outputs of one run per layout, made once: written("parquet") -> folder.

    parquet also carries a 10-user projector export; tsv (separator "|") is
    written through the command line, as a user runs it.
    """
    folders = {}

    def get(output_format):
        if output_format not in folders:
            outputs = str(tmp_path_factory.mktemp(output_format))
            if output_format == "tsv":
                result = subprocess.run(
                    [sys.executable, "main/inference.py", f"--checkpoint_dir={trained['checkpoint_dir']}",
                     f"--outputs={outputs}", "--output_format=tsv", "--separator=|"],
                    cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
                assert result.returncode == 0, result.stderr[-3000:]
                assert f"done: {NUM_USERS} users in {NUM_SHARDS} shards" in result.stdout
            else:
                flags = ["--projector", "--projector_sample=10"] if output_format == "parquet" else []
                run(trained, outputs, f"--output_format={output_format}", *flags)
            folders[output_format] = outputs
        return folders[output_format]

    return get


def run(trained, outputs, *flags):
    """Runs main/inference.py in-process; returns the outputs folder."""
    inference.main([f"--checkpoint_dir={trained['checkpoint_dir']}", f"--outputs={outputs}",
                    "--progress_seconds=0", *flags])
    return str(outputs)


def read_outputs(outputs, output_format="parquet", separator="\t"):
    """{id: (vector, length)} over every output shard; asserts each id appears once."""
    fmt = vector_format(output_format, separator)
    found = {}
    for name in sorted(os.listdir(outputs)):
        if name.endswith(fmt.suffix) and not name.startswith((".", "_")):
            ids, vectors, lengths = fmt.read(os.path.join(outputs, name))
            for user_id, vector, length in zip(ids, vectors, lengths):
                assert user_id not in found, f"{user_id} written twice"
                found[user_id] = (vector, int(length))
    return found


def assert_matches_hop(found, trained, reference_vectors, hop_index):
    assert sorted(found) == sorted(trained["users"])
    for user_id, (vector, length) in found.items():
        np.testing.assert_allclose(vector, reference_vectors[user_id][hop_index], atol=1e-5)
        assert length == trained["users"][user_id]["history_length"]


def output_shards(outputs, suffix=".parquet"):
    return sorted(name for name in os.listdir(outputs)
                  if name.endswith(suffix) and not name.startswith("."))


# ----------------------------------------------------------------- layouts


def test_parquet_default_shards_schema_and_last_hop(trained, reference, written):
    outputs = written("parquet")
    assert output_shards(outputs) == [schema.shard_name(i, NUM_SHARDS, "parquet") for i in range(NUM_SHARDS)]
    table_schema = pq.read_schema(os.path.join(outputs, output_shards(outputs)[0]))
    assert table_schema.field("id").type == pa.string()
    assert table_schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert table_schema.field("length").type == pa.int32()
    assert_matches_hop(read_outputs(outputs), trained, reference[4], NUM_HOPS - 1)
    with open(os.path.join(outputs, "inference.json")) as handle:
        summary = json.load(handle)
    assert (summary["step"], summary["hop"], summary["dim"]) == (4, NUM_HOPS, DIM)
    assert summary["users"] == NUM_USERS
    assert summary["output_format"] == "parquet" and summary["checkpoint"].endswith("ckpt-4")


@pytest.mark.parametrize("output_format", ["tfrecord", "npy", "tsv"])
def test_other_layouts_hold_the_same_vectors(trained, reference, written, output_format):
    outputs = written(output_format)
    suffix = vector_format(output_format).suffix
    assert len(output_shards(outputs, suffix)) == NUM_SHARDS
    separator = "|" if output_format == "tsv" else "\t"
    found = read_outputs(outputs, output_format, separator)
    assert_matches_hop(found, trained, reference[4], NUM_HOPS - 1)


def test_tfrecord_examples_have_the_documented_features(trained, written):
    outputs = written("tfrecord")
    first_shard = os.path.join(outputs, output_shards(outputs, ".tfrecord")[0])
    record = next(iter(tf.data.TFRecordDataset(first_shard)))
    features = tf.train.Example.FromString(record.numpy()).features.feature
    assert features["id"].bytes_list.value[0].decode() in trained["users"]
    assert len(features["embedding"].float_list.value) == DIM
    assert len(features["length"].int64_list.value) == 1


def test_npy_layout_files(trained, written):
    outputs = written("npy")
    stem = os.path.join(outputs, "part-00000-of-00003")
    matrix = np.load(stem + ".npy")
    with open(stem + ".ids.txt") as handle:
        ids = handle.read().splitlines()
    lengths = np.loadtxt(stem + ".lengths.txt", dtype=int)
    assert matrix.dtype == np.float32 and matrix.shape == (len(ids), DIM) == (len(lengths), DIM)
    assert [trained["users"][i]["history_length"] for i in ids] == lengths.tolist()


def test_tsv_lines_are_sumn_layout_with_custom_separator(trained, written):
    outputs = written("tsv")
    with open(os.path.join(outputs, "part-00000-of-00003.tsv")) as handle:
        line = handle.readline().rstrip("\n")
    user_id, numbers, length = line.split("|")
    assert user_id in trained["users"] and len(numbers.split(",")) == DIM
    assert int(length) == trained["users"][user_id]["history_length"]


def test_tsv_separator_that_is_a_comma_is_refused(trained, tmp_path):
    with pytest.raises(UserInputError, match="--separator=','"):
        run(trained, tmp_path / "out", "--output_format=tsv", "--separator=,")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("output_format", ["parquet", "npy"])
def test_evaluation_reader_reads_the_outputs(trained, written, output_format):
    outputs = written(output_format)
    vectors = read_user_vectors(outputs)
    found = read_outputs(outputs, output_format)
    assert sorted(vectors.ids) == sorted(trained["users"]) and vectors.dim == DIM
    for user_id, vector in zip(vectors.ids, vectors.vectors):
        np.testing.assert_array_equal(vector, found[user_id][0])


def test_training_table_is_accepted_and_its_targets_ignored(trained, reference, tmp_path):
    outputs = run(trained, tmp_path / "out", f"--tables={trained['tables']}/train")
    assert_matches_hop(read_outputs(outputs), trained, reference[4], NUM_HOPS - 1)


# ----------------------------------------------------------------- steps and hops


@pytest.mark.parametrize("step, used", [(0, 4), (4, 4), (3, 4), (2, 2), (1, 2)])
def test_step_picks_the_checkpoint_or_the_next_one(trained, step, used):
    assert restore.checkpoint_for_step(trained["checkpoint_dir"], step) == (
        used, os.path.join(trained["checkpoint_dir"], f"ckpt-{used}"))


def test_step_fallback_encodes_with_that_checkpoint_into_the_default_folder(trained, reference):
    inference.main([f"--checkpoint_dir={trained['checkpoint_dir']}", "--step=1", "--progress_seconds=0"])
    outputs = os.path.join(trained["checkpoint_dir"], "user_vectors", "step-2")
    assert len(output_shards(outputs)) == NUM_SHARDS
    assert_matches_hop(read_outputs(outputs), trained, reference[2], NUM_HOPS - 1)
    with open(os.path.join(outputs, "inference.json")) as handle:
        assert json.load(handle)["step"] == 2


def test_unknown_step_lists_the_steps_that_exist(trained, tmp_path):
    with pytest.raises(UserInputError, match=r"--step=7: .* no ckpt-7 \(nor ckpt-8\); it holds steps 2, 4$"):
        run(trained, tmp_path / "out", "--step=7")


def test_hop_k_is_the_kth_vector_of_encode(trained, reference, tmp_path):
    outputs = run(trained, tmp_path / "out", "--hop=2")
    assert_matches_hop(read_outputs(outputs), trained, reference[4], 1)


@pytest.mark.parametrize("hop", [NUM_HOPS + 1, -1])
def test_hop_out_of_range_names_the_flag_and_the_hop_count(trained, tmp_path, hop):
    with pytest.raises(UserInputError, match=rf"--hop={hop} is out of range: the model has {NUM_HOPS} hops"):
        run(trained, tmp_path / "out", f"--hop={hop}")
    assert not os.path.exists(tmp_path / "out")


# ----------------------------------------------------------------- resumability


def test_rerun_skips_finished_shards_and_overwrite_redoes_them(trained, tmp_path, capsys):
    outputs = run(trained, tmp_path / "out")
    shards = [os.path.join(outputs, name) for name in output_shards(outputs)]
    for path in shards:
        os.utime(path, (1_000_000, 1_000_000))  # an old mark that any rewrite replaces
    os.remove(shards[1])
    capsys.readouterr()
    run(trained, outputs)
    printed = capsys.readouterr().out
    assert "skipping 2 shard(s) already complete" in printed
    assert "part-00000-of-00003.parquet, part-00002-of-00003.parquet" in printed
    assert [os.stat(path).st_mtime == 1_000_000 for path in shards] == [True, False, True]
    assert len(read_outputs(outputs)) == NUM_USERS
    run(trained, outputs, "--overwrite")
    assert "skipping" not in capsys.readouterr().out
    assert not any(os.stat(path).st_mtime == 1_000_000 for path in shards)
    # Complete shards of another hop must not be mixed with new ones.
    with pytest.raises(UserInputError, match="other settings .*hop was 3, now 1.*--overwrite"):
        run(trained, outputs, "--hop=1")


def test_crash_mid_shard_leaves_no_partial_file_and_rerun_completes(trained, tmp_path, monkeypatch):
    calls = []
    original = user_vector_writer._ParquetShardWriter._write

    def crash_on_third_batch(self, ids, vectors, lengths):
        calls.append(len(ids))
        if len(calls) == 3:  # the second batch of shard 1
            raise RuntimeError("simulated crash")
        original(self, ids, vectors, lengths)

    monkeypatch.setattr(user_vector_writer._ParquetShardWriter, "_write", crash_on_third_batch)
    outputs = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(trained, outputs, "--batch_size=10")
    assert sorted(os.listdir(outputs)) == ["_inference_settings.json", "part-00000-of-00003.parquet"]
    # What SIGKILL would leave: a temporary file of the shard being written.
    stale = outputs / ".part-00001-of-00003.parquet.x1y2z3.tmp"
    stale.write_bytes(b"half a parquet file")
    monkeypatch.setattr(user_vector_writer._ParquetShardWriter, "_write", original)
    run(trained, outputs, "--batch_size=10")
    assert len(read_outputs(outputs)) == NUM_USERS
    assert not [name for name in os.listdir(outputs) if name.startswith(".")]


# ----------------------------------------------------------------- slices and batches


def test_slices_take_disjoint_shards_that_cover_the_table(trained, tmp_path):
    outputs = tmp_path / "out"
    run(trained, outputs, "--slice_id=1", "--slice_count=2")
    assert output_shards(outputs) == ["part-00001-of-00003.parquet"]
    assert not os.path.exists(outputs / "inference.json")
    run(trained, outputs, "--slice_id=0", "--slice_count=2")
    assert output_shards(outputs) == [schema.shard_name(i, NUM_SHARDS, "parquet") for i in range(NUM_SHARDS)]
    assert len(read_outputs(outputs)) == NUM_USERS
    with open(outputs / "inference.json") as handle:
        assert json.load(handle)["users"] == NUM_USERS


@pytest.mark.parametrize("tf_config, expected", [
    ({}, (0, 1)),
    ({"cluster": {"worker": ["a:1", "b:1", "c:1"]}, "task": {"type": "worker", "index": 2}}, (2, 3)),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}, (1, 2)),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}, (0, 2)),
])
def test_slice_comes_from_tf_config(monkeypatch, tf_config, expected):
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert batch_inference.resolve_slice() == expected


@pytest.mark.parametrize("slice_id, slice_count, message", [
    (2, 2, r"--slice_id=2 must be in 0..1"),
    (0, 0, r"--slice_count=0 must be 1 or more"),
    (1, None, r"--slice_count is missing"),
    (None, 3, r"--slice_id is missing"),
])
def test_bad_slice_flags(slice_id, slice_count, message):
    with pytest.raises(UserInputError, match=message):
        batch_inference.resolve_slice(slice_id, slice_count)


def test_vectors_do_not_depend_on_the_batch_size(trained, written, tmp_path):
    found = [read_outputs(written("parquet"))]  # --batch_size=512: one batch per shard
    found += [read_outputs(run(trained, tmp_path / f"batch{size}", f"--batch_size={size}"))
              for size in (1, 7)]
    for other in found[1:]:
        assert sorted(other) == sorted(found[0])
        for user_id, (vector, length) in other.items():
            np.testing.assert_allclose(vector, found[0][user_id][0], atol=1e-5)
            assert length == found[0][user_id][1]


# ----------------------------------------------------------------- projector


def test_projector_export(written):
    outputs = written("parquet")
    folder = os.path.join(outputs, "projector")
    assert {"projector_config.pbtxt", "metadata.tsv", "checkpoint"} <= set(os.listdir(folder))
    with open(os.path.join(folder, "metadata.tsv")) as handle:
        rows = [line.split("\t") for line in handle.read().splitlines()]
    assert rows[0] == ["id", "length"] and len(rows) == 11
    with open(os.path.join(folder, "projector_config.pbtxt")) as handle:
        config = handle.read()
    assert 'metadata_path: "metadata.tsv"' in config
    sample = tf.train.load_checkpoint(tf.train.latest_checkpoint(folder)).get_tensor(
        "user_vectors/.ATTRIBUTES/VARIABLE_VALUE")
    assert sample.shape == (10, DIM)
    found = read_outputs(outputs)
    for (user_id, length), vector in zip(rows[1:], sample):
        np.testing.assert_array_equal(vector, found[user_id][0])
        assert int(length) == found[user_id][1]


# ----------------------------------------------------------------- bad input


def test_missing_checkpoint_dir(tmp_path):
    with pytest.raises(UserInputError, match=r"--checkpoint_dir .*nowhere does not exist"):
        inference.main([f"--checkpoint_dir={tmp_path / 'nowhere'}"])


def test_folder_without_checkpoints(tmp_path):
    with pytest.raises(UserInputError, match=r"holds no checkpoint \(ckpt-<step>.index\)"):
        inference.main([f"--checkpoint_dir={tmp_path}"])


def test_missing_tables(trained, tmp_path):
    with pytest.raises(UserInputError, match=r"--tables: file .*missing does not exist"):
        run(trained, tmp_path / "out", f"--tables={tmp_path / 'missing'}")
    assert not os.path.exists(tmp_path / "out")


def test_table_folder_without_inference_table_points_to_train(trained, tmp_path):
    write_parquet_table(str(tmp_path / "tables"), num_users=4, num_shards=1)
    with pytest.raises(UserInputError, match=r"has no inference/ table; pass --tables=.*tables/train"):
        run(trained, tmp_path / "out", f"--tables={tmp_path / 'tables'}")


def test_unknown_output_format(trained, tmp_path):
    with pytest.raises(UserInputError, match=r"--output_format='csv' is not an output format"):
        run(trained, tmp_path / "out", "--output_format=csv")


def _copy_run(trained, destination, **config_changes):
    """A copy of the trained run (checkpoints only) with model_arch.json entries changed or removed."""
    shutil.copytree(trained["checkpoint_dir"], destination,
                    ignore=shutil.ignore_patterns("train", "user_vectors"))
    config = read_run_config(destination, required=True)
    for key, value in config_changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    with open(os.path.join(destination, "model_arch.json"), "w") as handle:
        json.dump(config, handle)
    return str(destination)


def test_no_recorded_inference_table_asks_for_tables(trained, tmp_path):
    copy = _copy_run(trained, tmp_path / "run", inference_tables=None)
    with pytest.raises(UserInputError, match=r"records no inference table; pass --tables"):
        inference.main([f"--checkpoint_dir={copy}", f"--outputs={tmp_path / 'out'}"])


def test_checkpoint_that_does_not_match_model_arch(trained, tmp_path):
    copy = _copy_run(trained, tmp_path / "run", model_dim=DIM * 2)
    with pytest.raises(UserInputError, match=r"checkpoint .*ckpt-4 does not match the model described by"):
        inference.main([f"--checkpoint_dir={copy}", f"--outputs={tmp_path / 'out'}"])
    assert not os.path.exists(tmp_path / "out")


# ----------------------------------------------------------------- the command line


def test_cli_user_error_exits_2_without_traceback_or_outputs(trained, tmp_path):
    outputs = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "main/inference.py", f"--checkpoint_dir={trained['checkpoint_dir']}",
         f"--outputs={outputs}", "--step=7"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: --step=7: " in result.stderr and "Traceback" not in result.stderr
    assert not outputs.exists()


def test_random_init_writes_the_random_encoder_baseline(trained, reference, tmp_path):
    """--random_init encodes with fresh weights: reproducible under a seed, unlike the trained model."""
    first = read_outputs(run(trained, tmp_path / "a", "--random_init", "--seed=3"))
    second = read_outputs(run(trained, tmp_path / "b", "--random_init", "--seed=3"))
    trained_vectors = read_outputs(run(trained, tmp_path / "c"))
    assert sorted(first) == sorted(second) == sorted(trained_vectors)
    for user_id in first:
        np.testing.assert_array_equal(first[user_id][0], second[user_id][0])
    assert not all(np.allclose(first[i][0], trained_vectors[i][0]) for i in first)
