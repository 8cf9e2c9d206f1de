"""Fine-tunes a pretrained NextItNet / GRec backbone on one downstream task (PeterRec).

    python main/train.py --model=nextitnet --tables=runs/ml1m/tables --checkpoint_dir=runs/nin
    python main/finetune.py --pretrained=runs/nin --task=gender --method=peterrec \\
        --labels=../shared/data/ml-1m/users.dat
    python main/finetune.py --pretrained=runs/nin --task=items --method=fineall

Writes ``--output_dir``: task.json (method, trainable parameters, metrics),
metrics.json, and the checkpoint of the task's OWN parameters, to be loaded on
top of the shared backbone (``model.finetune.task_checkpoint.load_task``).
The family comes from the pretrained run (``model/registry.py``), the method
from ``--method`` (``model/methods``), the task from ``--task`` (``model/tasks``).
"""

import os

from util.quiet_tensorflow import import_tensorflow

# First, before anything loads TensorFlow: its start-up noise is held back.
import_tensorflow()

import json

import keras

from contracts import schema
from contracts.run_folder import TASK_RUN
from data_loader.labels import read_labels
from data_loader.table_files import resolve_table_files
from data_loader.user_sequences import read_user_sequences
from data_loader.validation import validate_sequence_table
from evaluation.probes import split_column
from main.flags.finetuning import parse_finetune_flags
from model import registry
from model.finetune.backbone import restore_backbone
from model.finetune.task_checkpoint import build_task_model, save_task
from model.finetune.task_trainer import TaskTrainer, task_training_dataset
from model.inference.restore import checkpoint_for_step
from model.methods.method import parameter_count
from model.methods.registry import get_method
from model.tasks.registry import RECOMMENDATION_TASK, make_task
from model.training.epoch_loop import train_epochs
from model.training.optimizer import build_optimizer
from util.atomic import atomic_directory, write_text_atomically
from util.cli import run_cli
from util.distribution import describe_strategy, make_strategy
from util.errors import UserInputError
from util.folder_lock import FolderLock
from util.output_folder import check_overwritable, check_writable
from util.run_config import RUN_CONFIG_FILE, read_run_config


def main(argv=None):
    flags = parse_finetune_flags(argv)
    check_writable(flags.output_dir, "--output_dir")
    with FolderLock(flags.output_dir, "--output_dir"):
        return _finetune(flags)


def _finetune(flags):
    _check_output_dir(flags.output_dir, flags.overwrite)
    pretrained, family, prefix, step = _pretrained_run(flags)
    method = get_method(flags.method)

    tables = _sequence_tables(flags, pretrained)
    validate_sequence_table(tables, pretrained["num_item_ids"])
    max_items = flags.max_items_per_user or pretrained["max_items_per_user"]
    _note_table_history(tables, max_items)
    sequences = read_user_sequences(tables, max_items)
    task = make_task(flags.task, sequences, _labels(flags, pretrained), split_column(flags.split),
                     flags.validation_fraction, flags.seed, pretrained["num_item_ids"],
                     item_head=flags.item_head or method.default_item_head)
    print(f"task {task.name} ({task.kind}): {len(task.train.sequences):,} train, "
          f"{len(task.validation.sequences):,} validation, {len(task.test.sequences):,} test users",
          flush=True)

    keras.utils.set_random_seed(flags.seed)
    strategy = make_strategy(flags.strategy)
    print(f"strategy: {describe_strategy(strategy)}", flush=True)
    config = _task_description(flags, pretrained, family, method, prefix, step, task, max_items)
    with strategy.scope():
        model = build_task_model(config, task.train.sequences.items[:2])
        if method.starts_from_pretrained:
            copied = restore_backbone(model.encoder, prefix, pretrained)
            print(f"backbone: {copied} variables from {prefix}", flush=True)
        variables = method.trainable_variables(model, config)
        optimizer = build_optimizer(flags.learning_rate, "none", variables)
    config["parameters"] = _parameter_report(model, variables)

    dataset, steps_per_epoch = task_training_dataset(task, strategy, flags.batch_size, flags.seed,
                                                     flags)
    trainer = TaskTrainer(model, task, method, optimizer, strategy, flags.max_grad_norm, variables)
    print(f"training {steps_per_epoch} steps per epoch; the best epoch by validation "
          f"{task.headline} is kept", flush=True)
    result = train_epochs(trainer, dataset, steps_per_epoch, flags.epochs,
                          lambda: task.scores(model, task.validation)[task.headline])

    config["training"] = {key: result[key] for key in ("best_epoch", "best_validation", "seconds")}
    config["test_metrics"] = task.scores(model, task.test)
    with atomic_directory(flags.output_dir) as staging:
        save_task(staging, config, model, variables)
        write_text_atomically(os.path.join(staging, "metrics.json"),
                              json.dumps(config["test_metrics"], indent=2) + "\n")
    metrics = "  ".join(f"{name} {value:.4f}" for name, value in config["test_metrics"].items()
                        if value is not None)
    print(f"test ({len(task.test.sequences):,} users, best epoch {result['best_epoch']}): "
          f"{metrics}", flush=True)
    print(f"task parameters written to {flags.output_dir}", flush=True)
    return 0


def _pretrained_run(flags):
    pretrained = read_run_config(flags.pretrained, required=True, flag="--pretrained")
    family = registry.family_of(pretrained, f"--pretrained {flags.pretrained}")
    if family.build_backbone is None:
        tunable = [name for name, f in registry.FAMILIES.items() if f.build_backbone]
        raise UserInputError(
            f"--pretrained {flags.pretrained} is a {family.name} run; fine-tuning needs a "
            f"main/train.py run of {' or '.join(f'--model={name}' for name in tunable)}")
    step, prefix = checkpoint_for_step(flags.pretrained, flags.pretrained_step,
                                       folder_flag="--pretrained", step_flag="--pretrained_step")
    return pretrained, family, prefix, step


def _sequence_tables(flags, pretrained):
    """The sequence table: --tables, else the pretrained run's (errors say where it came from)."""
    if flags.tables:
        return resolve_table_files(flags.tables, default_subdir=schema.SEQUENCES_SUBDIR)
    recorded = pretrained.get("tables_dir", "")
    if not recorded:
        raise UserInputError(
            f"--pretrained {flags.pretrained}: its {RUN_CONFIG_FILE} records no table folder; "
            f"pass --tables")
    return resolve_table_files(
        recorded, default_subdir=schema.SEQUENCES_SUBDIR,
        flag=f"--tables (from {RUN_CONFIG_FILE} of --pretrained; pass --tables to choose another)")


def _note_table_history(tables, max_items):
    """Says so when the table keeps fewer items per user than the task asks to read."""
    kept = ((tables.manifest or {}).get("flags") or {}).get("max_items_per_user")
    if kept and kept < max_items:
        print(f"note: the sequence table keeps at most {kept:,} items per user, fewer than the "
              f"{max_items:,} asked for (rebuild it with main/build_tables.py "
              f"--max_items_per_user={max_items} to read more)", flush=True)


def _check_output_dir(output_dir, overwrite):
    if os.path.exists(output_dir) and os.listdir(output_dir) and not overwrite:
        raise UserInputError(
            f"--output_dir {output_dir} is not empty; pass --overwrite to replace it")
    # The folder is replaced only at the end (atomic_directory); refuse now, not after training.
    check_overwritable(output_dir, TASK_RUN, "--output_dir")


def _labels(flags, pretrained):
    """The label table: --labels, else the pretrained run's table folder's; None if neither."""
    path = flags.labels
    if not path and pretrained.get("tables_dir"):
        path = os.path.join(pretrained["tables_dir"], schema.LABELS_FILE)
    if not path:
        return None
    # Item recommendation reads labels only for a split column.
    if flags.task == RECOMMENDATION_TASK and split_column(flags.split) is None:
        return None
    try:
        return read_labels(path)
    except UserInputError as error:
        where = "--labels" if flags.labels else "--labels (the pretrained run's table folder's)"
        raise UserInputError(f"{where}: {error}") from None


def _task_description(flags, pretrained, family, method, prefix, step, task, max_items):
    """task.json: the family's architecture, the method's and the task's entries, provenance."""
    description = {key: pretrained[key] for key in family.architecture_keys() if key in pretrained}
    description.update(family.traits)
    description.update(
        method=method.name, model=family.name, dropout_rate=flags.dropout_rate,
        patch_bottleneck=flags.patch_bottleneck or max(1, pretrained["model_dim"] // 8),
        pretrained_run=os.path.abspath(flags.pretrained),
        pretrained_checkpoint=os.path.abspath(prefix), pretrained_step=step,
        max_items_per_user=max_items, readout=flags.readout, flags=vars(flags))
    description.update(task.description_entries())
    description.update(method.description_entries(flags))
    return description


def _parameter_report(model, variables):
    """Prints and returns trainable parameters and their ratio to FineAll's."""
    adapters = model.encoder.adapter_variables()
    fineall = parameter_count(model.trainable_variables) - parameter_count(adapters)
    trained = parameter_count(variables)
    print(f"trainable parameters: {trained:,} ({trained / fineall:.2%} of FineAll's {fineall:,})",
          flush=True)
    return {"trainable": trained, "fineall": fineall, "ratio_to_fineall": trained / fineall}


if __name__ == "__main__":
    run_cli(main)
