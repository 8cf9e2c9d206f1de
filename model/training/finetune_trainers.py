"""Fine-tuning steps of a ``TaskModel``: classification and item recommendation.

Both train only the variables their method chose (``model/finetune/methods.py``);
the loss is summed over the replica's users and divided by the global count.
"""

import keras
import tensorflow as tf

from data_loader.task_dataset import ITEMS, LABEL, NEGATIVES, POSITIVE
from model.training.distributed_trainer import DistributedTrainer, global_count


class ClassificationTrainer(DistributedTrainer):
    """Cross-entropy of the head's class logits at the user's CLS vector."""

    def replica_loss(self, batch):
        labels = batch[LABEL]
        total = global_count(tf.shape(labels)[0])
        users = self.model(self.model.inputs_for(batch[ITEMS]), training=True)
        logits = self.model.class_logits(users, training=True)
        losses = keras.losses.sparse_categorical_crossentropy(
            labels, tf.cast(logits, tf.float32), from_logits=True)
        return tf.reduce_sum(losses) / total, {}


class RecommendationTrainer(DistributedTrainer):
    """PeterRec's recommendation loss: -log s(u.e+) - sum log(1 - s(u.e-)) over sampled negatives."""

    def replica_loss(self, batch):
        positive = batch[POSITIVE]
        total = global_count(tf.shape(positive)[0])
        users = self.model(self.model.inputs_for(batch[ITEMS]), training=True)
        candidates = tf.concat([positive[:, None], batch[NEGATIVES]], axis=1)
        scores = tf.cast(self.model.head(users, candidates), tf.float32)
        labels = tf.concat([tf.ones_like(scores[:, :1]), tf.zeros_like(scores[:, 1:])], axis=1)
        losses = tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=scores), axis=1)
        return tf.reduce_sum(losses) / total, {}
