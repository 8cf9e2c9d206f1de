"""Nothing lost, nothing alarming: the guards every entry point puts around its output folder.

Each class of fault is tried through the entry points as a user meets it:
``--overwrite`` of a folder our tools did not write, two jobs on one folder,
the lock and ``ckpt-N_temp/`` a killed job leaves, non-finite flags, weights
and vectors, outputs that cannot be written, damaged checkpoints. A refusal
is exit status 2, one ``error:`` line naming the flag or file, no traceback,
and nothing left behind (no folder, no lock). The runs are tiny and mostly
in-process (``util.cli.run_cli``), so the module adds seconds, not minutes.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from contracts import schema
from contracts.run_folder import lock_path
from main import build_tables as build_tables_entry
from main import evaluate as evaluate_entry
from main import finetune as finetune_entry
from main import inference as inference_entry
from main import train as train_entry
from model.inference import restore
from test_loader import write_parquet_table
from test_sequence_loader import write_sequence_table
from util.cli import run_cli
from util.run_config import read_run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--batch_size=8", "--model_dim=8", "--word_emb_dim=8", "--mlp_layers=16",
        "--num_hops=3", "--log_every=1"]
ENTRY_POINTS = {"train": train_entry, "finetune": finetune_entry, "inference": inference_entry,
                "build_tables": build_tables_entry, "evaluate": evaluate_entry}


def run(entry, *argv, capsys):
    """Runs an entry point in-process as its script does; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        run_cli(ENTRY_POINTS[entry].main, list(argv))
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def assert_refused(status, stderr, *needles):
    """Exit 2 and exactly one line on stderr, an ``error:`` naming every needle."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_no_lock(folder):
    parent = os.path.dirname(os.path.realpath(folder))
    if os.path.isdir(parent):
        assert not [name for name in os.listdir(parent) if name.endswith(".lock")], os.listdir(parent)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """40 users in 2 training shards, and the same users as a 1-shard inference table."""
    folder = str(tmp_path_factory.mktemp("tables"))
    users = write_parquet_table(folder, num_users=40, num_shards=2)
    os.makedirs(os.path.join(folder, schema.INFERENCE_SUBDIR))
    rows = [{key: user[key] for key in schema.INFERENCE_SCHEMA.names} for user in users]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.INFERENCE_SCHEMA),
                   os.path.join(folder, schema.INFERENCE_SUBDIR, schema.shard_name(0, 1, "parquet")))
    return folder


@pytest.fixture(scope="module")
def trained(tables, tmp_path_factory):
    """A 4-step run (ckpt-2, ckpt-4) that the tests copy before damaging."""
    folder = str(tmp_path_factory.mktemp("trained") / "run")
    argv = [*TINY, f"--tables={tables}", f"--checkpoint_dir={folder}", "--max_steps=4",
            "--snapshot=2"]
    with pytest.raises(SystemExit) as exited:
        run_cli(train_entry.main, argv)
    assert exited.value.code == 0
    return folder


def copy_run(trained, tmp_path):
    folder = str(tmp_path / "run")
    shutil.copytree(trained, folder)
    return folder


def rewrite_weight(run_folder, step, name_suffix, value):
    """Rewrites ``ckpt-<step>`` of a run with one model weight set to ``value`` (what a diverged run saved)."""
    prefix = os.path.join(run_folder, f"ckpt-{step}")
    model = restore.restore_model(read_run_config(run_folder), prefix)
    weight = next(w for w in model.weights if w.path.endswith(name_suffix))
    weight.assign(np.full(weight.shape, value, np.float32))
    for name in os.listdir(run_folder):
        if name.startswith(f"ckpt-{step}."):
            os.remove(os.path.join(run_folder, name))
    tf.train.Checkpoint(model=model).write(prefix)


def truncate(path):
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


# ----------------------------------------------------------------- --overwrite


def foreign_folder(tmp_path, *names):
    folder = tmp_path / "precious"
    folder.mkdir()
    for name in names:
        (folder / name).write_text("not ours")
    return str(folder)


@pytest.mark.parametrize("entry, flags", [
    ("train", ["--checkpoint_dir={folder}", "--overwrite", "--max_steps=1"]),
    ("finetune", ["--pretrained=/no/such/run", "--task=gender", "--output_dir={folder}",
                  "--overwrite"]),
    ("inference", ["--outputs={folder}", "--overwrite"]),
    ("build_tables", ["--demo", "--output_dir={folder}", "--overwrite"]),
], ids=["train", "finetune", "inference", "build_tables"])
def test_overwrite_refuses_a_folder_our_tools_did_not_write(entry, flags, trained, tables, tmp_path,
                                                             capsys):
    folder = foreign_folder(tmp_path, "thesis.txt")
    argv = [flag.format(folder=folder) for flag in flags]
    if entry == "train":
        argv += [*TINY, f"--tables={tables}"]
    if entry == "inference":
        argv += [f"--checkpoint_dir={trained}"]
    status, _, stderr = run(entry, *argv, capsys=capsys)
    flag = next(flag.split("=")[0] for flag in flags if "{folder}" in flag)
    assert_refused(status, stderr, flag, folder, "--overwrite only replaces")
    assert os.listdir(folder) == ["thesis.txt"]
    assert_no_lock(folder)


def test_overwrite_refuses_a_run_folder_holding_someone_elses_file(trained, tables, tmp_path, capsys):
    folder = copy_run(trained, tmp_path)
    with open(os.path.join(folder, "thesis.txt"), "w") as handle:
        handle.write("precious")
    status, _, stderr = run("train", *TINY, f"--tables={tables}", f"--checkpoint_dir={folder}",
                            "--overwrite", "--max_steps=1", capsys=capsys)
    assert_refused(status, stderr, "--checkpoint_dir", "thesis.txt", "did not write")
    assert os.path.exists(os.path.join(folder, "thesis.txt"))
    assert os.path.exists(os.path.join(folder, "ckpt-4.index"))


# ----------------------------------------------------------------- locks


def test_second_trainer_is_refused_and_a_killed_ones_lock_and_temp_folder_are_cleared(
        tables, tmp_path, capsys):
    folder = str(tmp_path / "run")
    flags = [*TINY, f"--tables={tables}", f"--checkpoint_dir={folder}"]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                       PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    holder = subprocess.Popen([sys.executable, "main/train.py", *flags, "--max_steps=1000000",
                               "--log_every=1000"], cwd=REPO, env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not os.path.exists(lock_path(folder)) and time.time() < deadline:
            assert holder.poll() is None, "the first trainer exited early"
            time.sleep(0.1)
        status, _, stderr = run("train", *flags, "--max_steps=2", capsys=capsys)
        assert_refused(status, stderr, "--checkpoint_dir", folder, f"pid {holder.pid}",
                       f"host {socket.gethostname()}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    # What a kill during a save leaves: the lock, and TensorFlow's temporary save folder.
    assert os.path.exists(lock_path(folder))
    os.makedirs(folder, exist_ok=True)
    unfinished = os.path.join(folder, "ckpt-7_temp")
    os.makedirs(unfinished)
    open(os.path.join(unfinished, "part-00000-of-00001.data-00000-of-00001"), "w").close()
    status, stdout, stderr = run("train", *flags, "--max_steps=1", capsys=capsys)
    assert status == 0, stderr
    assert f"taking over the lock of pid {holder.pid} on host {socket.gethostname()}" in stderr
    assert f"removed {unfinished}, left by a checkpoint save that was killed" in stderr
    assert not os.path.exists(unfinished)
    assert not os.path.exists(lock_path(folder))
    assert os.path.exists(os.path.join(folder, "ckpt-1.index"))


def write_lock(folder, **holder):
    os.makedirs(os.path.dirname(lock_path(folder)), exist_ok=True)
    with open(lock_path(folder), "w") as handle:
        json.dump(dict({"started": "2026-01-01T00:00:00+00:00", "command": "main/train.py"},
                       **holder), handle)


def test_a_lock_held_on_another_host_is_never_taken_over(tmp_path, capsys):
    output_dir = str(tmp_path / "evaluation")
    write_lock(output_dir, pid=4242, host="gpu-node-7", token="theirs")
    status, _, stderr = run("evaluate", "--vectors=/no/such/vectors", "--labels=/no/such/labels",
                            f"--output_dir={output_dir}", capsys=capsys)
    assert_refused(status, stderr, "--output_dir", "pid 4242 on host gpu-node-7",
                   f"remove {lock_path(output_dir)}")
    assert json.load(open(lock_path(output_dir)))["token"] == "theirs"
    assert not os.path.exists(output_dir)


def test_a_pid_reused_by_another_program_does_not_hold_the_lock(tmp_path, capsys):
    # The pid is alive (this test's own process) but started at another time: a reused pid.
    output_dir = str(tmp_path / "evaluation")
    write_lock(output_dir, pid=os.getpid(), host=socket.gethostname(), token="old",
               process_start=1)
    status, _, stderr = run("evaluate", "--vectors=/no/such/vectors", "--labels=/no/such/labels",
                            f"--output_dir={output_dir}", capsys=capsys)
    assert status == 2
    assert f"taking over the lock of pid {os.getpid()}" in stderr
    assert stderr.splitlines()[-1].startswith("error: --labels")  # the job ran, up to its inputs
    assert_no_lock(output_dir)


# ----------------------------------------------------------------- non-finite numbers


@pytest.mark.parametrize("entry, flag", [
    ("train", "--learning_rate=nan"),
    ("train", "--learning_rate=inf"),
    ("train", "--learning_rate=1e39"),  # infinite in float32
    ("train", "--max_grad_norm=nan"),
    ("train", "--dropout_rate=nan"),
    ("train", "--progress_seconds=-inf"),
    ("finetune", "--learning_rate=nan"),
    ("finetune", "--validation_fraction=inf"),
    ("inference", "--progress_seconds=nan"),
    ("build_tables", "--target_fraction=nan"),
    ("evaluate", "--C=1,nan"),
    ("evaluate", "--C=inf"),
])
def test_non_finite_flag_values_are_refused_naming_the_flag(entry, flag, tmp_path, capsys):
    required = {"train": [], "finetune": ["--pretrained=x", "--task=gender"], "inference": [],
                "build_tables": [f"--output_dir={tmp_path / 'out'}"],
                "evaluate": ["--vectors=v", "--labels=l", f"--output_dir={tmp_path / 'out'}"]}
    status, _, stderr = run(entry, *required[entry], flag, capsys=capsys)
    assert status == 2 and "Traceback" not in stderr
    assert f"argument {flag.split('=')[0]}" in stderr.splitlines()[-1]
    assert os.listdir(tmp_path) == []


def test_a_diverging_run_saves_nothing_non_finite(tables, tmp_path, capsys):
    folder = str(tmp_path / "run")
    # A finite but absurd learning rate: step 1 is saved, its update blows the weights up.
    status, _, stderr = run("train", *TINY, f"--tables={tables}", f"--checkpoint_dir={folder}",
                            "--max_steps=4", "--snapshot=1", "--learning_rate=1e30", capsys=capsys)
    assert_refused(status, stderr, "at step 2", "nothing non-finite was saved",
                   "the last intact checkpoint is step 1")
    assert sorted(name for name in os.listdir(folder) if name.endswith(".index")) == ["ckpt-1.index"]
    reader = tf.train.load_checkpoint(os.path.join(folder, "ckpt-1"))
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.isfinite(reader.get_tensor(key)).all(), key
    assert 'model_checkpoint_path: "ckpt-1"' in open(os.path.join(folder, "checkpoint")).read()
    assert_no_lock(folder)


def test_inference_refuses_a_checkpoint_of_nan_weights(trained, tmp_path, capsys):
    folder = copy_run(trained, tmp_path)
    rewrite_weight(folder, 4, "value_norm/beta", np.nan)
    outputs = str(tmp_path / "vectors")
    status, _, stderr = run("inference", f"--checkpoint_dir={folder}", f"--outputs={outputs}",
                            capsys=capsys)
    assert_refused(status, stderr, os.path.join(folder, "ckpt-4"), "non-finite weights",
                   "value_norm/beta")
    assert not os.path.exists(outputs)
    assert_no_lock(outputs)


def test_inference_refuses_to_write_non_finite_vectors(trained, tables, tmp_path, capsys):
    folder = copy_run(trained, tmp_path)
    # Finite weights whose products overflow float32: every vector becomes inf or nan.
    rewrite_weight(folder, 4, "value_norm/gamma", 3e38)
    outputs = str(tmp_path / "vectors")
    status, _, stderr = run("inference", f"--checkpoint_dir={folder}", f"--outputs={outputs}",
                            capsys=capsys)
    assert_refused(status, stderr, schema.INFERENCE_SUBDIR, "non-finite vector",
                   "nothing of this shard was written")
    assert not os.path.exists(outputs)
    assert_no_lock(outputs)


# ----------------------------------------------------------------- unwritable outputs


UNWRITABLE_RUNS = {
    # Every other input is missing too: the output folder must be refused first.
    "train": ["--tables=/no/such/tables", "--checkpoint_dir={path}"],
    "finetune": ["--pretrained=/no/such/run", "--task=gender", "--output_dir={path}"],
    "inference": ["--checkpoint_dir={trained}", "--outputs={path}"],
    "build_tables": ["--log=/no/such/log.parquet", "--output_dir={path}"],
    "evaluate": ["--vectors=/no/such/vectors", "--labels=/no/such/labels", "--output_dir={path}"],
}


@pytest.mark.parametrize("entry", sorted(UNWRITABLE_RUNS))
@pytest.mark.parametrize("case", ["file", "below_a_file", "read_only"])
def test_unwritable_outputs_are_refused_before_any_work(entry, case, trained, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    if case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; the file cases cover this machine")
        blocker.mkdir(mode=0o555)
        path = str(blocker / "out")
    else:
        blocker.write_text("a file")
        path = str(blocker) if case == "file" else str(blocker / "out")
    argv = [flag.format(path=path, trained=trained) for flag in UNWRITABLE_RUNS[entry]]
    flag = next(f.split("=")[0] for f in UNWRITABLE_RUNS[entry] if "{path}" in f)
    try:
        status, stdout, stderr = run(entry, *argv, capsys=capsys)
    finally:
        if case == "read_only":
            blocker.chmod(0o755)
    assert_refused(status, stderr, flag, path)
    assert sorted(os.listdir(tmp_path)) == ["blocker"]
    assert stdout == ""  # no work was started


# ----------------------------------------------------------------- damaged checkpoints


def test_training_resumes_from_the_newest_checkpoint_that_restores(trained, tables, tmp_path, capsys):
    folder = copy_run(trained, tmp_path)
    damaged = os.path.join(folder, "ckpt-4.data-00000-of-00001")
    truncate(damaged)
    status, stdout, stderr = run("train", *TINY, f"--tables={tables}", f"--checkpoint_dir={folder}",
                                 "--max_steps=3", capsys=capsys)
    assert status == 0, stderr
    assert f"its data file {damaged} is damaged" in stderr
    assert f"resuming from {os.path.join(folder, 'ckpt-2')}, the newest checkpoint that restores" in stderr
    assert "(step 2)" in stdout and "Traceback" not in stderr
    assert os.path.exists(os.path.join(folder, "ckpt-3.index"))


def test_inference_names_the_damaged_file_of_an_explicit_step(trained, tmp_path, capsys):
    folder = copy_run(trained, tmp_path)
    truncate(os.path.join(folder, "ckpt-2.index"))
    outputs = str(tmp_path / "vectors")
    status, _, stderr = run("inference", f"--checkpoint_dir={folder}", "--step=2",
                            f"--outputs={outputs}", capsys=capsys)
    assert_refused(status, stderr, f"its index file {os.path.join(folder, 'ckpt-2.index')} is damaged")
    assert not os.path.exists(outputs)
    assert_no_lock(outputs)


def test_finetune_names_the_damaged_file_of_its_pretrained_step(tmp_path, capsys):
    tables = str(tmp_path / "sequences")
    users = write_sequence_table(tables, num_users=30, num_shards=1)
    for index, user in enumerate(users):  # the canonical split needs integer ids
        user["id"] = str(index + 1)
    pq.write_table(pa.Table.from_pylist(users, schema=schema.SEQUENCE_SCHEMA),
                   os.path.join(tables, schema.SEQUENCES_SUBDIR, schema.shard_name(0, 1, "parquet")))
    pretrained = str(tmp_path / "nextitnet")
    status, _, stderr = run("train", "--model=nextitnet", f"--tables={tables}",
                            f"--checkpoint_dir={pretrained}", "--model_dim=8", "--dilations=1",
                            "--max_items_per_user=10", "--batch_size=8", "--max_steps=2",
                            capsys=capsys)
    assert status == 0, stderr
    damaged = os.path.join(pretrained, "ckpt-2.data-00000-of-00001")
    truncate(damaged)
    output_dir = str(tmp_path / "task")
    status, _, stderr = run("finetune", f"--pretrained={pretrained}", "--pretrained_step=2",
                            "--task=items", f"--output_dir={output_dir}", "--epochs=1",
                            capsys=capsys)
    assert_refused(status, stderr, f"its data file {damaged} is damaged")
    assert not os.path.exists(output_dir)
    assert_no_lock(output_dir)


def test_a_garbage_state_file_is_named_and_the_checkpoints_are_listed_instead(
        trained, tables, tmp_path, capsys):
    folder = copy_run(trained, tmp_path)
    state_file = os.path.join(folder, "checkpoint")
    with open(state_file, "w") as handle:
        handle.write("\x00\x01 this is not a checkpoint state {{{\n")
    # --log_every is far away: step 5's line comes from --progress_seconds alone.
    status, stdout, stderr = run("train", *TINY, f"--tables={tables}", f"--checkpoint_dir={folder}",
                                 "--max_steps=6", "--log_every=1000", "--progress_seconds=0",
                                 capsys=capsys)
    assert status == 0, stderr
    assert f"the checkpoint state file {state_file} is unusable" in stderr
    assert "(step 4)" in stdout
    line = next(line for line in stdout.splitlines() if line.startswith("step 5  loss"))
    assert "steps/s" in line and "ETA" in line and "to step 6" in line
    assert 'model_checkpoint_path: "ckpt-6"' in open(state_file).read()


def test_inference_progress_gives_rate_and_time_left(trained, tmp_path, capsys):
    status, stdout, stderr = run("inference", f"--checkpoint_dir={trained}",
                                 f"--outputs={tmp_path / 'vectors'}", "--progress_seconds=0",
                                 "--batch_size=8", capsys=capsys)
    assert status == 0, stderr
    progress = [line for line in stdout.splitlines() if "users/s;" in line]
    assert progress and all("ETA" in line and "of 40 users" in line for line in progress)
    assert_no_lock(str(tmp_path / "vectors"))
