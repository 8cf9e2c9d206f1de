"""Learns task after task into one continual model folder that serves every task learned (Conure, TERACON).

    python main/train.py --model=nextitnet --tables=runs/ml1m/tables --checkpoint_dir=runs/nin
    python main/continual.py --method=conure --pretrained=runs/nin --model_dir=runs/conure --task=items
    python main/continual.py --model_dir=runs/conure --task=gender --labels=../shared/data/ml-1m/users.dat
    python main/continual.py --model_dir=runs/conure --list
    python main/inference.py --checkpoint_dir=runs/conure --task=gender

The first call starts the folder from a pretrained NextItNet: task 1 is its
own objective, next-item prediction, pruned to its kept weights and
retrained; then ``--task`` is learned as task 2. Each later call adds one
task. A task is committed as a whole (``util.atomic.atomic_directory``): a
job killed while learning leaves the folder serving every earlier task, and
rerunning the command learns that task again from the committed folder.
"""

from util.quiet_tensorflow import import_tensorflow

# First, before anything loads TensorFlow: its start-up noise is held back.
import_tensorflow()

import argparse
import datetime
import json
import os

import keras

from contracts import schema
from contracts.run_folder import CONTINUAL_MANIFEST_FILE, CONTINUAL_RUN
from data_loader.labels import read_labels
from data_loader.table_files import resolve_table_files
from data_loader.user_sequences import read_user_sequences
from data_loader.validation import validate_sequence_table
from evaluation.probes import split_column
from main.flags.continual import parse_continual_flags
from model import registry
from model.continual import continual_checkpoint
from model.continual.continual_state import ContinualState, capture, task_model
from model.continual.folder_report import render_listing, render_scores, task_entry
from model.continual.learners import learner
from model.continual.serving import read_folder_state, served_task_model
from model.continual.folder_manifest import (
    first_task_model,
    new_manifest,
    task_description,
    without_last_task,
)
from model.inference.restore import checkpoint_for_step
from model.methods.registry import DEFAULT_CONTINUAL_METHOD, get_method
from model.tasks.registry import NEXT_ITEM_TASK, RECOMMENDATION_TASK, make_task
from util.atomic import atomic_directory, remove_abandoned_directories, write_text_atomically
from util.cli import run_cli
from util.distribution import describe_strategy, make_strategy, split_cpu
from util.errors import UserInputError
from util.folder_lock import FolderLock
from util.output_folder import check_writable
from util.run_config import read_continual_manifest, read_run_config, write_continual_manifest


def main(argv=None):
    flags = parse_continual_flags(argv)
    if flags.list:
        manifest = _manifest(flags.model_dir, required=True)
        print(render_listing(flags.model_dir, read_folder_state(flags.model_dir, manifest)))
        return 0
    if flags.evaluate:
        check_writable(os.path.dirname(os.path.abspath(flags.evaluate)), "--evaluate")
        return _evaluate(flags)
    split_cpu(flags.cpu_replicas)
    check_writable(flags.model_dir, "--model_dir")
    with FolderLock(flags.model_dir, "--model_dir"):
        return _learn(flags)


def _learn(flags):
    for leftover in remove_abandoned_directories(flags.model_dir):
        print(f"removed {leftover}, left by a job killed while committing a task", flush=True)
    manifest = _manifest(flags.model_dir) or _new_manifest(flags)
    _check_flags_match(flags, manifest)
    method = get_method(manifest["method"], f"{CONTINUAL_MANIFEST_FILE}: method")
    state = (read_folder_state(flags.model_dir, manifest) if manifest["tasks"]
             else ContinualState(manifest, [], [], {}))
    if flags.task == NEXT_ITEM_TASK and state.tasks:
        raise UserInputError(f"--task={NEXT_ITEM_TASK} is task 1 of every continual folder and "
                             f"{flags.model_dir} has learned it")
    state = _drop_if_relearning(flags, state)

    tables = _sequence_tables(flags, manifest)
    validate_sequence_table(tables, manifest["num_item_ids"])
    sequences = read_user_sequences(tables, manifest["max_items_per_user"])
    labels, labels_path = _labels(flags, manifest)
    task = make_task(flags.task, sequences, labels, split_column(flags.split),
                     flags.validation_fraction, flags.seed, manifest["num_item_ids"],
                     item_head=flags.item_head or method.default_item_head)
    keras.utils.set_random_seed(flags.seed)
    strategy = make_strategy(flags.strategy, flags.cpu_replicas)
    print(f"strategy: {describe_strategy(strategy)}", flush=True)
    sample = sequences.items[:2]

    if not state.tasks:
        first = make_task(NEXT_ITEM_TASK, sequences, labels, split_column(flags.split),
                          flags.validation_fraction, flags.seed, manifest["num_item_ids"],
                          num_sampled=_num_sampled(flags, manifest))
        # Task 1 reads the label table only for a split column.
        state = _learn_one(flags, state, method, first, strategy, sample,
                           labels_path if split_column(flags.split) else "")
        if flags.task == NEXT_ITEM_TASK:
            return 0
    _learn_one(flags, state, method, task, strategy, sample, labels_path)
    return 0


def _learn_one(flags, state, method, task, strategy, sample, labels_path):
    """Learns ``task`` as the next task of ``state``, commits the folder, returns the new state."""
    index = len(state.tasks) + 1
    description = task_description(state.manifest, method, task, index, flags.dropout_rate, flags)
    print(f"task {index}: {task.name} ({task.kind}): {len(task.train.sequences):,} train, "
          f"{len(task.validation.sequences):,} validation, {len(task.test.sequences):,} test "
          f"users", flush=True)
    with strategy.scope():
        if index == 1:
            model = first_task_model(state.manifest, description, sample)
        else:
            model = task_model(state, index, sample, description)
    settings = _phase_settings(flags, state.manifest, first=index == 1)
    report, changed_heads = learner(method)(model, state, task, method, description, strategy,
                                            settings, log=lambda line: print(line, flush=True))
    metrics = task.scores(model, task.test)
    manifest = dict(state.manifest, tasks=state.tasks + [task_entry(
        task, description, metrics, report, model, _label_source(task.name, labels_path),
        labels_path, flags.split,
        datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))])
    new_state = capture(model, manifest, {**state.heads, **changed_heads}, index)
    with atomic_directory(flags.model_dir) as staging:
        continual_checkpoint.write_state(staging, new_state)
        write_continual_manifest(staging, manifest)
    shown = "  ".join(f"{name} {value:.4f}" for name, value in metrics.items() if value is not None)
    print(f"task {index} ({task.name}) learned in {report['seconds']:.0f} s; test "
          f"({len(task.test.sequences):,} users): {shown}", flush=True)
    print(f"{flags.model_dir} serves tasks: {', '.join(e['name'] for e in manifest['tasks'])}",
          flush=True)
    return new_state


def _evaluate(flags):
    """Scores every learned task of the folder on its test users, as the folder serves it now."""
    manifest = _manifest(flags.model_dir, required=True)
    state = read_folder_state(flags.model_dir, manifest)
    tables = _sequence_tables(flags, manifest)
    validate_sequence_table(tables, manifest["num_item_ids"])
    sequences = read_user_sequences(tables, manifest["max_items_per_user"])
    scores = {}
    for entry in state.tasks:
        split = split_column(entry.get("split", "canonical"))
        labels = read_labels(entry["labels_path"]) if entry.get("labels_path") else None
        task = make_task(entry["name"], sequences, labels, split, flags.validation_fraction,
                         flags.seed, manifest["num_item_ids"])
        model, _ = served_task_model(state, entry["name"], sequences.items[:2])
        scores[entry["name"]] = task.scores(model, task.test)
        print(f"scored {entry['name']}", flush=True)
    print(render_scores(state, scores))
    write_text_atomically(flags.evaluate, json.dumps(
        {"model_dir": os.path.abspath(flags.model_dir), "tasks": [e["name"] for e in state.tasks],
         "test_metrics": scores}, indent=2) + "\n")
    print(f"scores written to {flags.evaluate}", flush=True)
    return 0


def _manifest(folder, required=False):
    manifest = read_continual_manifest(folder)
    if manifest is None:
        if required:
            raise UserInputError(f"--model_dir {folder} is not a continual model folder (it has "
                                 f"no {CONTINUAL_MANIFEST_FILE}); main/continual.py writes one")
        if os.path.isdir(folder) and os.listdir(folder):
            raise UserInputError(
                f"--model_dir {folder} is not empty and holds no {CONTINUAL_MANIFEST_FILE}: it "
                f"is not {CONTINUAL_RUN.what}; pass a new or empty folder")
    return manifest


def _new_manifest(flags):
    """continual.json of a new folder: the method, the pretrained run's architecture, no task yet."""
    if not flags.pretrained:
        raise UserInputError(f"--model_dir {flags.model_dir} is new: pass --pretrained (a "
                             f"main/train.py --model=nextitnet run) to start it from")
    pretrained = read_run_config(flags.pretrained, required=True, flag="--pretrained")
    family = registry.family_of(pretrained, f"--pretrained {flags.pretrained}")
    if family.build_backbone is None or not family.traits.get("causal"):
        raise UserInputError(
            f"--pretrained {flags.pretrained} is a {family.name} run; a continual folder "
            f"starts from a main/train.py --model=nextitnet run (its task 1 is next-item "
            f"prediction)")
    step, prefix = checkpoint_for_step(flags.pretrained, flags.pretrained_step,
                                       folder_flag="--pretrained", step_flag="--pretrained_step")
    method = get_method(flags.method or DEFAULT_CONTINUAL_METHOD)
    return dict(new_manifest(pretrained, family, method.name, flags.pretrained, prefix, step),
                **method.folder_entries(flags))


def _check_flags_match(flags, manifest):
    """Refuses flags that contradict an existing folder (nothing is changed)."""
    if not manifest["tasks"]:
        return
    if flags.method and flags.method != manifest["method"]:
        raise UserInputError(f"--method={flags.method}: {flags.model_dir} learns its tasks with "
                             f"{manifest['method']}; leave --method out")
    if flags.pretrained and os.path.abspath(flags.pretrained) != manifest["pretrained_run"]:
        raise UserInputError(f"--pretrained {flags.pretrained}: {flags.model_dir} started from "
                             f"{manifest['pretrained_run']}; leave --pretrained out")
    if flags.s_max and "s_max" in manifest and flags.s_max != manifest["s_max"]:
        raise UserInputError(f"--s_max={flags.s_max}: {flags.model_dir} serves every task at "
                             f"s_max {manifest['s_max']} (a folder's setting); leave --s_max out")


def _drop_if_relearning(flags, state):
    """``state`` without --task if it is the last task and --overwrite_task asks to relearn it."""
    index = state.task_index(flags.task)
    if index is None:
        return state
    if not flags.overwrite_task:
        raise UserInputError(f"--task={flags.task} is learned already (task {index} of "
                             f"{flags.model_dir}); pass --overwrite_task to learn it again")
    last = len(state.tasks)
    if get_method(state.manifest["method"]).task_tables:
        raise UserInputError(
            f"--overwrite_task: {state.manifest['method']} trained every weight of "
            f"{flags.model_dir} on {flags.task}, and the folder from before it is not kept; "
            f"learn the tasks into a new --model_dir")
    if index != last or index == 1:
        raise UserInputError(
            f"--overwrite_task: {flags.task} is task {index} of {last}; only the last task "
            f"learned after task 1 can be learned again (later tasks are built on its weights)")
    print(f"--overwrite_task: learning task {index} ({flags.task}) again", flush=True)
    return without_last_task(state)


def _sequence_tables(flags, manifest):
    if flags.tables:
        return resolve_table_files(flags.tables, default_subdir=schema.SEQUENCES_SUBDIR)
    if not manifest.get("tables_dir"):
        raise UserInputError("the pretrained run records no table folder; pass --tables")
    return resolve_table_files(manifest["tables_dir"], default_subdir=schema.SEQUENCES_SUBDIR,
                               flag="--tables (the pretrained run's; pass --tables to choose another)")


def _labels(flags, manifest):
    """(the label table, its path): --labels, else the pretrained run's; (None, "") if not needed."""
    path = flags.labels or (os.path.join(manifest["tables_dir"], schema.LABELS_FILE)
                            if manifest.get("tables_dir") else "")
    if not path or (flags.task in (RECOMMENDATION_TASK, NEXT_ITEM_TASK)
                    and split_column(flags.split) is None):
        return None, ""
    try:
        return read_labels(path), os.path.abspath(path)
    except UserInputError as error:
        where = "--labels" if flags.labels else "--labels (the pretrained run's table folder's)"
        raise UserInputError(f"{where}: {error}") from None


def _label_source(task_name, labels_path):
    """Where a task's labels come from, in words, for the manifest."""
    if task_name == RECOMMENDATION_TASK:
        return "the sequence table's target windows"
    if task_name == NEXT_ITEM_TASK:
        return "the sequence table's histories"
    return labels_path


def _num_sampled(flags, manifest):
    return manifest["pretrained_num_sampled"] if flags.num_sampled < 0 else flags.num_sampled


def _phase_settings(flags, manifest, first):
    """The flags a task's phases train with: task 1 retrains with its own rate and batch."""
    settings = argparse.Namespace(**vars(flags))
    settings.first_task_num_sampled = _num_sampled(flags, manifest)
    if first:
        settings.epochs = 0
        settings.retrain_epochs = flags.first_task_epochs
        settings.learning_rate = flags.first_task_learning_rate
        settings.batch_size = flags.first_task_batch_size
    return settings


if __name__ == "__main__":
    run_cli(main)
