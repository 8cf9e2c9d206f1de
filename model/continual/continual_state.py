"""What a continual model folder holds, in memory: the shared backbone, every kernel's owners, a head per task.

One backbone serves every task: task j's model is the backbone with the
kernel masks of tasks 1..j (Conure) or the task tables of every task
(TERACON) and task j's head (``task_model``). After a task is learned,
``capture`` takes the backbone, owners, task tables and heads back from its
model. Nothing here touches files: ``continual_checkpoint.py`` stores a
state, main/continual.py decides when.

``manifest`` is ``continual.json``: the method, the family's architecture,
where the backbone came from, and one entry per learned task, each with the
task description its ``TaskModel`` is rebuilt from.
"""

import dataclasses

import numpy as np

from model.finetune.task_checkpoint import build_task_model
from model.layers import task_embedding_mask_adapter
from model.layers.kernel_mask_adapter import KernelMaskAdapter


@dataclasses.dataclass
class ContinualState:
    """A continual model, tasks 1..n.

    Attributes:
        manifest: the ``continual.json`` dict (``tasks``: one entry per task, in order).
        backbone: [np.ndarray] values of ``encoder.backbone_variables()``, in that order.
        owners: [np.ndarray int32] per convolution kernel (block by block,
            conv_1 first): 0 = free, t = owned by task t; [] for a method
            without masks (sequential fine-tuning).
        heads: {task_index: [np.ndarray]} values of each task head's variables.
        task_tables: [np.ndarray] per block, its adapter's embeddings,
            relation table and relation biases (TERACON,
            ``TaskEmbeddingMaskAdapter.tables``); [] for other methods.
    """

    manifest: dict
    backbone: list
    owners: list
    heads: dict
    task_tables: list = dataclasses.field(default_factory=list)

    @property
    def tasks(self):
        return self.manifest["tasks"]

    def task_index(self, name):
        """The 1-based index of the learned task called ``name``, or None."""
        for index, entry in enumerate(self.tasks, start=1):
            if entry["name"] == name:
                return index
        return None

    def description(self, task_index):
        return self.tasks[task_index - 1]["description"]


def mask_adapters(encoder):
    """The ``KernelMaskAdapter`` of every block, in block order; [] for a method without masks."""
    return [block.adapter for block in encoder.blocks if isinstance(block.adapter, KernelMaskAdapter)]


def set_owners(encoder, owners):
    """Puts the per-kernel owner arrays (``ContinualState.owners`` order) into the adapters."""
    position = 0
    for adapter in mask_adapters(encoder):
        for unit in (0, 1):
            adapter.set_owner(unit, owners[position])
            position += 1


def get_owners(encoder):
    """The adapters' owner arrays, in ``ContinualState.owners`` order."""
    return [np.array(adapter.owner(unit).numpy(), dtype=np.int32)
            for adapter in mask_adapters(encoder) for unit in (0, 1)]


def activate(encoder, task_index, include_free):
    """Runs every block as task ``task_index``; ``include_free``: free weights train too (Conure)."""
    for adapter in mask_adapters(encoder):
        adapter.activate(task_index, include_free)
    for adapter in task_embedding_mask_adapter.mask_adapters(encoder):
        adapter.activate(task_index)


def get_task_tables(encoder):
    """The TERACON adapters' tables, block by block, in ``ContinualState.task_tables`` order."""
    return [table for adapter in task_embedding_mask_adapter.mask_adapters(encoder)
            for table in adapter.tables()]


def set_task_tables(encoder, tables):
    """Loads ``ContinualState.task_tables`` into the adapters (a model of more tasks grows them)."""
    adapters = task_embedding_mask_adapter.mask_adapters(encoder)
    per_adapter = len(tables) // max(len(adapters), 1)
    for position, adapter in enumerate(adapters):
        adapter.load_tables(tables[position * per_adapter:(position + 1) * per_adapter])


def folder_description(state, task_index, description=None):
    """Task ``task_index``'s description, for a model of every task the folder holds then.

    ``folder_tasks`` is how many tasks the model holds (TERACON's tables have
    a row per task, and every task's mask depends on all of them).
    """
    description = description or state.description(task_index)
    return dict(description, folder_tasks=max(task_index, len(state.tasks)))


def task_model(state, task_index, sample_items, description=None):
    """The model of task ``task_index``: the state's backbone and owners, that task's head if learned.

    Args:
        state: a ``ContinualState``.
        task_index: 1-based; one past the last learned task builds the next
            task's model (pass its ``description``), free weights trainable.
        sample_items: a small ragged batch of item ids to create the variables with.
        description: the task description; None: the learned task's own.

    Returns:
        A built ``TaskModel`` serving task ``task_index`` (build it in the strategy's scope).
    """
    model = build_task_model(folder_description(state, task_index, description), sample_items)
    for variable, value in zip(model.encoder.backbone_variables(), state.backbone, strict=True):
        variable.assign(value)
    set_owners(model.encoder, state.owners)
    if state.task_tables:
        set_task_tables(model.encoder, state.task_tables)
    if task_index in state.heads:
        for variable, value in zip(model.head.weights, state.heads[task_index], strict=True):
            variable.assign(value)
    activate(model.encoder, task_index, include_free=task_index not in state.heads)
    return model


def capture(model, manifest, heads, task_index):
    """A new ``ContinualState``: ``model``'s backbone, owners and task tables, its head as task ``task_index``'s.

    ``heads``: every other task's head values (a method that trains old heads passes their new values).
    """
    heads = dict(heads)
    heads[task_index] = [np.array(v.numpy()) for v in model.head.weights]
    return ContinualState(
        manifest=manifest,
        backbone=[np.array(v.numpy()) for v in model.encoder.backbone_variables()],
        owners=get_owners(model.encoder),
        heads=heads,
        task_tables=get_task_tables(model.encoder))
