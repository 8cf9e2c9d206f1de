"""The downstream tasks: which ``Task`` a ``--task`` value is, and which class a task.json's kind rebuilds.

``--task=items`` is item recommendation, ``--task=next_item`` next-item
prediction (a continual folder's first task); any other value is a label
column to classify. Adding a task kind is a ``Task`` subclass in a new file of
``model/tasks`` and one entry below.
"""

from model.tasks.classification import ClassificationTask
from model.tasks.item_recommendation import OWN_ITEM_TABLE, ItemRecommendationTask
from model.tasks.next_item import NextItemTask
from util.errors import UserInputError

TASK_KINDS = {task.kind: task for task in (ClassificationTask, ItemRecommendationTask,
                                           NextItemTask)}
RECOMMENDATION_TASK = ItemRecommendationTask.NAME
NEXT_ITEM_TASK = NextItemTask.NAME


def make_task(name, sequences, labels, split_column, validation_fraction, seed, num_item_ids,
              num_sampled=0, item_head=OWN_ITEM_TABLE):
    """The task ``--task=name`` asks for, its users split.

    Args:
        name: ``items``, ``next_item`` or a label column of ``labels``.
        sequences: the users' ``UserSequences``.
        labels: a ``LabelTable`` (classification; item recommendation reads
            only a split column from it), or None.
        split_column: None for the canonical split, else a column of ``labels``.
        num_sampled: ``next_item``'s sampled-softmax negatives (0: full softmax).
        item_head: ``items``' head: its own item table or the backbone's item embedding.
    """
    if name == NEXT_ITEM_TASK:
        return NextItemTask.from_sequences(sequences, labels, split_column, validation_fraction,
                                           seed, num_item_ids, num_sampled)
    if name == RECOMMENDATION_TASK:
        return ItemRecommendationTask.from_sequences(sequences, labels, split_column,
                                                     validation_fraction, seed, num_item_ids,
                                                     item_head)
    if labels is None:
        raise UserInputError("--labels is empty and the pretrained run records no table folder")
    return ClassificationTask.from_labels(sequences, name, labels, split_column,
                                          validation_fraction, seed)


def task_class(description, where="task.json"):
    """The ``Task`` class of a task description's ``task_kind``."""
    kind = description.get("task_kind")
    if kind not in TASK_KINDS:
        raise UserInputError(f"{where}: task_kind {kind!r} is not one of {', '.join(TASK_KINDS)}")
    return TASK_KINDS[kind]
