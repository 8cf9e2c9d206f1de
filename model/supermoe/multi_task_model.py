"""SUPERMOE: one mixture-of-experts encoder, a head per task, and a task indicator.

SUPERMOE (arXiv 2207.04648) trains one sparse-MoE transformer user model on
several tasks at once "with task indicators", against the seesaw effect
(improving one task hurts another). Only its abstract is public, so exactly
how the indicator acts is ours to choose; with ``task_indicator=True``
each task t has a learned embedding e_t [dim] that

* conditions every router: ``logits = x W_r + e_t W_c`` for all of the
  task's tokens (``SparseMixtureOfExperts``'s context), so tasks can settle
  on different experts where that helps them, and share where it does not;
* marks where the task reads its user: a profile task reads the state at a
  CLS token appended to the history (PeterRec's reading, ``append_cls``),
  whose input embedding gets ``+ e_t``, so the reading position itself
  knows which task asks (the head of task t sees a task-specific vector
  even where routing is shared).

Next-item prediction (``task_kind`` next_item) trains at every position of
the history, as NextItNet does, with its own embedding as router context;
its "user vector" is the state at the newest item.

With ``task_indicator=False`` no embedding exists: every task runs the same
routers on the same inputs (one plain CLS token) and differs only by its
head, the "MoE without task indicators" ablation. With one expert the
encoder is a dense transformer and the model a multi-task shared-bottom
network. ``per_task_routers=True`` gives every task its own router in each
block over the shared experts: MMoE's per-task gates (Ma et al., KDD
2018; soft over all experts when k = E).

Each task is seen through a ``TaskView`` (``task_view(index)``), which looks
to ``model/tasks`` like a ``TaskModel`` (``encoder``, ``head``,
``inputs_for``, called for user vectors), so next-item and classification
tasks train and score with their own unchanged code.
"""

import functools
import threading

import keras
import tensorflow as tf

from model.nextitnet.item_softmax import ItemSoftmax
from model.nextitnet.sequence_inputs import append_cls
from model.supermoe.encoder import SupermoeEncoder
from model.tasks.heads import ClassificationHead

NEXT_ITEM_KIND = "next_item"
CLASSIFICATION_KIND = "classification"


class TaskView:
    """Task ``index`` of a ``SupermoeModel``, with the interface of a ``TaskModel``.

    The routing statistics of every training call made through the view are
    appended to ``statistics`` (the trainer clears and reads them within one
    traced step); inference calls keep none. The list is per thread:
    MirroredStrategy runs each replica's step in its own thread, and a list
    shared between them would hand one replica's router losses to another
    (whose tape cannot differentiate them).
    """

    def __init__(self, model, index):
        self.model = model
        self.index = int(index)
        self.description = dict(model.tasks[index])
        self.name = self.description["name"]
        self.head = model.heads[index]
        self.dim = model.dim
        self._per_thread = threading.local()
        self.inputs_for = functools.partial(append_cls, causal=True)

    @property
    def statistics(self):
        """The routing statistics of this thread's (this replica's) training calls, a list."""
        if not hasattr(self._per_thread, "statistics"):
            self._per_thread.statistics = []
        return self._per_thread.statistics

    def encoder(self, item_ids, training=False):
        """[batch, length] item ids -> [batch, length, dim] states, run as this task."""
        hidden, statistics = self.model.encode(item_ids, self.index, training=training)
        if training:
            self.statistics.append(statistics)
        return hidden

    def __call__(self, inputs, training=False):
        """[batch, length] inputs from ``inputs_for`` -> [batch, dim] user vectors (the CLS state)."""
        return self.encoder(inputs, training=training)[:, -1, :]


@keras.saving.register_keras_serializable(package="uur")
class SupermoeModel(keras.Model):
    """The multi-task SUPERMOE model (see the module docstring).

    Example:

    ```python
    model = SupermoeModel(num_item_ids=3400, dim=64, num_blocks=2, num_heads=2, num_experts=8,
                          experts_per_token=2, tasks=[
                              {"name": "next_item", "task_kind": "next_item"},
                              {"name": "gender", "task_kind": "classification", "num_classes": 2}])
    gender = model.task_view(1)
    logits = gender.head(gender(gender.inputs_for(items)))  # [batch, 2]
    ```

    Args:
        num_item_ids, dim, num_blocks, num_heads, num_experts, experts_per_token,
            hidden_dim, capacity_factor, dispatch, max_length, dropout_rate:
            the encoder's (``SupermoeEncoder``; always causal).
        tasks: one dict per task: ``name``, ``task_kind`` (``next_item`` or
            ``classification``) and, for classification, ``num_classes``.
        task_indicator: learn a task embedding that conditions the routers and
            the reading position (True), or none (False).
        per_task_routers: one router per task in every block (MMoE-style gates)
            instead of one shared router.
    """

    def __init__(self, num_item_ids, dim, num_blocks, num_heads, num_experts, experts_per_token,
                 tasks, hidden_dim=None, capacity_factor=1.25, dispatch="sparse", max_length=200,
                 task_indicator=True, per_task_routers=False, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        tasks = [dict(task) for task in tasks]
        if not tasks:
            raise ValueError("`tasks` should name at least one task. Received: tasks=[].")
        kinds = {task.get("task_kind") for task in tasks}
        if not kinds <= {NEXT_ITEM_KIND, CLASSIFICATION_KIND}:
            raise ValueError(f"every task's `task_kind` should be {NEXT_ITEM_KIND!r} or "
                             f"{CLASSIFICATION_KIND!r}. Received: {sorted(map(str, kinds))}.")
        self.tasks = tasks
        self.num_item_ids = int(num_item_ids)
        self.dim = int(dim)
        self.task_indicator = bool(task_indicator)
        self.per_task_routers = bool(per_task_routers)
        self.encoder_settings = {
            "num_item_ids": self.num_item_ids, "dim": self.dim, "num_blocks": int(num_blocks),
            "num_heads": int(num_heads), "num_experts": int(num_experts),
            "experts_per_token": int(experts_per_token), "hidden_dim": hidden_dim,
            "capacity_factor": float(capacity_factor), "dispatch": dispatch,
            "max_length": int(max_length), "dropout_rate": float(dropout_rate)}
        self.encoder = SupermoeEncoder(**self.encoder_settings, causal=True,
                                       context_dim=self.dim if self.task_indicator else 0,
                                       num_routers=len(tasks) if self.per_task_routers else 1,
                                       name="encoder")
        self.task_embedding = (keras.layers.Embedding(len(tasks), self.dim, name="task_embedding")
                               if self.task_indicator else None)
        # One attribute per head, so TF checkpoints see each.
        for index, task in enumerate(tasks):
            setattr(self, f"head_{index}", (
                ItemSoftmax(self.num_item_ids, name=f"head_{index}")
                if task["task_kind"] == NEXT_ITEM_KIND else
                ClassificationHead(int(task["num_classes"]), dropout_rate=float(dropout_rate),
                                   name=f"head_{index}")))
        self._views = [TaskView(self, index) for index in range(len(tasks))]

    @property
    def heads(self):
        """The heads, in the order of ``tasks``."""
        return [getattr(self, f"head_{index}") for index in range(len(self.tasks))]

    @property
    def task_names(self):
        return [task["name"] for task in self.tasks]

    def task_view(self, index):
        """Task ``index`` as a ``TaskView`` (one per task, kept with the model)."""
        return self._views[index]

    def encode(self, item_ids, task_index, training=False):
        """Runs the encoder as task ``task_index``; returns (states [B, L, dim], routing statistics)."""
        router = int(task_index) if self.per_task_routers else 0
        if self.task_embedding is None:
            return self.encoder(item_ids, router=router, training=training)
        batch = tf.shape(item_ids)[0]
        indicator = self.task_embedding(tf.fill([batch], int(task_index)))
        return self.encoder(item_ids, context=indicator, cls_offset=indicator, router=router,
                            training=training)

    def build(self, input_shape=None):
        self.encoder.build((None, None))
        if self.task_embedding is not None:
            self.task_embedding.build((None,))
        for head in self.heads:
            head.build((None, self.dim))

    def call(self, item_ids, training=False):
        """States of ``item_ids`` [batch, length] run as the first task: [batch, length, dim]."""
        return self.encode(item_ids, 0, training=training)[0]

    def get_config(self):
        config = super().get_config()
        settings = dict(self.encoder_settings, hidden_dim=self.encoder.hidden_dim)
        config.update(settings, tasks=self.tasks, task_indicator=self.task_indicator,
                      per_task_routers=self.per_task_routers)
        return config
