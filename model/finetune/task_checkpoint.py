"""Saves a fine-tuned task as ONLY its task-specific variables, and loads it back.

A task folder (``contracts/run_folder.py``) holds ``task.json`` (method,
task, classes, the architecture and where the pretrained backbone is) and
``task-params.*`` (a TF checkpoint of the variables the method trained, keyed
by their position in the model). Loading builds the task model, restores the
shared backbone from the pretrained run, then puts the task's variables on
top: for PeterRec a task costs its patches, LayerNorms and head, not another
copy of the backbone.
"""

import os

import tensorflow as tf

from contracts.run_folder import TASK_FILE, TASK_PARAMS_PREFIX as PARAMS_PREFIX
from model.finetune.backbone import restore_backbone
from model.methods.registry import get_method
from model.tasks.task_model import TaskModel
from util.errors import UserInputError
from util.run_config import read_task_description, write_task_description


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
    wanted = {id(variable) for variable in variables}
    indices = [i for i, variable in enumerate(model.variables) if id(variable) in wanted]
    checkpoint = tf.train.Checkpoint(params=_indexed(model, indices))
    checkpoint.write(os.path.join(output_dir, PARAMS_PREFIX))
    write_task_description(output_dir, dict(
        task_config, saved_variable_indices=indices,
        saved_variables=[model.variables[i].path for i in indices]))


def build_task_model(config, sample_items):
    """A ``TaskModel`` from a task description, variables created with ``sample_items``."""
    return TaskModel(config).build_all(sample_items)


def load_task(output_dir, sample_items):
    """The fine-tuned ``TaskModel`` of ``output_dir``: shared backbone + the task's variables.

    Args:
        output_dir: a folder written by ``main/finetune.py``.
        sample_items: a small tf.RaggedTensor of item ids to create the variables with.

    Returns:
        (model, config).
    """
    config = read_task_description(output_dir)
    model = build_task_model(config, sample_items)
    if get_method(config["method"], f"{os.path.join(output_dir, TASK_FILE)}: method").starts_from_pretrained:
        restore_backbone(model.encoder, config["pretrained_checkpoint"], config)
    checkpoint = tf.train.Checkpoint(params=_indexed(model, config["saved_variable_indices"]))
    try:
        checkpoint.read(os.path.join(output_dir, PARAMS_PREFIX)).assert_consumed()
    except (AssertionError, tf.errors.OpError) as error:
        raise UserInputError(
            f"{output_dir}: its task parameters do not match the task model it describes "
            f"({str(error).splitlines()[0]})") from None
    return model, config
