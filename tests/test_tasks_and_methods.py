"""Any method runs with any task: one training step and the task's scores, for every pair.

The pairs are built from the registries, so a new method or task kind is
covered here as soon as it is registered.
"""

import numpy as np
import pytest
import tensorflow as tf

from data_loader.user_sequences import UserSequences
from model.finetune.task_trainer import TaskTrainer
from model.methods.method import parameter_count
from model.methods.registry import METHODS
from model.tasks.classification import ClassificationTask
from model.tasks.item_recommendation import ItemRecommendationTask
from model.tasks.next_item import NextItemTask
from model.tasks.registry import TASK_KINDS
from model.tasks.task import TaskSplit
from model.tasks.task_model import TaskModel
from model.training.optimizer import build_optimizer

NUM_ITEM_IDS = 40


class Settings:
    num_negatives = 2
    patch = "serial"
    train_layer_norms = True
    prune_ratio = 0.7
    s_max = 50.0
    retention_weight = 0.7
    retention_top_k = 10


def _sequences(count, seed):
    rng = np.random.default_rng(seed)
    items = [rng.integers(3, NUM_ITEM_IDS, size=rng.integers(2, 8)).tolist() for _ in range(count)]
    targets = [rng.integers(3, NUM_ITEM_IDS, size=rng.integers(1, 3)).tolist() for _ in range(count)]
    return UserSequences(np.array([f"u{seed}-{i}" for i in range(count)]),
                         tf.ragged.constant(items, dtype=tf.int32),
                         tf.ragged.constant(targets, dtype=tf.int32))


def _task(kind):
    splits = [_sequences(count, seed) for seed, count in enumerate((24, 8, 8))]
    if kind == ClassificationTask.kind:
        rng = np.random.default_rng(7)
        train, validation, test = (TaskSplit(s, rng.integers(0, 3, size=len(s))) for s in splits)
        return ClassificationTask("segment", ["a", "b", "c"], train, validation, test)
    if kind == NextItemTask.kind:
        return NextItemTask(*(TaskSplit(s) for s in splits), num_item_ids=NUM_ITEM_IDS,
                            num_sampled=5)
    return ItemRecommendationTask(*(TaskSplit(s) for s in splits), num_item_ids=NUM_ITEM_IDS)


def _description(method, task):
    description = {"model": "nextitnet", "num_item_ids": NUM_ITEM_IDS, "model_dim": 8,
                   "dilations": [1, 2], "kernel_size": 3, "dropout_rate": 0.0,
                   "patch_bottleneck": 2, "method": method.name,
                   # A continual method's place in its task sequence (Conure: a later task).
                   "task_index": 2}
    description.update(task.description_entries())
    description.update(method.folder_entries(Settings))
    description.update(method.description_entries(Settings))
    return description


@pytest.mark.parametrize("kind", sorted(TASK_KINDS))
@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_every_method_trains_every_task(method_name, kind):
    method, task = METHODS[method_name], _task(kind)
    tf.keras.utils.set_random_seed(0)
    description = _description(method, task)
    model = TaskModel(description).build_all(task.train.sequences.items[:2])
    variables = method.trainable_variables(model, description)
    strategy = tf.distribute.get_strategy()
    optimizer = build_optimizer(1e-2, "none", variables)
    trainer = TaskTrainer(model, task, method, optimizer, strategy, 0.0, variables)
    frozen = [v for v in model.trainable_variables if all(v is not t for t in variables)]
    before_frozen = [v.numpy().copy() for v in frozen]
    before_trained = [v.numpy().copy() for v in variables]

    batch = next(iter(task.training_dataset(8, 0, Settings)))
    loss = float(trainer.train_step(batch)["loss"])

    assert np.isfinite(loss) and loss > 0
    assert 0 < parameter_count(variables) <= parameter_count(model.trainable_variables)
    for value, variable in zip(before_frozen, frozen):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert any(np.abs(variable.numpy() - value).max() > 0
               for value, variable in zip(before_trained, variables))
    scores = task.scores(model, task.test)
    assert task.headline in scores and np.isfinite(scores[task.headline])


def test_peterrec_trains_only_patches_head_and_layer_norms():
    method, task = METHODS["peterrec"], _task(ClassificationTask.kind)
    description = _description(method, task)
    model = TaskModel(description).build_all(task.train.sequences.items[:2])
    chosen = {id(v) for v in method.trainable_variables(model, description)}
    expected = {id(v) for v in (model.encoder.adapter_variables() + model.encoder.layer_norm_variables()
                                + model.head.trainable_variables)}
    assert chosen == expected
    assert not chosen & {id(v) for v in model.encoder.item_embedding.variables}
