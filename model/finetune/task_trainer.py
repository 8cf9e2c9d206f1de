"""The fine-tuning step of any task with any method, under any ``tf.distribute`` strategy.

The task gives one loss per user (``Task.example_losses``); their sum over
the replica's users is divided by the GLOBAL number of users in the step, and
the method may add its own term (``Method.auxiliary_loss``). Only the
variables the method chose train.
"""

import tensorflow as tf

from model.training.distributed_trainer import DistributedTrainer, global_count


class TaskTrainer(DistributedTrainer):
    """Trains a ``TaskModel`` on ``task`` with ``method``.

    Args:
        model: the built ``TaskModel``, created in ``strategy.scope()``.
        task: the ``Task``.
        method: the ``Method``.
        optimizer, strategy, max_grad_norm, variables: as ``DistributedTrainer``.
    """

    def __init__(self, model, task, method, optimizer, strategy, max_grad_norm, variables):
        self.task = task
        self.method = method
        super().__init__(model, optimizer, strategy, max_grad_norm, variables)

    def replica_loss(self, batch):
        losses = self.task.example_losses(self.model, batch)
        loss = tf.reduce_sum(losses) / global_count(tf.shape(losses)[0])
        extra = self.method.auxiliary_loss(self.model, batch)
        if extra is not None:
            loss = loss + extra
        return loss, {}
