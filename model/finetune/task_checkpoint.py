"""Saves a fine-tuned task as ONLY its task-specific variables, and loads it back.

A task folder holds ``task.json`` (method, task, classes, the architecture
and where the pretrained backbone is) and ``task-params.*`` (a TF checkpoint
of the variables the method trained, keyed by their Keras paths). Loading
builds the task model, restores the shared backbone from the pretrained run,
then puts the task's variables on top: for PeterRec a task costs its patches,
LayerNorms and head, not another copy of the backbone.
"""

import json
import os

import tensorflow as tf

from model.finetune.methods import starts_from_pretrained
from model.finetune.task_model import TaskModel
from model.finetune.backbone import restore_backbone
from util.atomic import write_text_atomically
from util.errors import UserInputError

TASK_FILE = "task.json"
PARAMS_PREFIX = "task-params"


def _indexed(model, indices):
    # Keyed by position in ``model.variables``: the order is fixed by the architecture,
    # while Keras's auto-generated layer names (and so variable paths) depend on what
    # else the process built before.
    variables = model.variables
    return {f"v{index:05d}": variables[index] for index in indices}


def save_task(output_dir, task_config, model, variables):
    """Writes ``task.json`` and the checkpoint of ``variables`` (of ``model``) into ``output_dir``.

    The checkpoint is written first and the description last, so a folder with
    a ``task.json`` always holds complete parameters.
    """
    os.makedirs(output_dir, exist_ok=True)
    wanted = {id(variable) for variable in variables}
    indices = [i for i, variable in enumerate(model.variables) if id(variable) in wanted]
    checkpoint = tf.train.Checkpoint(params=_indexed(model, indices))
    checkpoint.write(os.path.join(output_dir, PARAMS_PREFIX))
    config = dict(task_config, saved_variable_indices=indices,
                  saved_variables=[model.variables[i].path for i in indices])
    write_text_atomically(os.path.join(output_dir, TASK_FILE),
                          json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")


def read_task_config(output_dir):
    path = os.path.join(output_dir, TASK_FILE)
    if not os.path.exists(path):
        raise UserInputError(f"{output_dir} holds no {TASK_FILE}: is it a main/finetune.py output?")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def build_task_model(config, sample_items):
    """A ``TaskModel`` from a task description, variables created with ``sample_items``."""
    model = TaskModel(
        num_item_ids=config["num_item_ids"], model_dim=config["model_dim"],
        dilations=config["dilations"], kernel_size=config["kernel_size"],
        causal=config["causal"], patch=config["patch"],
        patch_bottleneck=config["patch_bottleneck"], task_kind=config["task_kind"],
        num_classes=config.get("num_classes", 0), dropout_rate=config["dropout_rate"])
    return model.build_all(sample_items)


def load_task(output_dir, sample_items):
    """The fine-tuned ``TaskModel`` of ``output_dir``: shared backbone + the task's variables.

    Args:
        output_dir: a folder written by ``main/finetune.py``.
        sample_items: a small tf.RaggedTensor of item ids to create the variables with.

    Returns:
        (model, config).
    """
    config = read_task_config(output_dir)
    model = build_task_model(config, sample_items)
    if starts_from_pretrained(config["method"]):
        restore_backbone(model.encoder, config["pretrained_checkpoint"], config)
    checkpoint = tf.train.Checkpoint(params=_indexed(model, config["saved_variable_indices"]))
    try:
        checkpoint.read(os.path.join(output_dir, PARAMS_PREFIX)).assert_consumed()
    except (AssertionError, tf.errors.OpError) as error:
        raise UserInputError(
            f"{output_dir}: its task parameters do not match the task model it describes "
            f"({str(error).splitlines()[0]})") from None
    return model, config
