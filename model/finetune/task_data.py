"""The users of one fine-tuning task, split into train / validation / test.

A classification task is a label column of a label table (users.dat, the
tables' labels.parquet, a CSV...); a recommendation task (``--task=items``)
predicts the items a user meets in its target window, so only users with a
non-empty target window take part. Test users come from the same split as
``main/evaluate.py`` (canonical ``user_id % 5 == 0``, or a split column);
the validation users, which choose the best epoch, are a seeded share of the
train users, so test users never choose anything.
"""

import dataclasses

import numpy as np

from data_loader.labels import read_labels
from model.finetune.task_model import CLASSIFICATION, RECOMMENDATION
from evaluation import probes as probes
from util.errors import UserInputError

RECOMMENDATION_TASK = "items"


@dataclasses.dataclass(frozen=True)
class TaskSplit:
    """One part of a task's users: sequences and (classification) class indices [num_users]."""

    sequences: object  # data_loader.user_sequences.UserSequences
    labels: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A task's kind, its class values (classification) and its three splits."""

    name: str
    kind: str
    class_values: list
    train: TaskSplit
    validation: TaskSplit
    test: TaskSplit


def _test_mask(ids, labels, split_column, source):
    if split_column is None:
        return probes.canonical_test_mask(ids, source)
    values, present = labels.column(split_column)
    rows = probes.rows_of(labels.ids, ids)
    return probes.column_test_mask(values[rows], present[rows], labels.source, split_column)


def _validation_rows(train, fraction, seed):
    """Splits train rows into (train, validation), ``fraction`` of them (at least 1) validating."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train)
    count = max(1, int(round(len(train) * fraction)))
    if count >= len(train):
        raise UserInputError(
            f"only {len(train)} train users: too few to hold out --validation_fraction={fraction}")
    return np.sort(shuffled[count:]), np.sort(shuffled[:count])


def _split(sequences, sequence_rows, class_index=None, task_rows=None):
    """The users at ``sequence_rows``; ``class_index`` is indexed like them (task rows)."""
    labels = None
    if class_index is not None:
        labels = class_index[task_rows]
    return TaskSplit(sequences.take(sequence_rows), labels)


def classification_task(sequences, task, labels_path, split_column, validation_fraction, seed):
    """A classification task from label column ``task`` of ``labels_path``.

    Users present in both the sequence table and the label file, with a known
    label, take part. Class indices follow the sorted label values.
    """
    labels = read_labels(labels_path)
    values, present = labels.column(task)
    known = np.isin(sequences.ids, labels.ids)
    if not known.any():
        raise UserInputError(
            f"--labels {labels_path}: none of its user ids is a user of the sequence table")
    rows_in_labels = probes.rows_of(labels.ids, sequences.ids[known])
    candidate_rows = np.flatnonzero(known)
    keep = present[rows_in_labels]
    rows, values = candidate_rows[keep], values[rows_in_labels][keep]
    is_test = _test_mask(sequences.ids[rows], labels, split_column, f"--labels {labels_path}")
    train, test = probes.split_task_users(np.ones(len(rows), dtype=bool), is_test, task=task,
                                          source=labels_path)
    class_values, class_index = np.unique(values, return_inverse=True)
    if len(np.unique(class_index[train])) < 2:
        raise UserInputError(f"--task={task}: the train users of {labels_path} have one class only")
    train, validation = _validation_rows(train, validation_fraction, seed)
    return TaskData(
        name=task, kind=CLASSIFICATION, class_values=class_values.tolist(),
        train=_split(sequences, rows[train], class_index, train),
        validation=_split(sequences, rows[validation], class_index, validation),
        test=_split(sequences, rows[test], class_index, test))


def recommendation_task(sequences, labels_path, split_column, validation_fraction, seed):
    """The cold-start recommendation task: the items of each user's target window."""
    lengths = sequences.target_items.row_lengths().numpy()
    rows = np.flatnonzero(lengths > 0)
    if len(rows) == 0:
        raise UserInputError("--task=items: no user of the sequence table has target items")
    labels = read_labels(labels_path) if split_column is not None else None
    is_test = _test_mask(sequences.ids[rows], labels, split_column, "the sequence table")
    train, test = probes.split_task_users(np.ones(len(rows), dtype=bool), is_test,
                                          task=RECOMMENDATION_TASK, source="the sequence table")
    train, validation = _validation_rows(train, validation_fraction, seed)
    return TaskData(
        name=RECOMMENDATION_TASK, kind=RECOMMENDATION, class_values=[],
        train=_split(sequences, rows[train]), validation=_split(sequences, rows[validation]),
        test=_split(sequences, rows[test]))
