"""Classification of any label column (gender, age, occupation, a demo trait...).

Users present in both the sequence table and the label table, with a known
label, take part; class indices follow the sorted label values. The loss is
cross-entropy of the head's logits at the user vector; the metrics are
accuracy, macro-F1 and AUC (``evaluation.probes.classification_metrics``),
the headline AUC for two classes and accuracy otherwise.
"""

import keras
import numpy as np
import tensorflow as tf

from data_loader.task_dataset import ITEMS, LABEL, classification_dataset
from evaluation import probes
from model.tasks.heads import ClassificationHead
from model.tasks.task import Task, TaskSplit, validation_rows
from model.tasks.user_vectors import task_user_vectors
from util.errors import UserInputError


class ClassificationTask(Task):
    """Predicts label column ``name`` of a label table.

    Args:
        name: the label column.
        class_values: [num_classes] the label each class index stands for.
        train, validation, test: ``TaskSplit``s with class indices.
    """

    kind = "classification"

    def __init__(self, name, class_values, train, validation, test):
        super().__init__(name, train, validation, test)
        self.class_values = list(class_values)

    @classmethod
    def from_labels(cls, sequences, name, labels, split_column, validation_fraction, seed):
        """The task of column ``name`` of ``labels`` (a ``data_loader.labels.LabelTable``)."""
        values, present = labels.column(name)
        known = np.isin(sequences.ids, labels.ids)
        if not known.any():
            raise UserInputError(
                f"--labels {labels.source}: none of its user ids is a user of the sequence table")
        rows_in_labels = probes.rows_of(labels.ids, sequences.ids[known])
        candidate_rows = np.flatnonzero(known)
        keep = present[rows_in_labels]
        rows, values = candidate_rows[keep], values[rows_in_labels][keep]
        is_test = test_mask(sequences.ids[rows], labels, split_column, f"--labels {labels.source}")
        train, test = probes.split_task_users(np.ones(len(rows), dtype=bool), is_test, task=name,
                                              source=labels.source)
        class_values, class_index = np.unique(values, return_inverse=True)
        if len(np.unique(class_index[train])) < 2:
            raise UserInputError(
                f"--task={name}: the train users of {labels.source} have one class only")
        train, validation = validation_rows(train, validation_fraction, seed)

        def split(part):
            return TaskSplit(sequences.take(rows[part]), class_index[part])

        return cls(name, class_values.tolist(), split(train), split(validation), split(test))

    @property
    def headline(self):
        return probes.headline_metric(len(self.class_values))

    def description_entries(self):
        return dict(super().description_entries(), class_values=self.class_values,
                    num_classes=len(self.class_values))

    @classmethod
    def head_from_description(cls, description, dim):
        return ClassificationHead(description["num_classes"],
                                  dropout_rate=description["dropout_rate"], name="head")

    def example_losses(self, model, batch):
        users = model(model.inputs_for(batch[ITEMS]), training=True)
        logits = model.head(users, training=True)
        return keras.losses.sparse_categorical_crossentropy(
            batch[LABEL], tf.cast(logits, tf.float32), from_logits=True)

    def training_dataset(self, batch_size, seed, settings):
        return classification_dataset(self.train.sequences.items, self.train.labels, batch_size,
                                      shuffle=True, seed=seed, repeat=True)

    def scores(self, model, split):
        vectors = task_user_vectors(model, split.sequences.items)
        logits = model.head(tf.constant(vectors), training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32)).numpy()
        return probes.classification_metrics(np.asarray(split.labels), probabilities,
                                             np.arange(len(self.class_values)))

    @classmethod
    def head_outputs(cls, model, head, items, training=False):
        users = model(model.inputs_for(items), training=training)
        return tf.cast(head(users, training=training), tf.float32)

    @classmethod
    def predictions(cls, model, items, vectors, top_k):
        logits = model.head(tf.constant(vectors), training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32)).numpy()
        classes = np.asarray(model.description["class_values"])
        return {"probabilities": probabilities,
                "prediction": classes[np.argmax(probabilities, axis=1)]}


def test_mask(ids, labels, split_column, source):
    """Test users among ``ids``: canonical (``user_id % 5 == 0``) or a split column of ``labels``."""
    if split_column is None:
        return probes.canonical_test_mask(ids, source)
    values, present = labels.column(split_column)
    rows = probes.rows_of(labels.ids, ids)
    return probes.column_test_mask(values[rows], present[rows], labels.source, split_column)
