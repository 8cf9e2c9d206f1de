"""What a downstream task is: its users, head, loss and metrics, usable with any method.

A ``Task`` owns

* its users, split into ``train`` / ``validation`` / ``test`` (``TaskSplit``);
  test users come from the same split as ``main/evaluate.py`` and validation
  users (which choose the best epoch) are a seeded share of the train users;
* ``build_head(description, dim)``: its head on top of a user vector;
* ``example_losses(model, batch)``: one loss per user of a training batch;
* ``training_dataset(batch_size, seed, settings)``: endless batches of its train users;
* ``scores(model, split)``: its headline and secondary metrics on a split;
* ``description_entries()``: what task.json records of it;
* ``serving_vectors(model, items)`` and ``predictions(model, vectors)``
  (class methods): what serving a learned task writes per user;
* ``head_outputs(model, head, items)`` (class method): a head's scores of
  every class or item, the outputs TERACON's knowledge retention preserves.

Heads are rebuilt from task.json alone (``head_from_description``), so a saved
task loads without its data.
"""

import abc
import dataclasses

import numpy as np

from model.tasks.user_vectors import task_user_vectors
from util.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class TaskSplit:
    """One part of a task's users: sequences and (classification) class indices [num_users]."""

    sequences: object  # data_loader.user_sequences.UserSequences
    labels: np.ndarray | None = None


def validation_rows(train, fraction, seed):
    """Splits train rows into (train, validation), ``fraction`` of them (at least 1) validating."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train)
    count = max(1, int(round(len(train) * fraction)))
    if count >= len(train):
        raise UserInputError(
            f"only {len(train)} train users: too few to hold out --validation_fraction={fraction}")
    return np.sort(shuffled[count:]), np.sort(shuffled[:count])


class Task(abc.ABC):
    """A downstream task with its three splits of users."""

    kind = ""

    def __init__(self, name, train, validation, test):
        self.name = name
        self.train = train
        self.validation = validation
        self.test = test

    @property
    @abc.abstractmethod
    def headline(self):
        """The metric validation maximises (a key of ``scores``)."""

    def description_entries(self):
        """task.json entries of this task."""
        return {"task": self.name, "task_kind": self.kind}

    @classmethod
    @abc.abstractmethod
    def head_from_description(cls, description, dim):
        """The task's head (a Keras layer) from task.json, on user vectors of width ``dim``."""

    @abc.abstractmethod
    def example_losses(self, model, batch):
        """float32 [batch] losses of one replica's training batch (``model``: a ``TaskModel``)."""

    @abc.abstractmethod
    def training_dataset(self, batch_size, seed, settings):
        """An endless, shuffled ``tf.data.Dataset`` of the train users' batches."""

    @abc.abstractmethod
    def scores(self, model, split):
        """dict of metric name -> value of ``model`` on ``split`` (a ``TaskSplit``)."""

    @classmethod
    def serving_vectors(cls, model, items):
        """float32 [num_users, dim] user vectors of ``model`` for ragged ``items`` [num_users, (length)]."""
        return task_user_vectors(model, items)

    @classmethod
    @abc.abstractmethod
    def predictions(cls, model, items, vectors, top_k):
        """dict of column name -> np.ndarray [num_users, ...]: what the head predicts per user.

        ``items`` are the users' histories (recommendations leave them out),
        ``vectors`` their ``serving_vectors``; ``top_k`` bounds item lists.
        """

    @classmethod
    @abc.abstractmethod
    def head_outputs(cls, model, head, items, training=False):
        """float32 [batch, outputs]: ``head``'s score of every class or item, for each user.

        Args:
            model: a ``TaskModel`` (its encoder reads ``items``; ``head`` need not be its own).
            head: a head of this task's kind.
            items: tf.RaggedTensor [batch, (length)] histories.
            training: enables dropout.
        """
