"""TERACON: soft masks from task embeddings, knowledge retention, one folder serving every task.

The pieces are checked against the paper's equations (SYSTEMS.md); the
folder is learned in-process through ``main/continual.py`` on a tiny demo
table folder and a tiny NextItNet, as tests/test_continual.py does for Conure.
"""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from contracts import schema
from data_dumper.sequences import read_item_index
from data_loader.table_files import resolve_table_files
from data_loader.user_sequences import read_user_sequences
from main import continual, inference
from model.continual.continual_state import task_model
from model.continual.knowledge_retention import (
    KnowledgeRetention,
    matched_outputs,
    mean_squared_difference,
    retained_users,
    sampling_ratio,
)
from model.continual.serving import read_folder_state, served_task_model, task_outputs
from model.continual.teracon_learning import old_tasks
from model.continual.teracon_trainer import annealed_scale
from model.layers.task_embedding_mask_adapter import (
    EMBEDDING_LIMIT,
    TaskEmbeddingMaskAdapter,
    running_as,
)
from model.nextitnet import DilatedResidualBlock, NextItNetEncoder
from model.tasks.item_recommendation import ItemRecommendationTask
from model.tasks.next_item import NextItemTask
from util.cli import run_cli
from util.run_config import read_continual_manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TASK = ["--epochs=1", "--retrain_epochs=1", "--first_task_epochs=1", "--batch_size=64",
             "--first_task_batch_size=64", "--dropout_rate=0"]


def _adapter(num_tasks, channels=4, seed=0):
    keras.utils.set_random_seed(seed)
    adapter = TaskEmbeddingMaskAdapter(num_tasks=num_tasks)
    adapter.build_for_block(channels, (3, channels, channels))
    return adapter


# -- the masks, against the paper's equations ---------------------------------------------------

def test_one_task_masks_are_the_sigmoid_of_its_embedding():
    adapter = _adapter(1)
    embeddings = adapter.embeddings.numpy()
    assert embeddings.min() >= 0.0 and embeddings.max() <= 2.0  # U(0, 2)
    np.testing.assert_allclose(adapter.task_masks(1, 3.0).numpy(),
                               1 / (1 + np.exp(-3.0 * embeddings[0])), rtol=1e-6)


def test_relation_aware_masks_follow_the_stacked_embeddings_of_the_paper():
    adapter = _adapter(3)
    rng = np.random.default_rng(4)
    adapter.relation.assign(rng.normal(size=adapter.relation.shape).astype("float32"))
    scale = 2.5
    embeddings, relation = adapter.embeddings.numpy(), adapter.relation.numpy()
    bias = adapter.relation_bias.numpy()
    for task in range(3):
        for unit in (0, 1):
            # Z = [e_t; e_j; -e_j for j != t]; Linear_t over Z's rows; the paper's order.
            rows = [embeddings[task, unit]]
            weights = [relation[task, unit, task, 0]]
            for other in range(3):
                if other != task:
                    rows += [embeddings[other, unit], -embeddings[other, unit]]
                    weights += [relation[task, unit, other, 0], relation[task, unit, other, 1]]
            linear = np.tanh(scale * np.stack(rows)).T @ np.array(weights) + bias[task, unit]
            expected = 1 / (1 + np.exp(-scale * linear))
            np.testing.assert_allclose(adapter.task_masks(task + 1, scale).numpy()[unit],
                                       expected, rtol=1e-5, atol=1e-6)


def test_a_new_task_leaves_every_old_tasks_masks_exactly_as_they_were():
    old = _adapter(2, seed=1)
    old.relation.assign(old.relation.numpy() * 40.0)  # learned, not the init
    grown = _adapter(3, seed=2)
    grown.load_tables(old.tables())
    for task in (1, 2):
        np.testing.assert_allclose(grown.task_masks(task, 50.0).numpy(),
                                   old.task_masks(task, 50.0).numpy(), rtol=1e-6, atol=1e-7)
    # The new task's row is fresh, not a copy of an old one.
    assert not np.allclose(grown.embeddings.numpy()[2], old.embeddings.numpy()[1])


def test_task_embeddings_are_clamped_after_every_step():
    block = DilatedResidualBlock(channels=4, dilation=1,
                                 adapter=TaskEmbeddingMaskAdapter(num_tasks=2))
    block.build((None, None, 4))
    optimizer = keras.optimizers.SGD(learning_rate=1000.0)
    embeddings = block.adapter.embeddings
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(block(tf.ones((2, 5, 4))))
    optimizer.apply(tape.gradient(loss, [embeddings]), [embeddings])
    assert np.abs(embeddings.numpy()).max() <= EMBEDDING_LIMIT


def test_a_masked_encoder_survives_a_keras_round_trip(tmp_path):
    items = np.array([[0, 3, 4, 5], [6, 7, 8, 9]], "int32")
    encoder = NextItNetEncoder(20, 4, dilations=(1, 2), block_adapters=[
        TaskEmbeddingMaskAdapter(num_tasks=3, s_max=20.0) for _ in range(2)])
    encoder(items)
    for block in encoder.blocks:
        block.adapter.activate(2)
    before = encoder(items).numpy()
    path = str(tmp_path / "encoder.keras")
    keras.saving.save_model(encoder, path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(items).numpy(), before, rtol=1e-6)
    assert restored.blocks[0].adapter.s_max == 20.0
    with running_as(encoder, 1, 20.0):
        other_task = encoder(items).numpy()
    assert not np.allclose(other_task, before)  # task 1 is served by its own masks


def test_the_scale_anneals_from_1_over_s_max_to_s_max_within_each_epoch():
    scales = [float(annealed_scale(step, 10, 50.0)) for step in (0, 5, 9, 10)]
    np.testing.assert_allclose(scales, [1 / 50, (50 - 1 / 50) * 0.5 + 1 / 50,
                                        (50 - 1 / 50) * 0.9 + 1 / 50, 1 / 50], rtol=1e-6)


def test_the_sampling_ratio_grows_as_the_masks_differ():
    same = tf.constant([[0.2, 0.9, 0.5]])
    alike = float(sampling_ratio(same, same))
    apart = float(sampling_ratio(tf.constant([[1.0, 0.0, 0.0]]), tf.constant([[0.0, 1.0, 0.0]])))
    np.testing.assert_allclose(alike, 1 - 1 / (1 + np.exp(-6.0)), rtol=1e-5)
    np.testing.assert_allclose(apart, 0.5, rtol=1e-6)


def test_each_old_task_is_retained_on_its_share_of_the_batch_and_at_least_min_share():
    # The paper's share alone: 0.0025 of 128 users is none, so one user.
    assert int(retained_users(128, 0.0025)) == 1
    assert int(retained_users(128, 0.25)) == 32
    assert int(retained_users(128, 0.0025, min_share=0.25)) == 32
    assert int(retained_users(128, 0.5, min_share=0.25)) == 64


def test_bounded_pseudo_labels_are_the_teachers_top_k():
    teacher = tf.constant([[0.1, 5.0, 3.0, -1.0]])
    student = tf.constant([[9.0, 1.0, 2.0, 7.0]])
    matched_student, matched_teacher = matched_outputs(student, teacher, top_k=2)
    np.testing.assert_array_equal(matched_teacher.numpy(), [[5.0, 3.0]])
    np.testing.assert_array_equal(matched_student.numpy(), [[1.0, 2.0]])
    everything, _ = matched_outputs(student, teacher, top_k=0)
    np.testing.assert_array_equal(everything.numpy(), student.numpy())


def test_every_position_pseudo_labels_take_each_positions_top_k_and_skip_padding():
    teacher = tf.constant([[[0.0, 0.0, 0.0], [0.1, 5.0, 3.0]], [[4.0, 1.0, 2.0], [1.0, 0.0, 9.0]]])
    student = tf.constant([[[7.0, 7.0, 7.0], [1.0, 2.0, 3.0]], [[4.0, 1.0, 2.0], [1.0, 0.0, 9.0]]])
    matched_student, matched_teacher = matched_outputs(student, teacher, top_k=2)
    np.testing.assert_array_equal(matched_teacher.numpy()[0, 1], [5.0, 3.0])
    np.testing.assert_array_equal(matched_student.numpy()[0, 1], [2.0, 3.0])
    # User 1's first position is left padding: its (large) difference does not count.
    real = tf.constant([[False, True], [True, True]])
    expected = ((2.0 - 5.0) ** 2 + 0.0) / (3 * 2)  # one moved pair over 3 real positions x 2 outputs
    assert float(mean_squared_difference(matched_student, matched_teacher, real)) == pytest.approx(expected)
    empty = tf.zeros([0, 2, 2])
    assert float(mean_squared_difference(empty, empty, tf.zeros([0, 2], tf.bool))) == 0.0


# -- the folder, as a user runs it --------------------------------------------------------------

def _learn(*argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(continual.main, list(argv))
    return exit_info.value.code or 0


@pytest.fixture(scope="module")
def folder(tiny_nextitnet, tmp_path_factory):
    """A TERACON folder of next_item + segment + age_group, and each task's outputs when learned."""
    root = tmp_path_factory.mktemp("teracon")
    tables, run = tiny_nextitnet["tables"], tiny_nextitnet["run"]
    items = read_user_sequences(resolve_table_files(
        tables, default_subdir=schema.SEQUENCES_SUBDIR), 20).items
    model_dir = str(root / "teracon")
    assert _learn(f"--pretrained={run}", f"--model_dir={model_dir}", "--method=teracon",
                  "--task=segment", *TINY_TASK) == 0
    learned = {name: _outputs(model_dir, name, items) for name in ("next_item", "segment")}
    heads_after_two = read_folder_state(model_dir, read_continual_manifest(model_dir)).heads
    # The third task compares old tasks at the served scale (--retention_scale), T1 at every position.
    assert _learn(f"--model_dir={model_dir}", "--task=age_group", "--retention_scale=served",
                  "--retention_min_share=0.5", "--retention_positions=all", *TINY_TASK) == 0
    return {"root": root, "run": run, "tables": tables, "items": items, "dir": model_dir,
            "learned": learned, "heads_after_two": heads_after_two}


def _outputs(model_dir, name, items):
    state = read_folder_state(model_dir, read_continual_manifest(model_dir))
    model, _ = served_task_model(state, name, items[:2])
    return task_outputs(model, items, top_k=5)


def test_one_folder_serves_every_task_with_its_own_masks_and_head(folder):
    names = [entry["name"] for entry in read_continual_manifest(folder["dir"])["tasks"]]
    assert names == ["next_item", "segment", "age_group"]
    files = sorted(os.listdir(folder["dir"]))
    # One backbone for every task, a head per task; no per-task copy of the backbone.
    assert sum(name.startswith("backbone.data") for name in files) == 1
    assert sum(name.startswith("head-") and name.endswith(".index") for name in files) == 3
    outputs = {name: _outputs(folder["dir"], name, folder["items"]) for name in names}
    assert outputs["segment"]["probabilities"].shape[1] == 2
    assert outputs["next_item"]["top_items"].shape == (int(folder["items"].nrows()), 5)
    # Each task runs with its own masks: the same users get other vectors per task.
    assert not np.allclose(outputs["segment"]["vectors"], outputs["age_group"]["vectors"])


def test_each_task_records_the_mask_scale_its_retention_compared_at(folder):
    entries = read_continual_manifest(folder["dir"])["tasks"]
    assert [entry["description"]["retention_scale"] for entry in entries[1:]] == [
        "annealed", "served"]
    assert [entry["description"]["retention_min_share"] for entry in entries[1:]] == [0.25, 0.5]
    assert [entry["description"]["retention_positions"] for entry in entries[1:]] == ["newest", "all"]


def test_every_weight_trains_old_heads_included(folder):
    state = read_folder_state(folder["dir"], read_continual_manifest(folder["dir"]))
    before = folder["heads_after_two"]
    # Learning age_group moved the heads of tasks 1 and 2 (the retention loss trains them).
    for task in (1, 2):
        assert any(not np.array_equal(old, new) for old, new in zip(before[task], state.heads[task]))
    assert state.task_tables[0].shape == (3, 2, 8)  # embeddings: a row per task and layer
    assert np.abs(state.task_tables[0]).max() <= EMBEDDING_LIMIT


def test_each_added_task_stores_its_tables_growth_and_its_head_only(folder):
    entries = read_continual_manifest(folder["dir"])["tasks"]
    channels, blocks = 8, 2
    for index in (2, 3):
        # Per block and masked layer: an embedding row, the relation rows and columns, a bias.
        growth = blocks * 2 * (channels + 2 * (index ** 2 - (index - 1) ** 2) + 1)
        head = (channels + 1) * len(entries[index - 1]["description"]["class_values"])
        assert entries[index - 1]["stored_parameters"] == growth + head


@pytest.mark.parametrize("positions", ["newest", "all"])
def test_retention_is_zero_right_after_a_task_is_added_and_pulls_back_a_moved_model(folder, positions):
    state = read_folder_state(folder["dir"], read_continual_manifest(folder["dir"]))
    items = folder["items"][:64]
    new_description = dict(state.description(3), task_index=4, name="probe")
    student = task_model(state, 4, items[:2], new_description)
    teacher = task_model(state, 3, items[:2])
    earlier = old_tasks(state, 4, student.dim)
    retention = KnowledgeRetention(student, teacher, earlier, 4, top_k=10, positions=positions)

    def retained():
        tf.random.set_seed(7)  # the same users sampled on every call
        return retention.loss(items, 50.0)

    loss, ratios = retained()
    # The grown model serves every old task exactly as the folder does: nothing to retain yet.
    assert float(loss) < 1e-10
    assert ratios.shape == (3,) and np.all((ratios.numpy() > 0) & (ratios.numpy() <= 0.5))

    kernel = student.encoder.blocks[0].conv_1.kernel
    # Random, not a constant shift (the LayerNorm after the convolution would remove that).
    kernel.assign(kernel + np.random.default_rng(0).normal(0, 0.3, kernel.shape).astype("float32"))
    moved, _ = retained()
    assert float(moved) > 1e-4
    with tf.GradientTape() as tape:
        value, _ = retained()
    gradient = tape.gradient(value, kernel)
    kernel.assign_sub(0.05 * gradient / tf.norm(gradient))
    after, _ = retained()
    assert float(after) < float(moved)


def _first_task_loss(model_dir, items):
    """T1's mean next-item loss (full softmax) on ``items``, served from ``model_dir``."""
    state = read_folder_state(model_dir, read_continual_manifest(model_dir))
    model, _ = served_task_model(state, "next_item", items[:2])
    return float(tf.reduce_mean(NextItemTask.user_losses(model, model.head, items, 0)))


def test_replaying_task_1s_own_loss_keeps_it_better_than_without(folder, tmp_path, capsys):
    # Retention off in both folders, so what keeps T1 is the replay alone.
    losses = {}
    for weight in (0.0, 1.0):
        model_dir = str(tmp_path / f"replay_{weight:g}")
        shutil.copytree(folder["dir"], model_dir)
        assert _learn(f"--model_dir={model_dir}", "--task=interest", "--retention_weight=0",
                      f"--first_task_replay_weight={weight}", *TINY_TASK,
                      "--retrain_epochs=0") == 0
        entry = read_continual_manifest(model_dir)["tasks"][-1]
        assert entry["description"]["first_task_replay_weight"] == weight
        losses[weight] = _first_task_loss(model_dir, folder["items"])
    assert "task 1 replayed on its own next-item loss (weight 1.0" in capsys.readouterr().out
    before = _first_task_loss(folder["dir"], folder["items"])
    assert losses[1.0] < losses[0.0]
    # Trained on its own objective, T1 ends no worse than before the task.
    assert losses[1.0] < before + 0.05 * abs(before)


def test_list_shows_open_channels_per_task(folder, capsys):
    assert _learn(f"--model_dir={folder['dir']}", "--list") == 0
    text = capsys.readouterr().out
    assert "teracon" in text and "open channels" in text and "block_1/conv_2" in text


def test_inference_serves_an_old_task_from_the_latest_folder(folder, tmp_path):
    outputs = str(tmp_path / "segment")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(inference.main, [f"--checkpoint_dir={folder['dir']}", "--task=segment",
                                 f"--outputs={outputs}"])
    assert (exit_info.value.code or 0) == 0
    served = pq.read_table(os.path.join(outputs, "task_outputs.parquet")).to_pydict()
    expected = _outputs(folder["dir"], "segment", folder["items"])
    np.testing.assert_allclose(np.array(served["embedding"], np.float32), expected["vectors"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(served["probabilities"], np.float32),
                               expected["probabilities"], rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_on_two_cpu_replicas_learns_a_task_with_retention(folder, tmp_path):
    model_dir = str(tmp_path / "mirrored")
    shutil.copytree(folder["dir"], model_dir)
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        # One epoch of a classification task: the point is retention under 2 replicas.
        [sys.executable, "main/continual.py", f"--model_dir={model_dir}", "--task=interest",
         "--strategy=mirrored", "--cpu_replicas=2", "--retention_top_k=20", *TINY_TASK,
         "--retrain_epochs=0"],
        cwd=REPO, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "mirrored with 2 replica(s)" in result.stdout
    assert "knowledge retention of tasks 1..3" in result.stdout
    tasks = read_continual_manifest(model_dir)["tasks"]
    assert [entry["name"] for entry in tasks][-1] == "interest"
    for name in ("next_item", "segment", "age_group", "interest"):
        served = _outputs(model_dir, name, folder["items"])
        assert np.isfinite(served["vectors"]).all(), name


def test_an_item_task_scores_against_the_item_embedding_and_stores_only_a_scale_and_shift(
        folder, tmp_path):
    model_dir = str(tmp_path / "items")
    shutil.copytree(folder["dir"], model_dir)
    # No --item_head: TERACON's default ties the head to the backbone's item embedding.
    assert _learn(f"--model_dir={model_dir}", "--task=items", *TINY_TASK) == 0
    entry = read_continual_manifest(model_dir)["tasks"][-1]
    assert entry["description"]["item_head"] == "item_embedding"
    channels, blocks, index = 8, 2, 4
    growth = blocks * 2 * (channels + 2 * (index ** 2 - (index - 1) ** 2) + 1)
    assert entry["stored_parameters"] == growth + 2 * channels  # no item table of its own
    state = read_folder_state(model_dir, read_continual_manifest(model_dir))
    assert [value.shape for value in state.heads[index]] == [(channels,), (channels,)]

    model, _ = served_task_model(state, "items", folder["items"][:2])
    users = ItemRecommendationTask.serving_vectors(model, folder["items"][:4])
    scale, shift = state.heads[index]
    embedding = model.encoder.item_embedding.embeddings.numpy()
    # Served scores are the folder's own item embedding against the scaled, shifted users.
    np.testing.assert_allclose(
        ItemRecommendationTask.head_outputs(model, model.head, folder["items"][:4]).numpy(),
        (users * scale + shift) @ embedding.T, rtol=1e-4, atol=1e-4)

    outputs = str(tmp_path / "served")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(inference.main, [f"--checkpoint_dir={model_dir}", "--task=items",
                                 f"--outputs={outputs}", "--top_k=5"])
    assert (exit_info.value.code or 0) == 0
    served = pq.read_table(os.path.join(outputs, "task_outputs.parquet")).to_pydict()
    expected = _outputs(model_dir, "items", folder["items"])["top_items"]
    names = read_item_index(os.path.join(folder["tables"], schema.ITEM_INDEX_FILE))
    assert served["top_items"] == [[names[i] for i in row] for row in expected]


@pytest.mark.parametrize("argv, message", [
    (["--task=age_group", "--overwrite_task"], "trained every weight"),
    (["--task=interest", "--s_max=10"], "--s_max=10.0"),
])
def test_refusals_name_the_problem_and_change_nothing(folder, argv, message, capsys):
    before = {name: open(os.path.join(folder["dir"], name), "rb").read()
              for name in sorted(os.listdir(folder["dir"]))}
    assert _learn(f"--model_dir={folder['dir']}", *argv, *TINY_TASK) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    after = {name: open(os.path.join(folder["dir"], name), "rb").read()
             for name in sorted(os.listdir(folder["dir"]))}
    assert after == before
