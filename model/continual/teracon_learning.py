"""How TERACON learns one task into a shared backbone: every weight trains, old outputs are retained.

Following the official code (``../shared/SYSTEMS.md``, TERACON):

* task 1 (next-item prediction, the pretraining objective): the pretrained
  model trains through task 1's masks, m = sigmoid(s e_1), for
  ``--first_task_epochs``;
* task t >= 2: the model grows a row of task embeddings per masked layer
  and a relation row per layer (``TaskEmbeddingMaskAdapter.load_tables``);
  the backbone, every task's tables, the new head and every old head train
  for ``--epochs + --retrain_epochs`` epochs (the cost of a Conure task) on
  the new task's loss plus ``retention_weight`` times the
  knowledge-retention term against a frozen teacher, the folder before the
  task (``knowledge_retention.py``); with ``first_task_replay_weight`` > 0
  also task 1's own next-item loss on the task's histories
  (``first_task_replay.py``, beyond the paper).

The scale of the masks anneals within each epoch (``teracon_trainer.py``);
the best epoch by the new task's validation headline is kept, old heads
included.
"""

import functools
import time

import numpy as np

from model.continual.continual_state import activate, task_model
from model.continual.first_task_replay import FirstTaskReplay
from model.continual.knowledge_retention import KnowledgeRetention, OldTask
from model.continual.task_phases import train_phase
from model.continual.teracon_trainer import TeraconTrainer
from model.tasks.next_item import NextItemTask
from model.tasks.registry import task_class
from util.errors import UserInputError


def build_head(state, index, dim, trainable):
    """Task ``index``'s head of ``state`` as a built layer holding its stored values."""
    description = state.description(index)
    head = task_class(description, "continual.json").head_from_description(description, dim)
    head.build((None, dim))
    for variable, value in zip(head.weights, state.heads[index], strict=True):
        variable.assign(value)
    head.trainable = trainable
    return head


def old_tasks(state, index, dim):
    """The ``OldTask`` of every task before ``index``: a trainable and a frozen copy of its head."""
    return [OldTask(index=old, kind=task_class(state.description(old), "continual.json"),
                    student_head=build_head(state, old, dim, trainable=True),
                    teacher_head=build_head(state, old, dim, trainable=False))
            for old in range(1, index)]


def learn_task(model, state, task, method, description, strategy, settings, log=print):
    """Learns task ``description["task_index"]`` into ``model``, keeping every earlier task's outputs.

    Args:
        model: the task's ``TaskModel`` (built in ``strategy.scope()`` from ``state``,
            with a row of task tables for the new task).
        state: the folder's ``ContinualState`` before the task (the teacher and the old heads).
        task: the ``Task``.
        method: the ``Teracon`` method.
        description: the task description (``task_index``, ``s_max``,
            ``retention_weight``, ``retention_top_k``, ..., ``first_task_replay_weight``).
        strategy: the ``tf.distribute.Strategy``.
        settings: ``epochs`` + ``retrain_epochs`` (the epochs of the task),
            ``learning_rate``, ``batch_size``, ``seed``, ``max_grad_norm``,
            ``progress_seconds``, ``first_task_num_sampled`` (T1's sampled-softmax
            negatives, for the replay), and what the task reads.
        log: called with progress lines.

    Returns:
        (report, heads): the phase's best epoch, validation and seconds; the
        new values of every earlier task's head.
    """
    started = time.perf_counter()
    index = description["task_index"]
    weight = float(description["retention_weight"])
    replay_weight = float(description.get("first_task_replay_weight", 0.0))
    activate(model.encoder, index, include_free=False)
    earlier, retention, replay = [], None, None
    if index > 1 and weight > 0:
        with strategy.scope():
            teacher = task_model(state, index - 1, task.train.sequences.items[:2])
            teacher.trainable = False
            earlier = old_tasks(state, index, model.dim)
        retention = KnowledgeRetention(model, teacher, earlier, index,
                                       description["retention_top_k"],
                                       description.get("retention_min_share", 0.0),
                                       description.get("retention_positions", "newest"))
        log(f"knowledge retention of tasks 1..{index - 1} (weight {weight}, item heads matched "
            f"on the teacher's top {description['retention_top_k'] or 'every'} items, at the "
            f"{description.get('retention_scale', 'annealed')} mask scale, on at least "
            f"{description.get('retention_min_share', 0.0):.0%} of each batch; T1 at "
            f"{'every position' if description.get('retention_positions') == 'all' else 'the newest item'})")
    if index > 1 and replay_weight > 0:
        if not earlier:  # no retention: of the old heads, only task 1's trains
            with strategy.scope():
                earlier = old_tasks(state, 2, model.dim)
        first = earlier[0]
        if first.kind is not NextItemTask:
            raise UserInputError(f"--first_task_replay_weight replays task 1's next-item loss; "
                                 f"task 1 of this folder is {state.description(1)['name']!r}")
        replay = FirstTaskReplay(model, first.student_head, settings.first_task_num_sampled)
        negatives = settings.first_task_num_sampled
        log(f"task 1 replayed on its own next-item loss (weight {replay_weight}, "
            f"{f'{negatives} sampled negatives' if negatives else 'full softmax'})")
    make_trainer = functools.partial(_trainer, model, task, method, strategy, settings, index,
                                     description["s_max"], retention, weight,
                                     description.get("retention_scale", "annealed"), replay,
                                     replay_weight)
    epochs = settings.epochs + settings.retrain_epochs
    phase = "train every weight through the task's masks"
    report = {"train": train_phase(
        model, task, method, description, strategy, settings, epochs, log, phase,
        extra_variables=[v for old in earlier for v in old.student_head.trainable_variables],
        make_trainer=make_trainer)}
    report["seconds"] = time.perf_counter() - started
    heads = {old.index: [np.array(v.numpy()) for v in old.student_head.weights]
             for old in earlier}
    return report, heads


def _trainer(model, task, method, strategy, settings, index, s_max, retention, weight,
             retention_scale, replay, replay_weight, optimizer, variables, steps_per_epoch):
    return TeraconTrainer(model, task, method, optimizer, strategy, settings.max_grad_norm,
                          variables, task_index=index, steps_per_epoch=steps_per_epoch,
                          s_max=s_max, retention=retention, retention_weight=weight,
                          retention_at_served_scale=retention_scale == "served", replay=replay,
                          replay_weight=replay_weight)
