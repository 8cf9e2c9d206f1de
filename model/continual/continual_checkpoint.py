"""Writes a ``ContinualState``'s tensors into a folder and reads them back.

``backbone.*`` is one TensorFlow checkpoint of the backbone's variables (by
position in ``encoder.backbone_variables()``) and of each kernel's task
masks, one bit per weight and task (``kernel_ownership.pack_owner``), or
of each block's task tables (TERACON: embeddings, relation table, biases);
``head-<task>.*`` holds one task's head. The manifest (``continual.json``)
is written by the caller, last, so a folder with a manifest has every file
it names. Reading uses ``tf.train.load_checkpoint``, which needs no model
built first, and names the damaged file when a read fails.
"""

import os

import numpy as np
import tensorflow as tf

from contracts.run_folder import CONTINUAL_BACKBONE_PREFIX, continual_head_prefix
from model.checkpoint_integrity import READ_ERRORS, damage, tensorflow_warnings_silenced
from model.continual.continual_state import ContinualState
from model.continual.kernel_ownership import pack_owner, unpack_owner
from util.errors import UserInputError

_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def _write(prefix, groups):
    """One checkpoint of ``{group: [np.ndarray]}``, keys ``<group>/v<index>``."""
    with tf.device("/cpu:0"):
        tree = {group: {f"v{index:05d}": tf.Variable(value, trainable=False)
                        for index, value in enumerate(values)}
                for group, values in groups.items()}
        tf.train.Checkpoint(**tree).write(prefix)


def _read(prefix, groups):
    """``{group: [np.ndarray]}`` of a checkpoint ``_write`` wrote, for the groups named."""
    try:
        with tensorflow_warnings_silenced():
            reader = tf.train.load_checkpoint(prefix)
            keys = set(reader.get_variable_to_shape_map())
            result = {}
            for group in groups:
                count = sum(1 for key in keys if key.startswith(f"{group}/"))
                result[group] = [reader.get_tensor(f"{group}/v{index:05d}{_VALUE}")
                                 for index in range(count)]
            return result
    except (*READ_ERRORS, KeyError) as error:
        why = damage(prefix) or str(error).splitlines()[0]
        raise UserInputError(f"checkpoint {prefix} cannot be read: {why}") from None


def write_state(folder, state):
    """Writes the backbone, the packed masks and every head of ``state`` into ``folder``."""
    num_tasks = len(state.tasks)
    _write(os.path.join(folder, CONTINUAL_BACKBONE_PREFIX), {
        "backbone": state.backbone,
        "masks": [pack_owner(owner, num_tasks) for owner in state.owners],
        "task_tables": state.task_tables})
    for task_index, values in state.heads.items():
        _write(continual_head_prefix(folder, task_index), {"head": values})


def read_state(folder, manifest, kernel_shapes):
    """The ``ContinualState`` of ``folder`` whose ``continual.json`` is ``manifest``.

    Args:
        folder: the continual folder.
        manifest: its manifest.
        kernel_shapes: the shape of each convolution kernel, in owner order.

    Raises:
        UserInputError: a checkpoint is damaged or does not fit the manifest.
    """
    prefix = os.path.join(folder, CONTINUAL_BACKBONE_PREFIX)
    stored = _read(prefix, ("backbone", "masks", "task_tables"))
    if len(stored["masks"]) != len(kernel_shapes):
        raise UserInputError(
            f"checkpoint {prefix} holds masks of {len(stored['masks'])} kernels; the manifest's "
            f"architecture has {len(kernel_shapes)}")
    try:
        owners = [unpack_owner(packed, shape)
                  for packed, shape in zip(stored["masks"], kernel_shapes)]
    except ValueError as error:
        raise UserInputError(f"checkpoint {prefix}: {error}") from None
    num_tasks = len(manifest["tasks"])
    if any(owner.max(initial=0) > num_tasks for owner in owners) or any(
            packed.shape[0] != num_tasks for packed in stored["masks"]):
        raise UserInputError(
            f"checkpoint {prefix} holds masks of another number of tasks than the "
            f"{num_tasks} of its manifest")
    # Every third table is a block's task embeddings: [tasks, 2, channels].
    if any(table.shape[0] != num_tasks for table in stored["task_tables"][::3]):
        raise UserInputError(
            f"checkpoint {prefix} holds task tables of another number of tasks than the "
            f"{num_tasks} of its manifest")
    heads = {index: _read(continual_head_prefix(folder, index), ("head",))["head"]
             for index in range(1, num_tasks + 1)}
    return ContinualState(manifest=manifest, backbone=stored["backbone"],
                          owners=[np.asarray(owner, dtype=np.int32) for owner in owners],
                          heads=heads, task_tables=stored["task_tables"])
