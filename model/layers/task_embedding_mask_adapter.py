"""TERACON's soft masks on a residual block's activations, generated from per-task embeddings.

TERACON (Kim et al., KDD 2023) masks the output of each ReLU of a NextItNet
block channel by channel, o_u = ReLU(LN_u(conv_u(x))) * m_u^t (u = 1, 2),
and keeps every parameter trainable for every task. The masks come from a
task-embedding table per masked layer, one row of ``channels`` numbers per
task, initialised U(0, 2) and clamped to +-6 (``../shared/SYSTEMS.md``):

* with one task in the model, m^1 = sigmoid(s e_1);
* with n >= 2 tasks, every task's mask is relation-aware: for task t the
  paper stacks Z = [e_t; e_j; -e_j for j != t] and maps its 2n - 1 rows to
  one with a linear layer of its own (the same for every channel):
  m^t = sigmoid(s * Linear_t(tanh(s Z))).

Here Linear_t is one ``relation`` table per layer, [n targets, n sources, 2]:
entry [t, j, 0] weighs tanh(s e_j) (the self row when j = t), entry
[t, j, 1] weighs tanh(-s e_j) for j != t; the n entries [t, t, 1] have no row
of Z and stay 0 (they take no part in the product). With one bias per task
that is the paper's n (2n - 1) + n numbers per layer, plus those n zeros.

``s`` is the annealing scale: training anneals it within each epoch, serving
uses ``s_max`` (``model/continual/teracon_trainer.py``).

Growing from n to n + 1 tasks (``load_tables``) keeps every learned number
and gives the old tasks' relation rows zero weights on the new task's
embedding, so the old tasks' masks are exactly what they were when the new
task starts; the original code re-initialises every Linear_t instead, which
changes every old mask at once and leaves all of the repair to the
knowledge-retention loss. The first task's relation row is new when task 2
arrives (a one-task model has no relation layer), as in the original.

Which task the block runs as is a variable (``task``, 1-based), as in
``KernelMaskAdapter``, so a traced function follows it; inside one training
step ``running_as`` runs the same model as several tasks at an annealed
scale (the knowledge-retention loss reads every old task's head).
"""

import contextlib

import keras
import numpy as np
from keras import ops

from model.layers.block_adapter import BlockAdapter

UNITS = (0, 1)
EMBEDDING_INIT_RANGE = (0.0, 2.0)
EMBEDDING_LIMIT = 6.0
RELATION_INIT_STDDEV = 0.01
RELATION_INIT_BIAS = 0.1
DEFAULT_S_MAX = 50.0


@keras.saving.register_keras_serializable(package="uur")
class ClipValues(keras.constraints.Constraint):
    """Clamps a weight to [-limit, limit] after every optimizer step (TERACON's task embeddings)."""

    def __init__(self, limit):
        self.limit = float(limit)

    def __call__(self, weight):
        return ops.clip(weight, -self.limit, self.limit)

    def get_config(self):
        return {"limit": self.limit}


def task_table_parameters(num_tasks, channels):
    """Numbers one adapter stores for ``num_tasks`` tasks: embeddings, relation tables, biases."""
    per_unit = num_tasks * channels + 2 * num_tasks * num_tasks + num_tasks
    return len(UNITS) * per_unit


@keras.saving.register_keras_serializable(package="uur")
class TaskEmbeddingMaskAdapter(BlockAdapter):
    """Per-task soft masks after each of a block's two ReLUs.

    Example:

    ```python
    adapter = TaskEmbeddingMaskAdapter(num_tasks=3, name="adapter")
    block = DilatedResidualBlock(channels=64, dilation=2, adapter=adapter)
    block(hidden)                 # builds the tables; runs as task 3 at s_max
    adapter.activate(1)           # serve task 1
    with running_as(encoder, 2, scale):   # inside a training step: task 2 at scale s
        ...
    ```

    Args:
        num_tasks: tasks the model holds (rows of each table), >= 1.
        s_max: the scale masks are served at (and annealed to in training).
    """

    def __init__(self, num_tasks, s_max=DEFAULT_S_MAX, **kwargs):
        super().__init__(**kwargs)
        if int(num_tasks) < 1:
            raise ValueError(f"`num_tasks` should be at least 1. Received: num_tasks={num_tasks}.")
        if float(s_max) <= 0:
            raise ValueError(f"`s_max` should be positive. Received: s_max={s_max}.")
        self.num_tasks = int(num_tasks)
        self.s_max = float(s_max)
        # (task, scale) while ``running_as`` holds; None: the ``task`` variable at s_max.
        self._running_as = None

    def build_for_block(self, channels, kernel_shape):
        self.channels = int(channels)
        count = self.num_tasks
        self.embeddings = self.add_weight(
            shape=(count, len(UNITS), self.channels), name="task_embeddings",
            initializer=keras.initializers.RandomUniform(*EMBEDDING_INIT_RANGE),
            constraint=ClipValues(EMBEDDING_LIMIT))
        self.relation = self.add_weight(
            shape=(count, len(UNITS), count, 2), name="relation",
            initializer=keras.initializers.RandomNormal(stddev=RELATION_INIT_STDDEV))
        self.relation_bias = self.add_weight(
            shape=(count, len(UNITS)), name="relation_bias",
            initializer=keras.initializers.Constant(RELATION_INIT_BIAS))
        self.relation.assign(self.relation * _has_z_row(count))
        self.task = self.add_weight(shape=(), dtype="int32", trainable=False, name="task",
                                    initializer=keras.initializers.Constant(count))
        self.built = True

    def build(self, input_shape=None):
        # Built by the block (``build_for_block``), which knows the channel width.
        pass

    def activate(self, task):
        """Serves task ``task`` (1-based) at ``s_max``."""
        self.task.assign(int(task))

    def trained_variables(self):
        """What trains: the embeddings, and the relation tables once there are two tasks to relate."""
        if self.num_tasks == 1:
            return [self.embeddings]
        return [self.embeddings, self.relation, self.relation_bias]

    def tables(self):
        """[embeddings, relation, relation_bias] as numpy arrays (what a continual folder stores)."""
        return [np.array(v.numpy()) for v in (self.embeddings, self.relation, self.relation_bias)]

    def load_tables(self, tables):
        """Loads ``tables`` of n <= ``num_tasks`` tasks; the rows of tasks n+1.. keep their fresh init.

        The old tasks' relation weights on the new tasks' embeddings are set to
        0, so every old mask is unchanged. A one-task model has no relation
        layer: its relation table is not loaded and task 1's row stays fresh.
        """
        embeddings, relation, bias = (np.asarray(t, dtype=np.float32) for t in tables)
        stored = embeddings.shape[0]
        if stored > self.num_tasks or embeddings.shape[1:] != (len(UNITS), self.channels):
            raise ValueError(f"task tables of {stored} task(s) and shape {embeddings.shape} "
                             f"do not fit an adapter of {self.num_tasks} task(s) and "
                             f"{self.channels} channels")
        values = self.embeddings.numpy()
        values[:stored] = embeddings
        self.embeddings.assign(values)
        if stored == self.num_tasks:
            self.relation.assign(relation)
            self.relation_bias.assign(bias)
        elif stored > 1:
            grown = self.relation.numpy()
            grown[:stored, :, :stored] = relation
            grown[:stored, :, stored:] = 0.0
            self.relation.assign(grown)
            biases = self.relation_bias.numpy()
            biases[:stored] = bias
            self.relation_bias.assign(biases)

    def task_masks(self, task, scale):
        """The masks of task ``task`` (1-based, int or scalar tensor) at ``scale``: [2 units, channels]."""
        every = self.all_masks(scale)
        return ops.take(every, ops.convert_to_tensor(task) - 1, axis=0)

    def all_masks(self, scale):
        """Every task's masks at ``scale``: [num_tasks, 2 units, channels], in (0, 1)."""
        return soft_masks(self.embeddings, self.relation, self.relation_bias, scale)

    def after_activation(self, unit, hidden):
        if self._running_as is None:
            task, scale = self.task, self.s_max
        else:
            task, scale = self._running_as
        masks = self.task_masks(task, scale)
        return hidden * ops.cast(masks[unit], hidden.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"num_tasks": self.num_tasks, "s_max": self.s_max})
        return config


def soft_masks(embeddings, relation, relation_bias, scale):
    """Every task's masks from its tables: [n, units, C], [n, units, n, 2], [n, units] -> [n, units, C].

    One task: sigmoid(s e). More: sigmoid(s (sum_j (R[t,j,0] - R[t,j,1]) tanh(s e_j) + b_t)),
    the paper's Linear_t over Z = [e_t; e_j; -e_j for j != t] (tanh is odd, so
    the weight of the row -e_j enters with a minus sign; R[t,t,1] weighs no row).
    """
    embeddings = ops.convert_to_tensor(embeddings)
    scale = ops.cast(scale, embeddings.dtype)
    count = int(embeddings.shape[0])
    if count == 1:
        return ops.sigmoid(scale * embeddings)
    squashed = ops.tanh(scale * embeddings)
    relation = ops.convert_to_tensor(relation) * _has_z_row(count)
    weights = relation[..., 0] - relation[..., 1]  # [t, units, j]
    combined = ops.einsum("tuj,juc->tuc", weights, squashed)
    return ops.sigmoid(scale * (combined + ops.convert_to_tensor(relation_bias)[..., None]))


def _has_z_row(num_tasks):
    """float32 [n, 1, n, 2]: 1 where relation[t, :, j, sign] weighs a row of Z, 0 at [t, :, t, 1]."""
    present = np.ones((num_tasks, 1, num_tasks, 2), dtype=np.float32)
    present[np.arange(num_tasks), 0, np.arange(num_tasks), 1] = 0.0
    return present


def mask_adapters(encoder):
    """The ``TaskEmbeddingMaskAdapter`` of every block, in block order; [] for other methods."""
    return [block.adapter for block in encoder.blocks
            if isinstance(block.adapter, TaskEmbeddingMaskAdapter)]


@contextlib.contextmanager
def running_as(encoder, task, scale):
    """Runs every block of ``encoder`` as task ``task`` at mask scale ``scale`` while it holds.

    Read when a layer is called (or traced), so inside one traced training
    step the same model can run as several tasks at an annealed scale.
    """
    adapters = mask_adapters(encoder)
    previous = [adapter._running_as for adapter in adapters]
    for adapter in adapters:
        adapter._running_as = (task, scale)
    try:
        yield
    finally:
        for adapter, value in zip(adapters, previous):
            adapter._running_as = value
