"""Conure in a continual folder: task after task, every old task served bit-identically, clear refusals.

The learning runs in-process through ``main/continual.py``'s ``main`` on a
tiny demo table folder and a tiny NextItNet; one case runs the entry point
under MirroredStrategy on two logical CPUs in its own process.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from contracts import schema
from contracts.run_folder import CONTINUAL_MANIFEST_FILE
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from data_loader.table_files import resolve_table_files
from data_loader.user_sequences import read_user_sequences
from main import continual, train
from model.continual.kernel_ownership import keep_largest_free, pack_owner, unpack_owner
from model.continual.serving import read_folder_state, served_task_model, task_outputs
from model.layers.kernel_mask_adapter import KernelMaskAdapter
from model.nextitnet import DilatedResidualBlock, NextItNetEncoder
from util.cli import run_cli
from util.run_config import read_continual_manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_BACKBONE = ["--model=nextitnet", "--model_dim=8", "--dilations=1,2", "--batch_size=16",
                 "--max_items_per_user=20", "--max_steps=4", "--snapshot=4", "--log_every=2"]
TINY_TASK = ["--epochs=1", "--retrain_epochs=1", "--first_task_epochs=1", "--batch_size=64",
             "--first_task_batch_size=64"]


# -- the pieces ---------------------------------------------------------------------------------

def test_pruning_keeps_the_largest_free_weights_only():
    owner = np.array([[0, 1, 0], [0, 0, 2]])
    kernel = np.array([[0.5, 9.0, -3.0], [0.1, 2.0, 8.0]])
    kept = keep_largest_free(owner, kernel, task=3, keep_share=0.5)
    # Free weights 0.5, -3.0, 0.1, 2.0: the two largest by |w| are -3.0 and 2.0.
    np.testing.assert_array_equal(kept, [[0, 1, 3], [0, 3, 2]])
    np.testing.assert_array_equal(owner, [[0, 1, 0], [0, 0, 2]])  # the input is not changed


def test_packed_masks_round_trip_one_bit_per_weight_and_task():
    rng = np.random.default_rng(0)
    owner = rng.integers(0, 4, size=(3, 5, 5)).astype(np.int32)
    packed = pack_owner(owner, num_tasks=3)
    assert packed.dtype == np.uint8 and packed.shape == (3, (owner.size + 7) // 8)
    np.testing.assert_array_equal(unpack_owner(packed, owner.shape), owner)
    overlapping = packed.copy()
    overlapping[1] |= overlapping[0]
    with pytest.raises(ValueError, match="overlap"):
        unpack_owner(overlapping, owner.shape)


def _masked_block(owners):
    block = DilatedResidualBlock(channels=4, dilation=1, adapter=KernelMaskAdapter(name="adapter"))
    block.build((None, None, 4))
    for unit, owner in enumerate(owners):
        block.adapter.set_owner(unit, owner)
    return block


def test_a_task_runs_with_the_masks_of_tasks_up_to_it_and_gradients_reach_its_own_weights():
    rng = np.random.default_rng(1)
    owners = [rng.integers(0, 3, size=(3, 4, 4)).astype(np.int32) for _ in range(2)]
    block = _masked_block(owners)
    kernel = block.conv_1.kernel
    block.adapter.activate(task=2, include_free=False)
    effective = block.adapter.adapt_kernel(0, kernel)
    np.testing.assert_array_equal(effective.numpy(), kernel.numpy() * (owners[0] > 0))
    block.adapter.activate(task=1, include_free=False)
    np.testing.assert_array_equal(block.adapter.adapt_kernel(0, kernel).numpy(),
                                  kernel.numpy() * (owners[0] == 1))

    # Training task 2 with the free weights: gradients reach owner 0 and 2, never owner 1.
    block.adapter.activate(task=2, include_free=True)
    hidden = tf.constant(rng.normal(size=(2, 5, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(block(hidden) ** 2)
    gradient = tape.gradient(loss, kernel).numpy()
    assert np.all(gradient[owners[0] == 1] == 0)
    assert np.any(gradient[owners[0] != 1] != 0)


def test_a_masked_encoder_survives_a_keras_round_trip_with_its_owners_and_task(tmp_path):
    items = np.array([[0, 3, 4, 5], [6, 7, 8, 9]], "int32")
    encoder = NextItNetEncoder(20, 4, dilations=(1, 2),
                               block_adapters=[KernelMaskAdapter(), KernelMaskAdapter()])
    encoder(items)
    rng = np.random.default_rng(3)
    for block in encoder.blocks:
        for unit in (0, 1):
            block.adapter.set_owner(unit, rng.integers(0, 3, size=(3, 4, 4)).astype(np.int32))
        block.adapter.activate(task=1, include_free=False)
    before = encoder(items).numpy()
    path = str(tmp_path / "encoder.keras")
    keras.saving.save_model(encoder, path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored(items).numpy(), before)
    assert int(restored.blocks[1].adapter.task.numpy()) == 1


# -- the folder, as a user runs it --------------------------------------------------------------

def _learn(*argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(continual.main, list(argv))
    return exit_info.value.code or 0


@pytest.fixture(scope="module")
def pretrained(tiny_nextitnet, tmp_path_factory):
    """The session's tiny NextItNet, with a folder of this module's own for continual folders."""
    return dict(tiny_nextitnet, root=tmp_path_factory.mktemp("continual"))


def _outputs(folder, task_name, items):
    state = read_folder_state(folder, read_continual_manifest(folder))
    model, _ = served_task_model(state, task_name, items[:2])
    return task_outputs(model, items, top_k=5)


@pytest.fixture(scope="module")
def three_tasks(pretrained):
    """A folder that learned next_item + segment, then age_group; outputs right after each task."""
    folder = str(pretrained["root"] / "conure")
    items = read_user_sequences(resolve_table_files(
        pretrained["tables"], default_subdir=schema.SEQUENCES_SUBDIR), 20).items
    assert _learn(f"--pretrained={pretrained['run']}", f"--model_dir={folder}",
                  "--task=segment", "--method=conure", *TINY_TASK) == 0
    after = {name: _outputs(folder, name, items) for name in ("next_item", "segment")}
    assert _learn(f"--model_dir={folder}", "--task=age_group", *TINY_TASK) == 0
    after["age_group"] = _outputs(folder, "age_group", items)
    return {"folder": folder, "items": items, "after": after}


def test_every_earlier_task_is_served_bit_identically_after_later_tasks(three_tasks):
    folder, items = three_tasks["folder"], three_tasks["items"]
    assert _learn(f"--model_dir={folder}", "--task=interest", *TINY_TASK) == 0
    for name, before in three_tasks["after"].items():
        now = _outputs(folder, name, items)
        assert set(now) == set(before)
        for column in before:
            np.testing.assert_array_equal(now[column], before[column], err_msg=f"{name}/{column}")
    # The tasks really differ: a task is not served by another's masks.
    assert not np.array_equal(three_tasks["after"]["segment"]["vectors"],
                              three_tasks["after"]["age_group"]["vectors"])


def test_the_manifest_records_each_task_and_the_paper_mask_schedule(three_tasks):
    manifest = read_continual_manifest(three_tasks["folder"])
    names = [entry["name"] for entry in manifest["tasks"]]
    assert names[:3] == ["next_item", "segment", "age_group"]
    shares = [entry["mask_share"] for entry in manifest["tasks"][:3]]
    # prune_ratio 0.7: 30%, 21%, 14.7% of every kernel (up to rounding per kernel).
    np.testing.assert_allclose(shares, [0.3, 0.21, 0.147], atol=0.01)
    for entry in manifest["tasks"]:
        assert {"kind", "label_source", "headline", "test_metrics", "date"} <= set(entry)
        assert np.isfinite(entry["test_metrics"][entry["headline"]])
    files = sorted(os.listdir(three_tasks["folder"]))
    assert CONTINUAL_MANIFEST_FILE in files
    # One backbone for every task; a head per task; nothing else.
    assert sum(name.startswith("backbone.data") for name in files) == 1
    assert sum(name.endswith(".index") and name.startswith("head-") for name in files) == len(names)


def test_list_prints_tasks_and_capacity_per_layer(three_tasks, capsys):
    assert _learn(f"--model_dir={three_tasks['folder']}", "--list") == 0
    text = capsys.readouterr().out
    assert "next_item" in text and "segment" in text and "age_group" in text
    assert "block_1/conv_2" in text and "free" in text


def _snapshot(folder):
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("argv, message", [
    (["--task=segment"], "learned already"),
    (["--task=segment", "--overwrite_task"], "only the last task"),
    (["--task=next_item"], "task 1 of every continual folder"),
    (["--task=no_such_column"], "no_such_column"),
    (["--task=gender", "--method=conure", "--pretrained={other}"], "--pretrained"),
])
def test_refusals_name_the_problem_and_change_nothing(three_tasks, pretrained, tmp_path, argv,
                                                     message, capsys):
    folder = three_tasks["folder"]
    other = str(tmp_path / "other_run")
    os.makedirs(other)
    before = _snapshot(folder)
    argv = [part.replace("{other}", other) for part in argv]
    assert _learn(f"--model_dir={folder}", *argv, *TINY_TASK) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error:") and message in error[0], error
    assert _snapshot(folder) == before


def test_a_new_folder_needs_a_nextitnet_run(pretrained, tmp_path, capsys):
    assert _learn(f"--model_dir={tmp_path / 'new'}", "--task=segment") == 2
    assert "pass --pretrained" in capsys.readouterr().err
    sumn_like = tmp_path / "sumn_run"
    sumn_like.mkdir()
    (sumn_like / "model_arch.json").write_text(json.dumps({"model": "sumn"}))
    assert _learn(f"--model_dir={tmp_path / 'new'}", f"--pretrained={sumn_like}",
                  "--task=segment") == 2
    assert "--model=nextitnet" in capsys.readouterr().err
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("years of work")
    assert _learn(f"--model_dir={foreign}", f"--pretrained={pretrained['run']}",
                  "--task=segment") == 2
    assert "not empty" in capsys.readouterr().err
    assert os.listdir(foreign) == ["thesis.txt"]
    assert not os.path.exists(tmp_path / "new")


def test_no_free_capacity_is_refused_naming_the_layer(pretrained, tmp_path, capsys):
    folder = str(tmp_path / "full")
    # Keeping 0.1% of a 192-weight kernel rounds to nothing: task 2 has no room.
    assert _learn(f"--pretrained={pretrained['run']}", f"--model_dir={folder}",
                  "--task=next_item", "--prune_ratio=0.5", *TINY_TASK) == 0
    before = _snapshot(folder)
    assert _learn(f"--model_dir={folder}", "--task=segment", "--prune_ratio=0.999",
                  *TINY_TASK) == 2
    error = capsys.readouterr().err
    assert "no free capacity" in error and "block_0/conv_1" in error
    assert _snapshot(folder) == before


def test_a_killed_task_leaves_the_folder_serving_and_a_rerun_learns_it(pretrained, tmp_path,
                                                                      monkeypatch):
    folder = str(tmp_path / "killed")
    assert _learn(f"--pretrained={pretrained['run']}", f"--model_dir={folder}",
                  "--task=next_item", *TINY_TASK) == 0
    before = _snapshot(folder)
    write_state = continual.continual_checkpoint.write_state

    def killed_learning(*args, **kwargs):
        raise KeyboardInterrupt

    def killed_commit(staging, state):
        write_state(staging, state)  # the new task's files are in the staging folder ...
        raise KeyboardInterrupt      # ... when the job dies, before its manifest

    for target, name, replacement in ((continual, "learner", lambda method: killed_learning),
                                      (continual.continual_checkpoint, "write_state",
                                       killed_commit)):
        with monkeypatch.context() as patch:
            patch.setattr(target, name, replacement)
            assert _learn(f"--model_dir={folder}", "--task=segment", *TINY_TASK) == 130
        assert _snapshot(folder) == before, name
        leftovers = [entry for entry in os.listdir(tmp_path)
                     if entry.startswith(".killed") and not entry.endswith(".lock")]
        assert leftovers == [], name

    # A kill -9 in the commit leaves the staging folder; the next job (holding the lock) removes it.
    abandoned = tmp_path / ".killed.abc123.tmp"
    abandoned.mkdir()
    (abandoned / "backbone.index").write_bytes(b"half")
    assert _learn(f"--model_dir={folder}", "--task=segment", *TINY_TASK) == 0
    assert not abandoned.exists()
    tasks = read_continual_manifest(folder)["tasks"]
    assert [entry["name"] for entry in tasks] == ["next_item", "segment"]

    # The last task can be learned again; its capacity is given back first.
    assert _learn(f"--model_dir={folder}", "--task=segment", "--overwrite_task", "--seed=7",
                  *TINY_TASK) == 0
    again = read_continual_manifest(folder)["tasks"]
    assert [entry["name"] for entry in again] == ["next_item", "segment"]
    np.testing.assert_allclose(again[1]["mask_share"], tasks[1]["mask_share"], atol=1e-6)
    assert again[1]["date"] >= tasks[1]["date"]


def test_mirrored_strategy_on_two_cpu_replicas_learns_a_task_and_keeps_the_others(three_tasks,
                                                                                  tmp_path):
    folder = str(tmp_path / "mirrored")
    shutil.copytree(three_tasks["folder"], folder)
    learned = [entry["name"] for entry in read_continual_manifest(folder)["tasks"]]
    before = {name: _outputs(folder, name, three_tasks["items"]) for name in learned}
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "main/continual.py", f"--model_dir={folder}", "--task=items",
         "--strategy=mirrored", "--cpu_replicas=2", *TINY_TASK],
        cwd=REPO, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "mirrored with 2 replica(s)" in result.stdout
    tasks = read_continual_manifest(folder)["tasks"]
    assert [entry["name"] for entry in tasks] == learned + ["items"]
    assert np.isfinite(tasks[-1]["test_metrics"]["hr@10_full"])
    for name, outputs in before.items():
        np.testing.assert_array_equal(_outputs(folder, name, three_tasks["items"])["vectors"],
                                      outputs["vectors"], err_msg=name)


def test_inference_writes_each_users_vector_and_prediction_of_a_learned_task(three_tasks,
                                                                             pretrained,
                                                                             tmp_path):
    import pyarrow.parquet as pq

    from data_dumper.sequences import read_item_index
    from main import inference

    folder, items = three_tasks["folder"], three_tasks["items"]
    served = {}
    for task in ("segment", "next_item"):
        outputs = str(tmp_path / task)
        with pytest.raises(SystemExit) as exit_info:
            run_cli(inference.main, [f"--checkpoint_dir={folder}", f"--task={task}",
                                     f"--outputs={outputs}", "--top_k=4"])
        assert exit_info.value.code in (0, None)
        served[task] = pq.read_table(os.path.join(outputs, "task_outputs.parquet")).to_pydict()
        summary = json.load(open(os.path.join(outputs, "inference.json")))
        assert summary["task"] == task and summary["users"] == int(items.nrows())
    expected = _outputs(folder, "segment", items)
    np.testing.assert_array_equal(np.array(served["segment"]["embedding"], np.float32),
                                  expected["vectors"])
    manifest = read_continual_manifest(folder)
    classes = [str(value) for value in manifest["tasks"][1]["description"]["class_values"]]
    assert set(served["segment"]["prediction"]) <= set(classes)
    np.testing.assert_allclose(np.sum(served["segment"]["probabilities"], axis=1), 1.0, atol=1e-5)
    names = read_item_index(os.path.join(pretrained["tables"], schema.ITEM_INDEX_FILE))
    history = [set(names[i] for i in row) for row in items.to_list()]
    top = served["next_item"]["top_items"]
    assert all(len(row) == 4 and not set(row) & seen and not set(row) & set(names[:3])
               for row, seen in zip(top, history))


def test_evaluate_scores_every_task_as_the_folder_serves_it(three_tasks, tmp_path, capsys):
    scores_file = str(tmp_path / "scores.json")
    assert _learn(f"--model_dir={three_tasks['folder']}", f"--evaluate={scores_file}") == 0
    scores = json.load(open(scores_file))["test_metrics"]
    for entry in read_continual_manifest(three_tasks["folder"])["tasks"]:
        # Conure: exactly the score each task had when it was learned.
        assert scores[entry["name"]] == entry["test_metrics"], entry["name"]
    assert "+0.0000" in capsys.readouterr().out


def test_sequential_fineall_moves_the_backbone_that_earlier_tasks_are_served_by(pretrained,
                                                                                tmp_path):
    folder = str(tmp_path / "sequential")
    items = read_user_sequences(resolve_table_files(
        pretrained["tables"], default_subdir=schema.SEQUENCES_SUBDIR), 20).items
    assert _learn("--method=sequential_fineall", f"--pretrained={pretrained['run']}",
                  f"--model_dir={folder}", "--task=next_item", "--first_task_epochs=0",
                  *TINY_TASK[:2]) == 0
    before = _outputs(folder, "next_item", items)
    assert _learn(f"--model_dir={folder}", "--task=segment", "--learning_rate=0.01",
                  *TINY_TASK) == 0
    after = _outputs(folder, "next_item", items)
    assert np.abs(after["vectors"] - before["vectors"]).max() > 1e-4
    manifest = read_continual_manifest(folder)
    assert manifest["method"] == "sequential_fineall"
    assert all(entry["mask_share"] is None for entry in manifest["tasks"])


@pytest.mark.ml1m
def test_conure_on_movielens_keeps_gender_exactly_while_learning_age(ml1m_dir, tmp_path):
    tables = str(tmp_path / "tables")
    build_tables(BuildConfig(output_dir=tables, movielens=ml1m_dir, num_shards=1,
                             max_items_per_user=20), log=lambda line: None)
    run = str(tmp_path / "nin")
    assert train.main([f"--tables={tables}", f"--checkpoint_dir={run}", *TINY_BACKBONE]) == 0
    folder = str(tmp_path / "conure")
    labels = f"--labels={os.path.join(ml1m_dir, 'users.dat')}"
    quick = ["--epochs=1", "--retrain_epochs=0", "--first_task_epochs=0", "--batch_size=512",
             "--learning_rate=0.01"]
    assert _learn(f"--pretrained={run}", f"--model_dir={folder}", "--task=gender", labels,
                  *quick) == 0
    assert _learn(f"--model_dir={folder}", "--task=age", labels, *quick) == 0
    scores_file = str(tmp_path / "scores.json")
    assert _learn(f"--model_dir={folder}", f"--evaluate={scores_file}") == 0
    scores = json.load(open(scores_file))["test_metrics"]
    tasks = read_continual_manifest(folder)["tasks"]
    assert [entry["name"] for entry in tasks] == ["next_item", "gender", "age"]
    assert scores["gender"] == tasks[1]["test_metrics"]
    assert tasks[1]["test_users"] == 1208  # user_id % 5 == 0 of the 6,040
    assert 0.5 < scores["gender"]["accuracy"] < 1.0 and 0 < scores["age"]["accuracy"] < 1.0
