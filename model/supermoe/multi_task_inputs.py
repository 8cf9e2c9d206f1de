"""What SUPERMOE pretrains on: the item-sequence table and a label table, as several tasks at once.

``prepare`` (the ``pretraining_inputs`` contract of ``model/model_family.py``)
reads the sequence table (``sequences/``) into memory, builds one
``model/tasks`` task per ``--tasks`` entry (``next_item``, or a label column
of ``--labels``, default the table folder's ``labels.parquet``) on the
canonical split (``user_id % 5 == 0`` is a test user: test users' labels
never train; their histories train next-item prediction, whose test item
is a target-window item no step reads), and returns a reader of steps that
hold one batch per task: ``{task name: that task's batch}``.
"""

import os

import tensorflow as tf

from contracts import schema
from data_loader.labels import read_labels
from data_loader.pretraining_inputs import (PretrainingData, table_entries,
                                            resolve_num_item_ids)
from data_loader.table_files import resolve_table_files
from data_loader.user_sequences import read_user_sequences
from data_loader.validation import validate_sequence_table
from model.tasks.registry import NEXT_ITEM_TASK, make_task
from util.errors import UserInputError

# Share of each task's train users held out for validation (kept out of training).
VALIDATION_FRACTION = 0.1


def task_names(flag_value):
    """The ``--tasks`` list: comma-separated, each once."""
    names = [name.strip() for name in flag_value.split(",") if name.strip()]
    if not names:
        raise UserInputError("--tasks is empty; name next_item and/or label columns")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserInputError(f"--tasks names {', '.join(repeated)} more than once")
    return names


def _label_table(settings, tables, names):
    if all(name == NEXT_ITEM_TASK for name in names):
        return None, ""
    path = settings.labels
    if not path and tables.manifest_path is not None:
        path = os.path.join(os.path.dirname(tables.manifest_path), schema.LABELS_FILE)
    if not path or not os.path.exists(path):
        raise UserInputError(f"--tasks={','.join(names)} needs labels: pass --labels (no "
                             f"{schema.LABELS_FILE} beside the tables)")
    try:
        return read_labels(path), os.path.abspath(path)
    except UserInputError as error:
        raise UserInputError(f"--labels: {error}") from None


class MultiTaskSequenceInputs:
    """The sequence table plus labels, read as ``--tasks``."""

    def prepare(self, tables_flag, settings):
        tables = resolve_table_files(tables_flag, default_subdir=schema.SEQUENCES_SUBDIR)
        num_item_ids = resolve_num_item_ids(tables)
        validate_sequence_table(tables, num_item_ids)
        names = task_names(settings.tasks)
        labels, labels_path = _label_table(settings, tables, names)
        sequences = read_user_sequences(tables, settings.max_items_per_user)
        tasks = [make_task(name, sequences, labels, None, VALIDATION_FRACTION, settings.seed,
                           num_item_ids, num_sampled=settings.num_sampled) for name in names]
        model_tasks = [{"name": task.name, "task_kind": task.kind,
                        "num_classes": len(getattr(task, "class_values", [])),
                        "class_values": list(getattr(task, "class_values", []))}
                       for task in tasks]
        entries = dict(table_entries(tables), num_item_ids=num_item_ids,
                       model_tasks=model_tasks, labels_path=labels_path)

        def reader(seed, context):
            batch_size = context.get_per_replica_batch_size(settings.batch_size)
            # Each input pipeline (and each task) shuffles with its own seed.
            base = seed + 1000 * context.input_pipeline_id
            return tf.data.Dataset.zip({
                task.name: task.training_dataset(batch_size, base + index, settings)
                for index, task in enumerate(tasks)})

        counts = ", ".join(f"{task.name} {len(task.train.sequences):,}" for task in tasks)
        description = (f"{len(sequences):,} users in {len(tables.files)} {tables.file_format} "
                       f"shards, {num_item_ids:,} item ids; train users per task: {counts}")
        return PretrainingData(tables, entries, reader, description, objective=tasks)


MULTI_TASK_SEQUENCES = MultiTaskSequenceInputs()
