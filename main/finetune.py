"""Fine-tunes a pretrained NextItNet / GRec backbone on one downstream task (PeterRec).

    python main/train.py --model=nextitnet --tables=runs/ml1m/tables --checkpoint_dir=runs/nin
    python main/finetune.py --pretrained=runs/nin --task=gender --method=peterrec \\
        --labels=../shared/data/ml-1m/users.dat
    python main/finetune.py --pretrained=runs/nin --task=items --method=fineall

Writes ``--output_dir``: task.json (method, trainable parameters, metrics),
metrics.json, and the checkpoint of the task's OWN parameters, to be loaded on
top of the shared backbone (``model.finetune.task_checkpoint.load_task``).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import keras
import tensorflow as tf

from contracts import schema
from data_loader.table_files import resolve_table_files
from data_loader.task_dataset import classification_dataset, recommendation_dataset
from data_loader.user_sequences import read_user_sequences
from data_loader.validation import validate_sequence_table
from model.finetune import methods
from model.finetune.backbone import restore_backbone
from model.finetune.finetune_flags import parse_finetune_flags
from model.finetune.finetune_loop import train_epochs
from model.finetune.task_checkpoint import build_task_model, save_task
from model.finetune.task_data import RECOMMENDATION_TASK, classification_task, recommendation_task
from model.finetune.task_evaluation import classification_scores, ranking_scores
from model.finetune.task_model import CLASSIFICATION
from model.inference.restore import checkpoint_for_step
from model.training.finetune_trainers import ClassificationTrainer, RecommendationTrainer
from model.training.flags import SEQUENCE_MODELS
from model.training.run_setup import build_optimizer
from util.atomic import atomic_directory, write_text_atomically
from util.cli import run_cli
from util.distribution import describe_strategy, make_strategy
from util.errors import UserInputError
from evaluation.probes import headline_metric, split_column
from util.run_config import read_run_config

# What validation maximises for recommendation (classification: AUC if binary, else accuracy).
RECOMMENDATION_HEADLINE = "hr@10_full"


def main(argv=None):
    flags = parse_finetune_flags(argv)
    pretrained, prefix, step = _pretrained_run(flags)
    _check_output_dir(flags.output_dir, flags.overwrite)

    tables = resolve_table_files(flags.tables or pretrained.get("tables_dir", ""),
                                 default_subdir=schema.SEQUENCES_SUBDIR)
    validate_sequence_table(tables, pretrained["num_item_ids"])
    sequences = read_user_sequences(tables, pretrained["max_items_per_user"])
    task = _task_data(flags, sequences, pretrained)
    print(f"task {task.name} ({task.kind}): {len(task.train.sequences):,} train, "
          f"{len(task.validation.sequences):,} validation, {len(task.test.sequences):,} test users",
          flush=True)

    keras.utils.set_random_seed(flags.seed)
    strategy = make_strategy(flags.strategy)
    print(f"strategy: {describe_strategy(strategy)}", flush=True)
    config = _task_config(flags, pretrained, prefix, step, task)
    with strategy.scope():
        model = build_task_model(config, task.train.sequences.items[:2])
        if methods.starts_from_pretrained(flags.method):
            copied = restore_backbone(model.encoder, prefix, pretrained)
            print(f"backbone: {copied} variables from {prefix}", flush=True)
        variables = methods.trainable_variables(flags.method, model, flags.train_layer_norms)
        optimizer = build_optimizer(flags.learning_rate, "none", variables)
    config["parameters"] = _parameter_report(flags.method, model, variables)

    dataset, steps_per_epoch = _training_dataset(flags, strategy, task, pretrained["num_item_ids"])
    trainer_class = ClassificationTrainer if task.kind == CLASSIFICATION else RecommendationTrainer
    trainer = trainer_class(model, optimizer, strategy, flags.max_grad_norm, variables)
    headline = (headline_metric(len(task.class_values)) if task.kind == CLASSIFICATION
                else RECOMMENDATION_HEADLINE)
    print(f"training {steps_per_epoch} steps per epoch; the best epoch by validation "
          f"{headline} is kept", flush=True)
    result = train_epochs(trainer, dataset, steps_per_epoch, flags.epochs,
                          lambda: _scores(model, task, task.validation)[headline])

    config["training"] = {key: result[key] for key in ("best_epoch", "best_validation", "seconds")}
    config["test_metrics"] = _scores(model, task, task.test)
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
    pretrained = read_run_config(flags.pretrained, required=True)
    if pretrained.get("model") not in SEQUENCE_MODELS:
        raise UserInputError(
            f"--pretrained {flags.pretrained} is a {pretrained.get('model', 'sumn')} run; "
            f"fine-tuning needs a main/train.py --model=nextitnet or --model=grec run")
    step, prefix = checkpoint_for_step(flags.pretrained, flags.pretrained_step)
    return pretrained, prefix, step


def _check_output_dir(output_dir, overwrite):
    if os.path.exists(output_dir) and os.listdir(output_dir) and not overwrite:
        raise UserInputError(
            f"--output_dir {output_dir} is not empty; pass --overwrite to replace it")


def _task_data(flags, sequences, pretrained):
    split = split_column(flags.split)
    labels = flags.labels
    if not labels and pretrained.get("tables_dir"):
        labels = os.path.join(pretrained["tables_dir"], schema.LABELS_FILE)
    if flags.task == RECOMMENDATION_TASK:
        return recommendation_task(sequences, labels, split, flags.validation_fraction, flags.seed)
    if not labels:
        raise UserInputError("--labels is empty and the pretrained run records no table folder")
    return classification_task(sequences, flags.task, labels, split, flags.validation_fraction,
                               flags.seed)


def _task_config(flags, pretrained, prefix, step, task):
    bottleneck = flags.patch_bottleneck or max(1, pretrained["model_dim"] // 8)
    return {
        "method": flags.method, "task": task.name, "task_kind": task.kind,
        "class_values": task.class_values, "num_classes": len(task.class_values),
        "model": pretrained["model"], "num_item_ids": pretrained["num_item_ids"],
        "model_dim": pretrained["model_dim"], "dilations": pretrained["dilations"],
        "kernel_size": pretrained["kernel_size"],
        "causal": pretrained["model"] == "nextitnet",
        "patch": flags.patch if methods.uses_patches(flags.method) else "none",
        "patch_bottleneck": bottleneck, "dropout_rate": flags.dropout_rate,
        "pretrained_run": os.path.abspath(flags.pretrained),
        "pretrained_checkpoint": os.path.abspath(prefix), "pretrained_step": step,
        "max_items_per_user": pretrained["max_items_per_user"],
        "flags": vars(flags),
    }


def _parameter_report(method, model, variables):
    """Prints and returns trainable parameters and their ratio to FineAll's."""
    patches = model.encoder.patch_variables()
    fineall = methods.parameter_count(model.trainable_variables) - methods.parameter_count(patches)
    trained = methods.parameter_count(variables)
    print(f"trainable parameters: {trained:,} ({trained / fineall:.2%} of FineAll's {fineall:,})",
          flush=True)
    return {"trainable": trained, "fineall": fineall, "ratio_to_fineall": trained / fineall}


def _training_dataset(flags, strategy, task, num_item_ids):
    """The endless distributed dataset of the train users and the steps of one epoch."""
    train = task.train
    steps_per_epoch = max(1, -(-len(train.sequences) // flags.batch_size))

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(flags.batch_size)
        if task.kind == CLASSIFICATION:
            dataset = classification_dataset(train.sequences.items, train.labels, batch,
                                             shuffle=True, seed=flags.seed, repeat=True)
        else:
            dataset = recommendation_dataset(
                train.sequences.items, train.sequences.target_items, num_item_ids, batch,
                num_negatives=flags.num_negatives, shuffle=True, seed=flags.seed, repeat=True)
        return dataset.shard(context.num_input_pipelines, context.input_pipeline_id)

    return strategy.distribute_datasets_from_function(dataset_fn), steps_per_epoch


def _scores(model, task, split):
    if task.kind == CLASSIFICATION:
        return classification_scores(model, split.sequences.items, split.labels, task.class_values)
    return ranking_scores(model, split.sequences.items, split.sequences.target_items)


if __name__ == "__main__":
    run_cli(main)
