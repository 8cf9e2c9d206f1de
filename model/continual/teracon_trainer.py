"""The training step of a TERACON task: annealed mask scale, the task's loss, knowledge retention.

Within each epoch the masks' scale anneals from 1/s_max to s_max (TERACON's
annealing, ``../shared/SYSTEMS.md``):

    s = (s_max - 1/s_max) * b / B + 1/s_max     (b: the step within the epoch, B: steps per epoch)

so early steps see soft masks near 0.5 and late ones near-binary masks; the
model is validated and served at s_max. The step's loss is the new task's
own (``Task.example_losses``, run as the new task at s) plus
``retention_weight`` times the knowledge-retention term
(``knowledge_retention.py``) when there are earlier tasks, plus
``replay_weight`` times task 1's own next-item loss on the batch
(``first_task_replay.py``, an option beyond the paper) when it is on.
"""

import tensorflow as tf

from data_loader.task_dataset import ITEMS
from model.finetune.task_trainer import TaskTrainer
from model.layers.task_embedding_mask_adapter import running_as
from model.training.distributed_trainer import global_count


def annealed_scale(step, steps_per_epoch, s_max):
    """s of optimizer step ``step`` (0-based, counted from the phase's start): float32 scalar."""
    within = tf.cast(tf.math.floormod(step, steps_per_epoch), tf.float32)
    return (s_max - 1.0 / s_max) * within / float(steps_per_epoch) + 1.0 / s_max


class TeraconTrainer(TaskTrainer):
    """Trains a TERACON task model.

    Args:
        model, task, method, optimizer, strategy, max_grad_norm, variables: as ``TaskTrainer``.
        task_index: the new task's 1-based index.
        steps_per_epoch: steps of one epoch (the annealing period).
        s_max: the largest mask scale.
        retention: a ``KnowledgeRetention`` of the earlier tasks, or None (task 1, or
            ``retention_weight`` 0).
        retention_weight: alpha, the weight of the retention term.
        retention_at_served_scale: compare the old tasks at s_max, the scale they
            are served at, rather than at the step's annealed scale (the paper's);
            task 1's replay runs at the same scale.
        replay: a ``FirstTaskReplay``, or None (the paper).
        replay_weight: the weight of the replay term.
    """

    def __init__(self, model, task, method, optimizer, strategy, max_grad_norm, variables, *,
                 task_index, steps_per_epoch, s_max, retention=None, retention_weight=0.0,
                 retention_at_served_scale=False, replay=None, replay_weight=0.0):
        self.task_index = int(task_index)
        self.steps_per_epoch = int(steps_per_epoch)
        self.s_max = float(s_max)
        self.retention = retention
        self.retention_weight = float(retention_weight)
        self.retention_at_served_scale = bool(retention_at_served_scale)
        self.replay = replay
        self.replay_weight = float(replay_weight)
        super().__init__(model, task, method, optimizer, strategy, max_grad_norm, variables)

    def replica_loss(self, batch):
        scale = annealed_scale(self.optimizer.iterations, self.steps_per_epoch, self.s_max)
        with running_as(self.model.encoder, self.task_index, scale):
            losses = self.task.example_losses(self.model, batch)
        loss = tf.reduce_sum(losses) / global_count(tf.shape(losses)[0])
        old_scale = tf.constant(self.s_max) if self.retention_at_served_scale else scale
        # Each replica's terms are its own batch share's means: the replicas' sum is their mean.
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        terms = {}
        if self.retention is not None:
            retained, _ = self.retention.loss(batch[ITEMS], old_scale)
            terms["retention"] = self.retention_weight * retained / replicas
        if self.replay is not None:
            replayed = self.replay.loss(batch[ITEMS], old_scale)
            terms["first_task_replay"] = self.replay_weight * replayed / replicas
        return loss + sum(terms.values()), terms
