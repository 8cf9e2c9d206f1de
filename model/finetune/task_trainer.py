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


def task_training_dataset(task, strategy, batch_size, seed, settings):
    """The endless distributed dataset of ``task``'s train users and the steps of one epoch.

    Args:
        task: the ``Task``.
        strategy: the ``tf.distribute.Strategy``.
        batch_size: GLOBAL users per step.
        seed: shuffling seed.
        settings: the job's flags (a task reads its own, e.g. ``num_negatives``).
    """
    steps_per_epoch = max(1, -(-len(task.train.sequences) // batch_size))

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(batch_size)
        dataset = task.training_dataset(batch, seed, settings)
        return dataset.shard(context.num_input_pipelines, context.input_pipeline_id)

    return strategy.distribute_datasets_from_function(dataset_fn), steps_per_epoch
