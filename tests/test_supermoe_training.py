"""main/train.py --model=supermoe: several tasks at once, TensorBoard scalars, resume, distribution, errors."""

import contextlib
import glob
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from killed_runs import train_until_killed
from main import inference
from main import train as train_entry_point
from util.cli import run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model=supermoe", "--model_dim=8", "--num_heads=2", "--num_blocks=1",
        "--num_experts=4", "--experts_per_token=2", "--max_items_per_user=20",
        "--batch_size=16", "--log_every=1", "--dropout_rate=0"]
TASKS = "--tasks=next_item,segment,age_group"


def train_in_process(capsys, *flags):
    """(exit status, stdout, stderr) of main/train.py's main run through run_cli."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_entry_point.main, [*TINY, *flags])
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def losses(stdout):
    return {int(step): float(loss)
            for step, loss in re.findall(r"step (\d+)  loss ([0-9.]+)", stdout)}


def scalar_names(run):
    names = set()
    for path in glob.glob(os.path.join(run, "train", "events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            names.update(value.tag for value in event.summary.value)
    return names


@pytest.fixture(scope="module")
def tables(tiny_nextitnet):
    return tiny_nextitnet["tables"]


@pytest.fixture(scope="module")
def finished_run(tables, tmp_path_factory):
    """A 4-step run on three tasks, and its stdout."""
    run = str(tmp_path_factory.mktemp("supermoe") / "run")
    # Module-scoped, so no capsys: stdout is redirected by hand.
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        run_cli(train_entry_point.main, [*TINY, f"--tables={tables}", TASKS,
                                         f"--checkpoint_dir={run}", "--max_steps=4",
                                         "--snapshot=4"])
    assert (exit_info.value.code or 0) == 0, output.getvalue()[-2000:]
    return run, output.getvalue()


def test_three_tasks_train_into_one_checkpoint_with_their_tasks_recorded(finished_run):
    run, stdout = finished_run

    assert os.path.exists(os.path.join(run, "ckpt-4.index"))
    with open(os.path.join(run, "model_arch.json"), encoding="utf-8") as handle:
        arch = json.load(handle)
    assert arch["model"] == "supermoe"
    assert [task["name"] for task in arch["model_tasks"]] == ["next_item", "segment", "age_group"]
    assert [task["task_kind"] for task in arch["model_tasks"]] == [
        "next_item", "classification", "classification"]
    assert "train users per task: next_item" in stdout
    assert sorted(losses(stdout)) == [1, 2, 3, 4]


def test_each_task_is_scored_by_its_head_on_its_test_users(finished_run):
    run, stdout = finished_run

    with open(os.path.join(run, "task_scores-step-4.json"), encoding="utf-8") as handle:
        scores = json.load(handle)
    assert scores["step"] == 4
    assert sorted(scores["tasks"]) == ["age_group", "next_item", "segment"]
    assert 0.0 <= scores["tasks"]["next_item"]["ndcg@10_full"] <= 1.0
    assert 0.0 <= scores["tasks"]["segment"]["auc"] <= 1.0
    assert 0.0 <= scores["tasks"]["age_group"]["accuracy"] <= 1.0
    assert re.search(r"test segment \(\d+ users\): accuracy 0\.\d+  auc 0\.\d+", stdout)
    # The held-out validation users are scored too, for choosing configurations without test users.
    assert sorted(scores["validation"]) == sorted(scores["tasks"])
    assert 0.0 <= scores["validation"]["segment"]["auc"] <= 1.0
    validation_users = int(re.search(r"validation segment \((\d+) users\)", stdout).group(1))
    test_users = int(re.search(r"test segment \((\d+) users\)", stdout).group(1))
    assert 0 < validation_users < test_users


def serve(capsys, *argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(inference.main, list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def test_inference_serves_each_task_with_its_own_vectors_and_predictions(finished_run, tmp_path,
                                                                         capsys):
    run, _ = finished_run
    status, _, err = serve(capsys, f"--checkpoint_dir={run}", "--task=segment",
                           f"--outputs={tmp_path / 'segment'}")
    assert status == 0, err
    segment = pq.read_table(str(tmp_path / "segment" / "task_outputs.parquet")).to_pydict()
    probabilities = np.array(segment["probabilities"], np.float32)
    assert probabilities.shape == (300, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    # Without --task: the first task's vectors (next_item), saying so.
    status, out, err = serve(capsys, f"--checkpoint_dir={run}", f"--outputs={tmp_path / 'first'}")
    assert status == 0, err
    assert "serving task next_item of next_item, segment, age_group" in out
    first = pq.read_table(str(tmp_path / "first" / "task_outputs.parquet")).to_pydict()
    assert np.array(first["top_items"]).shape == (300, 10)
    # The task indicator makes each task read its users differently.
    assert not np.allclose(np.array(first["embedding"]), np.array(segment["embedding"]))


def test_inference_of_an_unknown_task_lists_the_runs_tasks(finished_run, tmp_path, capsys):
    status, _, err = serve(capsys, f"--checkpoint_dir={finished_run[0]}", "--task=salary",
                           f"--outputs={tmp_path / 'salary'}")
    assert status == 2
    assert "--task=salary is not a task of this SUPERMOE run; its tasks: next_item, segment, " \
           "age_group" in err
    assert not (tmp_path / "salary").exists() or not any((tmp_path / "salary").iterdir())


def test_tensorboard_shows_each_tasks_loss_and_each_experts_load(finished_run):
    names = scalar_names(finished_run[0])

    assert {"task_loss/next_item", "task_loss/segment", "task_loss/age_group",
            "router/load_balancing_loss", "router/z_loss", "router/dropped_fraction"} <= names
    assert {f"router/expert_load/block_0/expert_{e}" for e in range(4)} <= names


def test_equal_gradient_norm_logs_each_tasks_shared_gradient_norm(tables, tmp_path, capsys):
    run = str(tmp_path / "balanced")
    status, stdout, err = train_in_process(capsys, f"--tables={tables}", TASKS,
                                           "--task_balance=equal_gradient_norm",
                                           "--task_weights=1,0.5,0.5",
                                           f"--checkpoint_dir={run}", "--max_steps=3",
                                           "--snapshot=3")
    assert status == 0, err
    assert sorted(losses(stdout)) == [1, 2, 3]
    assert {"task_gradient_norm/next_item", "task_gradient_norm/segment",
            "task_gradient_norm/age_group"} <= scalar_names(run)


def test_a_rerun_resumes_and_the_same_seed_gives_the_same_losses(finished_run, tables, tmp_path,
                                                                 capsys):
    run, stdout = finished_run
    status, resumed, _ = train_in_process(capsys, f"--tables={tables}", TASKS,
                                          f"--checkpoint_dir={run}", "--max_steps=5",
                                          "--snapshot=5")
    assert status == 0 and "resuming from" in resumed and sorted(losses(resumed)) == [5]

    status, again, _ = train_in_process(capsys, f"--tables={tables}", TASKS,
                                        f"--checkpoint_dir={tmp_path / 'again'}",
                                        "--max_steps=4", "--snapshot=4")
    assert status == 0
    assert losses(again) == pytest.approx(losses(stdout), rel=1e-5)


def test_overwrite_starts_a_finished_run_again(tables, tmp_path, capsys):
    # A finished run holds its task scores beside the checkpoints: still a folder train wrote.
    run = str(tmp_path / "again")
    flags = [f"--tables={tables}", TASKS, f"--checkpoint_dir={run}", "--max_steps=2", "--snapshot=2"]
    status, _, err = train_in_process(capsys, *flags)
    assert status == 0, err
    assert os.path.exists(os.path.join(run, "task_scores-step-2.json"))

    status, stdout, err = train_in_process(capsys, *flags, "--overwrite")
    assert status == 0, err
    assert "resuming" not in stdout and sorted(losses(stdout)) == [1, 2]


def test_a_killed_run_resumes_from_its_last_checkpoint(tables, tmp_path, capsys):
    run = str(tmp_path / "killed")
    flags = [f"--tables={tables}", TASKS, f"--checkpoint_dir={run}", "--snapshot=5", "--log_every=50"]
    killed_at = train_until_killed([*TINY, *flags, "--max_steps=3000"], run, kill_at_step=5)
    assert 5 <= killed_at < 3000, "no checkpoint was recorded before the kill"

    status, stdout, stderr = train_in_process(capsys, *flags, f"--max_steps={killed_at + 5}")
    assert status == 0, stderr
    assert f"(step {killed_at})" in stdout
    assert os.path.exists(os.path.join(run, f"ckpt-{killed_at + 5}.index"))
    with open(os.path.join(run, f"task_scores-step-{killed_at + 5}.json"), encoding="utf-8") as handle:
        assert sorted(json.load(handle)["tasks"]) == ["age_group", "next_item", "segment"]


def test_without_task_indicators_there_is_no_task_embedding(tables, tmp_path, capsys):
    from model import registry

    run = str(tmp_path / "plain")
    status, _, err = train_in_process(capsys, f"--tables={tables}", TASKS, "--task_indicator=0",
                                      f"--checkpoint_dir={run}", "--max_steps=2", "--snapshot=2")
    assert status == 0, err

    with open(os.path.join(run, "model_arch.json"), encoding="utf-8") as handle:
        arch = json.load(handle)
    family = registry.family_of(arch)
    model = family.build(family.config_from(arch))
    assert model.task_embedding is None
    assert not any("task_embedding" in variable.path for variable in model.variables)


def test_per_task_routers_give_each_task_its_own_router_kernel(tables, tmp_path, capsys):
    from model import registry

    run = str(tmp_path / "mmoe")
    status, _, err = train_in_process(capsys, f"--tables={tables}", TASKS, "--per_task_routers=1",
                                      "--experts_per_token=4", "--task_indicator=0",
                                      f"--checkpoint_dir={run}", "--max_steps=2", "--snapshot=2")
    assert status == 0, err

    with open(os.path.join(run, "model_arch.json"), encoding="utf-8") as handle:
        arch = json.load(handle)
    model = registry.family_of(arch).build(registry.family_of(arch).config_from(arch))
    assert tuple(model.encoder.blocks[0].experts.router_kernel.shape) == (3, 8, 4)


@pytest.mark.parametrize("balance", ["loss_weights", "equal_gradient_norm"])
def test_mirrored_on_two_cpu_replicas_matches_the_default_strategy(balance, tables, tmp_path):
    # No auxiliary losses and room for every token: replicas then add up to the same step
    # (with equal_gradient_norm, each task's norm is that of its replica-summed gradient).
    common = [*TINY, f"--tables={tables}", TASKS, "--max_steps=3", "--snapshot=3",
              "--load_balancing_weight=0", "--router_z_weight=0", "--capacity_factor=8",
              f"--task_balance={balance}"]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    results = {}
    for name, extra in (("one", ["--strategy=default"]),
                        ("two", ["--strategy=mirrored", "--cpu_replicas=2"])):
        finished = subprocess.run(
            [sys.executable, "main/train.py", *common, f"--checkpoint_dir={tmp_path / name}",
             *extra], cwd=REPO, capture_output=True, text=True, env=environment, timeout=300)
        assert finished.returncode == 0, finished.stderr[-3000:]
        results[name] = finished.stdout
    assert "strategy: mirrored with 2 replica(s)" in results["two"]
    one, two = losses(results["one"]), losses(results["two"])
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-3), (step, one, two)


@pytest.mark.parametrize("flags, message", [
    (["--experts_per_token=5"], "--experts_per_token=5 is more than --num_experts=4"),
    (["--num_heads=3"], "--model_dim=8 must be a multiple of --num_heads=3"),
    (["--task_weights=1,2"], "--task_weights has 2 numbers for 3 --tasks"),
    (["--task_weights=1,x,2"], "--task_weights='1,x,2'"),
    (["--tasks=next_item,next_item"], "--tasks names next_item more than once"),
    (["--tasks=next_item,salary"], "no column 'salary'"),
    (["--capacity_factor=0"], "--capacity_factor"),
    (["--task_balance=gradnorm"], "--task_balance: invalid choice: 'gradnorm'"),
])
def test_bad_flags_stop_with_one_line_and_write_nothing(flags, message, tables, tmp_path, capsys):
    run = tmp_path / "run"
    status, _, err = train_in_process(capsys, f"--tables={tables}", TASKS, *flags,
                                      f"--checkpoint_dir={run}", "--max_steps=2")

    assert status == 2
    assert message in err and "Traceback" not in err
    assert not run.exists() or not any(run.glob("ckpt-*"))
