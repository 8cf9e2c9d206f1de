"""main/train.py as a user runs it: checkpoints, resume, errors, warm start, distribution."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from main import train as train_entry_point
from killed_runs import train_until_killed
from test_loader import write_parquet_table
from util.cli import run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--batch_size=8", "--model_dim=8", "--word_emb_dim=8", "--mlp_layers=16",
        "--num_hops=3", "--log_every=1"]


def train(*flags, env=None, check=True):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    environment.update(env or {})
    result = subprocess.run([sys.executable, "main/train.py", *TINY, *flags], cwd=REPO,
                            capture_output=True, text=True, env=environment, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def train_in_process(capsys, *flags):
    """main/train.py's main through run_cli, as its __main__ runs it, in this process.

    Saves a TensorFlow start-up per run; tests that need a process of their own
    (a kill, several workers, logical CPU devices) use ``train``.
    Returns (exit status, stdout, stderr) of this run only.
    """
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_entry_point.main, [*TINY, *flags])
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def losses(stdout):
    return {int(step): float(loss)
            for step, loss in re.findall(r"step (\d+)  loss ([0-9.]+)", stdout)}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    write_parquet_table(str(folder), num_users=40, num_shards=2)
    return str(folder)


@pytest.fixture(scope="module")
def finished_run(tables, tmp_path_factory):
    """One 6-step run shared by the tests that only read its outputs."""
    checkpoint_dir = str(tmp_path_factory.mktemp("run"))
    result = train(f"--tables={tables}", f"--checkpoint_dir={checkpoint_dir}",
                   "--max_steps=6", "--snapshot=3", "--dropout=0.3", "--weighted_target=1")
    return checkpoint_dir, result


def test_run_writes_checkpoints_config_and_tensorboard(finished_run):
    checkpoint_dir, result = finished_run
    files = os.listdir(checkpoint_dir)
    assert {"ckpt-3.index", "ckpt-6.index", "model_arch.json"} <= set(files)
    config = json.load(open(os.path.join(checkpoint_dir, "model_arch.json")))
    assert config["num_vocabulary"] == 50  # from the tables' manifest
    assert config["dropout_rate"] == 0.3  # --dropout is SUMN's alias
    assert config["weighted_target"] is True and config["pooling"] == "mhop"
    assert config["tables_manifest"]["vocabulary_size"] == 50
    events = os.listdir(os.path.join(checkpoint_dir, "train"))
    assert any(name.startswith("events.out.tfevents") for name in events)
    assert sorted(losses(result.stdout)) == [1, 2, 3, 4, 5, 6]
    assert "examples/s" in result.stdout


def test_tensorboard_has_the_promised_scalars(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    checkpoint_dir, _ = finished_run
    accumulator = EventAccumulator(os.path.join(checkpoint_dir, "train"))
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["scalars"])
    assert {"loss", "learning_rate", "examples_per_second", "gradient_norm",
            "loss_per_hop/hop_1", "loss_per_hop/hop_3"} <= tags


def test_rerun_resumes_and_changed_architecture_is_refused(tables, tmp_path, capsys):
    checkpoint_dir = str(tmp_path / "run")
    common = [f"--tables={tables}", f"--checkpoint_dir={checkpoint_dir}"]
    assert train_in_process(capsys, *common, "--max_steps=3")[0] == 0
    status, stdout, _ = train_in_process(capsys, *common, "--max_steps=5")
    assert status == 0
    assert "resuming from" in stdout and "(step 3)" in stdout
    assert sorted(losses(stdout)) == [4, 5]

    status, _, stderr = train_in_process(capsys, *common, "--max_steps=7", "--model_dim=16")
    assert status == 2
    assert "--model_dim was 8, now 16" in stderr and "Traceback" not in stderr

    status, stdout, _ = train_in_process(capsys, *common, "--max_steps=2", "--model_dim=16", "--overwrite")
    assert status == 0
    assert "resuming" not in stdout
    assert not os.path.exists(os.path.join(checkpoint_dir, "ckpt-5.index"))
    assert os.path.exists(os.path.join(checkpoint_dir, "ckpt-2.index"))


def test_killed_run_continues_from_its_last_checkpoint(tables, tmp_path, capsys):
    checkpoint_dir = str(tmp_path / "run")
    flags = [f"--tables={tables}", f"--checkpoint_dir={checkpoint_dir}", "--max_steps=3000",
             "--snapshot=10", "--log_every=50"]
    killed_at = train_until_killed([*TINY, *flags], checkpoint_dir, kill_at_step=20)
    assert 20 <= killed_at < 3000, "no second checkpoint was recorded before the kill"
    # The rerun only has to show it resumes where the kill left off and carries
    # on; running it to step 3000 (300 snapshots) made this the slowest test.
    finish = killed_at + 10
    # The kill needs a process of its own; the rerun does not.
    status, stdout, _ = train_in_process(capsys, *flags[:2], f"--max_steps={finish}", *flags[3:])
    assert status == 0
    assert f"(step {killed_at})" in stdout
    assert os.path.exists(os.path.join(checkpoint_dir, f"ckpt-{finish}.index"))


def test_batch_larger_than_the_table_trains(tmp_path, capsys):
    folder = str(tmp_path / "tables")
    write_parquet_table(folder, num_users=5, num_shards=1)
    status, stdout, _ = train_in_process(capsys, f"--tables={folder}", f"--checkpoint_dir={tmp_path / 'run'}",
                                         "--max_steps=3")
    assert status == 0
    assert sorted(losses(stdout)) == [1, 2, 3]


@pytest.mark.parametrize("flag, message", [
    ("--pooling=attention", "--pooling: invalid choice"),
    ("--batch_size=0", "--batch_size: must be a positive integer"),
    ("--dropout_rate=1.5", "--dropout_rate"),
    ("--mlp_layers=512,x", "--mlp_layers: must be comma-separated"),
    ("--tables=/no/such/table.parquet", "--tables: file /no/such/table.parquet does not exist"),
    ("--num_vocabulary=10", "--num_vocabulary=10 is smaller than the vocabulary of 50"),
    ("--num_sampled=50", "--num_sampled=50 should be below the 50 word ids of the tables"),
    ("--contrastive_temperature=0", "--contrastive_temperature: must be more than 0"),
], ids=["pooling", "batch_size", "dropout", "mlp_layers", "missing_table", "small_vocabulary",
        "num_sampled", "contrastive_temperature"])
def test_bad_flags_exit_2_naming_the_flag(tables, tmp_path, flag, message, capsys):
    # In-process through run_cli, as python main/train.py runs it, without a TensorFlow
    # start-up per case: every case stops before training.
    flags = [*TINY, f"--tables={tables}", f"--checkpoint_dir={tmp_path / 'run'}", "--max_steps=1", flag]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_entry_point.main, flags)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in stderr
    assert "Traceback" not in stderr
    assert not os.path.exists(tmp_path / "run")


def test_sampled_softmax_decoder_trains(tables, tmp_path, capsys):
    run = tmp_path / "sampled"
    status, stdout, _ = train_in_process(capsys, f"--tables={tables}", f"--checkpoint_dir={run}",
                                         "--max_steps=3", "--num_sampled=10")
    assert status == 0
    assert sorted(losses(stdout)) == [1, 2, 3]
    assert os.path.exists(run / "ckpt-3.index")
    with open(run / "model_arch.json") as file:
        assert json.load(file)["num_sampled"] == 10


def test_warm_start_restores_the_encoder_only(finished_run, tables, tmp_path, capsys):
    source, _ = finished_run
    status, stdout, _ = train_in_process(capsys, f"--tables={tables}", f"--checkpoint_dir={tmp_path / 'warm'}",
                                         "--max_steps=1", f"--init_checkpoint={source}")
    assert status == 0
    restored = int(re.search(r"restored (\d+) encoder variables, skipped 0", stdout).group(1))
    assert restored > 0


def test_mirrored_on_two_cpu_replicas_matches_the_default_strategy(tables, tmp_path):
    common = [f"--tables={tables}", "--max_steps=5", "--shuffle_buffer=0", "--dropout_rate=0"]
    single = train(*common, f"--checkpoint_dir={tmp_path / 'one'}", "--strategy=default")
    mirrored = train(*common, f"--checkpoint_dir={tmp_path / 'two'}", "--strategy=mirrored",
                     "--cpu_replicas=2")
    assert "strategy: mirrored with 2 replica(s)" in mirrored.stdout
    one, two = losses(single.stdout), losses(mirrored.stdout)
    assert sorted(one) == sorted(two) == [1, 2, 3, 4, 5]
    # Same examples per step; only the summation order differs (Adam's first
    # steps amplify that a little).
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-3), (step, one, two)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def test_multi_worker_with_two_local_workers_writes_one_set_of_checkpoints(tables, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    checkpoint_dir = str(tmp_path / "run")
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    processes = []
    for index in range(2):
        worker_env = dict(environment, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "main/train.py", *TINY, f"--tables={tables}",
             f"--checkpoint_dir={checkpoint_dir}", "--max_steps=4", "--snapshot=2"],
            cwd=REPO, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    assert "strategy: multi_worker with 2 replica(s)" in outputs[0][0]
    checkpoints = sorted(name for name in os.listdir(checkpoint_dir) if name.endswith(".index"))
    assert checkpoints == ["ckpt-2.index", "ckpt-4.index"]
    # Only the chief logs progress; both workers agree on the loss they computed together.
    assert sorted(losses(outputs[0][0])) == [1, 2, 3, 4]


def test_random_windows_train_on_whole_sequences(tables, tmp_path, capsys):
    status, stdout, _ = train_in_process(capsys, f"--tables={tables}/train", f"--checkpoint_dir={tmp_path / 'run'}",
                                         "--max_steps=3", "--random_target_fraction=0.25")
    assert status == 0
    assert "training on random windows, 25% of behaviours as target" in stdout
    assert sorted(losses(stdout)) == [1, 2, 3]
