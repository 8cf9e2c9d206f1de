"""The PeterRec benchmark on MovieLens-1M: pretrain NextItNet once, fine-tune every method per task.

    python bench/peterrec_ml1m.py                       # about an hour on two CPU cores
    python bench/peterrec_ml1m.py --steps=100 --epochs=1 --tasks=gender   # a smoke run

Builds the tables from ../shared/data/ml-1m, pretrains a causal NextItNet on
every user's history sequence (self-supervised: no labels), then fine-tunes
gender, age and occupation with PeterRec, FineAll, FineCLS, FineLast and from
scratch on the canonical split (user_id % 5 == 0 is test). Every stage runs
through the command a user types; the report (bench/results/peterrec_ml1m.md)
lists the commands, the table, the machine and the date, and checks the
paper's findings (Yuan et al., SIGIR 2020):

* PeterRec within 1 point of FineAll, with under 10% of FineAll's trained parameters;
* PeterRec at least FineCLS + 3 points;
* a pretrained backbone beats training from scratch.
"""

import argparse
import json
import os
import sys

from common import REPO_ROOT, build_and_pretrain_nextitnet, run_command, run_description, write_markdown_report

DEFAULT_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "ml-1m"))
METHODS = ("peterrec", "fineall", "finecls", "finelast", "scratch")
TASKS = ("gender", "age", "occupation")


def parse_flags(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="the shared ml-1m folder")
    parser.add_argument("--work_dir", default=os.path.join(REPO_ROOT, "bench", "work", "peterrec_ml1m"),
                        help="tables, runs and task folders (git-ignored)")
    parser.add_argument("--report", default=os.path.join(REPO_ROOT, "bench", "results",
                                                         "peterrec_ml1m.md"),
                        help="Markdown report to write")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated label columns of users.dat (and/or 'items')")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--max_items_per_user", type=int, default=100,
                        help="most recent history items per user sequence")
    parser.add_argument("--steps", type=int, default=1500, help="NextItNet pretraining steps")
    parser.add_argument("--batch_size", type=int, default=64, help="pretraining batch size")
    parser.add_argument("--model_dim", type=int, default=64, help="channels (the authors' code: 64)")
    parser.add_argument("--dilations", default="1,2,4,8,1,2,4,8",
                        help="one residual block (two convolutions) per dilation")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per method")
    parser.add_argument("--finetune_batch_size", type=int, default=128, help="users per step")
    parser.add_argument("--finetune_learning_rate", type=float, default=1e-3,
                        help="Adam learning rate of every method")
    parser.add_argument("--reuse_pretrained", action="store_true",
                        help="keep an existing pretrained run in --work_dir (skip building and "
                             "pretraining)")
    return parser.parse_args(argv)


def main(argv=None):
    flags = parse_flags(argv)
    if not os.path.exists(os.path.join(flags.data, "events.parquet")):
        sys.exit(f"MovieLens-1M is not at {flags.data}; pass --data")
    python = sys.executable
    tables = os.path.join(flags.work_dir, "tables")
    pretrained = os.path.join(flags.work_dir, "nextitnet")
    commands, seconds = [], {}
    if not (flags.reuse_pretrained and os.path.isdir(pretrained)):
        build_and_pretrain_nextitnet(flags, tables, pretrained, commands, seconds)

    results = []
    for task in flags.tasks.split(","):
        for method in flags.methods.split(","):
            output = os.path.join(flags.work_dir, "tasks", f"{task}-{method}")
            print(f"fine-tuning {task} with {method}", flush=True)
            labels = [] if task == "items" else [f"--labels={os.path.join(flags.data, 'users.dat')}"]
            seconds[f"{task} {method}"], stdout = run_command(
                [python, "main/finetune.py", f"--pretrained={pretrained}", f"--task={task}",
                 f"--method={method}", *labels, f"--epochs={flags.epochs}",
                 f"--batch_size={flags.finetune_batch_size}",
                 f"--learning_rate={flags.finetune_learning_rate}",
                 f"--output_dir={output}", "--overwrite"], commands)
            print("  " + stdout.strip().splitlines()[-2], flush=True)
            with open(os.path.join(output, "task.json"), encoding="utf-8") as handle:
                results.append(json.load(handle))
            results[-1]["seconds"] = seconds[f"{task} {method}"]
    write_report(flags, commands, seconds, results)


def _headline(result):
    """The metric the paper compares: accuracy for classification, HR@10 for items."""
    metrics = result["test_metrics"]
    return metrics["accuracy"] if "accuracy" in metrics else metrics["hr@10_full"]


def majority_accuracy(data, task):
    """Test accuracy of always predicting the train users' most frequent class (canonical split)."""
    import numpy as np

    from data_loader.labels import read_labels
    from evaluation.probes import canonical_test_mask

    labels = read_labels(os.path.join(data, "users.dat"))
    values, present = labels.column(task)
    test = canonical_test_mask(labels.ids, "users.dat")
    classes, counts = np.unique(values[present & ~test], return_counts=True)
    return float(np.mean(values[present & test] == classes[counts.argmax()]))


def findings(results, majority=None):
    """One line per task and paper finding: the numbers and whether it holds.

    ``majority``: {task: majority-class test accuracy}, printed as the floor
    the accuracies should be read against.
    """
    lines = []
    by_task = {}
    for result in results:
        by_task.setdefault(result["task"], {})[result["method"]] = result
    for task, methods in by_task.items():
        score = {method: _headline(result) for method, result in methods.items()}
        if majority and task in majority:
            lines.append(f"- {task}: the majority class alone scores {majority[task]:.4f} accuracy")
        if {"peterrec", "fineall"} <= set(score):
            lead = (score["peterrec"] - score["fineall"]) * 100
            ratio = methods["peterrec"]["parameters"]["ratio_to_fineall"]
            holds = lead >= -1.0 and ratio < 0.10
            lines.append(f"- {task}: PeterRec {score['peterrec']:.4f} vs FineAll "
                         f"{score['fineall']:.4f} (PeterRec {lead:+.2f} points; goal >= -1) "
                         f"with {ratio:.1%} of FineAll's trained parameters (goal < 10%): "
                         f"{'holds' if holds else 'does not hold'}")
        if {"peterrec", "finecls"} <= set(score):
            lead = (score["peterrec"] - score["finecls"]) * 100
            lines.append(f"- {task}: PeterRec vs FineCLS {lead:+.2f} points (goal >= +3): "
                         f"{'holds' if lead >= 3.0 else 'does not hold'}")
        if "scratch" in score:
            best = max((value for method, value in score.items() if method != "scratch"),
                       default=None)
            if best is not None:
                lines.append(f"- {task}: best pretrained method {best:.4f} vs scratch "
                             f"{score['scratch']:.4f}: "
                             f"{'holds' if best > score['scratch'] else 'does not hold'}")
    return lines


def write_report(flags, commands, seconds, results):
    majority = {result["task"]: majority_accuracy(flags.data, result["task"])
                for result in results if result["task_kind"] == "classification"}
    rows = []
    for result in results:
        metrics = result["test_metrics"]
        parameters = result["parameters"]
        cells = (f"{metrics[name]:.4f}" if metrics.get(name) is not None else "-"
                 for name in ("accuracy", "auc", "macro_f1"))
        if result["task_kind"] == "recommendation":
            cells = (f"{metrics[name]:.4f}" for name in ("hr@5_sampled", "mrr@5_sampled",
                                                         "hr@10_full"))
        rows.append(f"| {result['task']} | {result['method']} | {' | '.join(cells)} | "
                    f"{parameters['trainable']:,} | {parameters['ratio_to_fineall']:.1%} | "
                    f"{result['training']['best_epoch']} | {result['seconds']:.0f} |")
    lines = [
        "# MovieLens-1M: PeterRec and its baselines on gender, age and occupation",
        "",
        run_description(seconds),
        f"NextItNet: {flags.model_dim} channels, dilations {flags.dilations} (two convolutions "
        f"per block), the {flags.max_items_per_user} most recent history items per user, "
        f"{flags.steps} pretraining steps of batch {flags.batch_size}.",
        f"Fine-tuning: {flags.epochs} epochs, batch {flags.finetune_batch_size}, Adam "
        f"{flags.finetune_learning_rate}; the epoch with the best validation score (10% of the "
        "train users) is kept. Test users: `user_id % 5 == 0` (canonical split).",
        "For items (recommendation) the columns are HR@5 and MRR@5 among 99 sampled negatives, "
        "and full-ranking HR@10.",
        "Accuracy is what the paper compares and what the findings below use; on these "
        "imbalanced labels it sits close to the majority class (listed below), so read AUC "
        "beside it.",
        "",
        "| task | method | accuracy | AUC | macro-F1 | trained parameters | of FineAll | "
        "best epoch | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "## The paper's findings on this data",
        "",
        *findings(results, majority),
        "",
    ]
    write_markdown_report(flags.report, lines, seconds, commands)
    print("\n".join(rows + [""] + findings(results, majority)), flush=True)


if __name__ == "__main__":
    main()
