"""The PeterRec benchmark on MovieLens-1M: pretrain NextItNet once, fine-tune every method per task.

    python bench/peterrec_ml1m.py                       # about an hour on two CPU cores
    python bench/peterrec_ml1m.py --steps=100 --epochs=1 --tasks=gender   # a smoke run
    python bench/peterrec_ml1m.py --methods=peterrec --variants=cls,mean,attention,cls_mean,mean@400 \
        --report=bench/results/peterrec_readouts_ml1m.md        # readouts and history lengths

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

``--variants`` fine-tunes each method with other readouts of the user vector
(``--readout``) and longer histories (``--max_items_per_user``); beside them,
TF-IDF + logistic regression is fitted on exactly the items each history
length lets the model see (the same users, the same canonical split), so the
comparison with the ten-line baseline is fair.
"""

import argparse
import json
import os
import sys
import time

from common import (
    REPO_ROOT,
    build_and_pretrain_nextitnet,
    command_line,
    run_command,
    run_description,
    write_markdown_report,
)

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
    parser.add_argument("--variants", default="cls",
                        help="comma-separated fine-tuning variants, each READOUT or "
                             "READOUT@HISTORY (readout: cls, mean, attention, cls_mean; history: "
                             "most recent items the task reads, default --max_items_per_user)")
    parser.add_argument("--resume", action="store_true",
                        help="keep every task folder in --work_dir that already holds a finished "
                             "task.json (a stopped bench goes on where it was)")
    parser.add_argument("--reuse_pretrained", action="store_true",
                        help="keep an existing pretrained run in --work_dir (skip building and "
                             "pretraining)")
    flags = parser.parse_args(argv)
    flags.variant_list = []
    for text in filter(None, flags.variants.split(",")):
        readout, _, history = text.partition("@")
        if not history.isdigit() and history:
            parser.error(f"--variants: {text!r} is not READOUT or READOUT@HISTORY")
        flags.variant_list.append((readout, int(history or flags.max_items_per_user)))
    return flags


def _variant_name(flags, readout, history):
    """The variant's label in folder names and the report; the plain PeterRec one has none."""
    if (readout, history) == ("cls", flags.max_items_per_user):
        return ""
    return readout if history == flags.max_items_per_user else f"{readout}@{history}"


def main(argv=None):
    flags = parse_flags(argv)
    if not os.path.exists(os.path.join(flags.data, "events.parquet")):
        sys.exit(f"MovieLens-1M is not at {flags.data}; pass --data")
    python = sys.executable
    tables = os.path.join(flags.work_dir, "tables")
    pretrained = os.path.join(flags.work_dir, "nextitnet")
    commands, seconds = [], {}
    longest = max(history for _, history in flags.variant_list)
    if not (flags.reuse_pretrained and os.path.isdir(pretrained)):
        build_and_pretrain_nextitnet(flags, tables, pretrained, commands, seconds,
                                     table_items=longest)

    results, baselines = [], []
    for task in flags.tasks.split(","):
        for readout, history in flags.variant_list:
            variant = _variant_name(flags, readout, history)
            for method in flags.methods.split(","):
                name = " ".join(filter(None, [task, method, variant]))
                output = os.path.join(flags.work_dir, "tasks", name.replace(" ", "-"))
                labels = ([] if task == "items"
                          else [f"--labels={os.path.join(flags.data, 'users.dat')}"])
                command = [python, "main/finetune.py", f"--pretrained={pretrained}",
                           f"--task={task}", f"--method={method}", *labels,
                           f"--readout={readout}", f"--max_items_per_user={history}",
                           f"--epochs={flags.epochs}", f"--batch_size={flags.finetune_batch_size}",
                           f"--learning_rate={flags.finetune_learning_rate}",
                           f"--output_dir={output}", "--overwrite"]
                finished = os.path.join(output, "task.json")
                if flags.resume and os.path.exists(finished):
                    print(f"kept {name} (--resume): {output}", flush=True)
                    commands.append(f"{command_line(command)}   # kept from an earlier run")
                    with open(finished, encoding="utf-8") as handle:
                        results.append(json.load(handle))
                    # Its training time; the evaluation after it is not recorded.
                    seconds[name] = results[-1]["training"]["seconds"]
                else:
                    print(f"fine-tuning {name}", flush=True)
                    seconds[name], stdout = run_command(command, commands)
                    print("  " + stdout.strip().splitlines()[-2], flush=True)
                    with open(finished, encoding="utf-8") as handle:
                        results.append(json.load(handle))
                results[-1].update(seconds=seconds[name], variant=variant)
        if task != "items":
            for history in sorted({history for _, history in flags.variant_list}):
                started = time.perf_counter()
                baselines.append(tfidf_on_task_items(flags.data, tables, task, history))
                seconds[_baseline_stage(task, history)] = time.perf_counter() - started
    write_report(flags, commands, seconds, results, baselines)


def _baseline_stage(task, history):
    return f"{task} tfidf_logistic {history} items"


def tfidf_on_task_items(data, tables, task, max_items):
    """TF-IDF + logistic regression on the items fine-tuning reads: each user's ``max_items`` most recent.

    The users and their split are the fine-tuning task's own
    (``ClassificationTask.from_labels``), its validation users counted as train
    users; C is chosen by cross-validation on those (``evaluation.probes``).

    Returns:
        {"task", "history", "accuracy", "auc", "macro_f1", "C"}.
    """
    import numpy as np
    import tensorflow as tf
    from scipy import sparse

    from contracts import schema
    from data_loader.labels import read_labels
    from data_loader.table_files import resolve_table_files
    from data_loader.user_sequences import read_user_sequences
    from evaluation import probes
    from model.tasks.classification import ClassificationTask

    sequences = read_user_sequences(
        resolve_table_files(tables, default_subdir=schema.SEQUENCES_SUBDIR), max_items)
    split = ClassificationTask.from_labels(sequences, task, read_labels(os.path.join(data, "users.dat")),
                                           None, validation_fraction=0.1, seed=0)
    width = int(tf.reduce_max(sequences.items.values)) + 1

    def counts(items):  # [users, width]; a repeated item adds up
        values = items.values.numpy()
        return sparse.csr_matrix((np.ones(len(values), dtype=np.float32),
                                  (items.value_rowids().numpy(), values)),
                                 shape=(int(items.nrows()), width))

    train_items = tf.concat([split.train.sequences.items, split.validation.sequences.items], axis=0)
    train_labels = np.concatenate([split.train.labels, split.validation.labels])
    result = probes.tfidf_baseline(counts(train_items), train_labels,
                                   counts(split.test.sequences.items), np.asarray(split.test.labels))
    return {"task": task, "history": max_items, "accuracy": result.accuracy, "auc": result.auc,
            "macro_f1": result.macro_f1, "C": result.C}


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


def baseline_findings(results, baselines):
    """Per task: the best PeterRec variant against TF-IDF + LR on the same history, on the headline.

    The headline is the task's (AUC for a binary task, accuracy otherwise);
    the other metric is listed beside it.
    """
    lines = []
    for baseline in baselines:
        task, history = baseline["task"], baseline["history"]
        tried = [r for r in results if r["task"] == task and r["method"] == "peterrec"
                 and r["max_items_per_user"] == history]
        if not tried:
            continue
        headline = "auc" if len(tried[0]["class_values"]) == 2 else "accuracy"
        other = "accuracy" if headline == "auc" else "auc"
        best = max(tried, key=lambda r: r["test_metrics"][headline])
        ours, theirs = best["test_metrics"][headline], baseline[headline]
        lines.append(
            f"- {task}, {history} most recent items: PeterRec ({best['readout']}) {headline} "
            f"{ours:.4f} ({other} {best['test_metrics'][other]:.4f}) vs TF-IDF + LR {theirs:.4f} "
            f"({other} {baseline[other]:.4f}): {(ours - theirs) * 100:+.2f} points, goal >= 0: "
            f"{'holds' if ours >= theirs else 'does not hold'}")
    return lines


def write_report(flags, commands, seconds, results, baselines=()):
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
        rows.append(f"| {result['task']} | {result['method']} | {result.get('readout', 'cls')} | "
                    f"{result['max_items_per_user']} | {' | '.join(cells)} | "
                    f"{parameters['trainable']:,} | {parameters['ratio_to_fineall']:.1%} | "
                    f"{result['training']['best_epoch']} | {result['seconds']:.0f} |")
    for baseline in baselines:
        cells = " | ".join(f"{baseline[name]:.4f}" for name in ("accuracy", "auc", "macro_f1"))
        took = seconds[_baseline_stage(baseline["task"], baseline["history"])]
        rows.append(f"| {baseline['task']} | tfidf_logistic (C={baseline['C']:g}) | - | "
                    f"{baseline['history']} | {cells} | - | - | - | {took:.0f} |")
    paper_rows = [result for result in results if not result.get("variant")]
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
        "Readout: how the user vector is read from the encoder's states (`--readout`: cls, "
        "PeterRec's CLS token; mean; attention; cls_mean); history: the most recent items "
        "each user's sequence holds (`--max_items_per_user`). tfidf_logistic is TF-IDF + "
        "logistic regression on exactly those items of the same users, C chosen by 5-fold "
        "cross-validation on the train users.",
        "For items (recommendation) the columns are HR@5 and MRR@5 among 99 sampled negatives, "
        "and full-ranking HR@10.",
        "Accuracy is what the paper compares and what the findings below use; on these "
        "imbalanced labels it sits close to the majority class (listed below), so read AUC "
        "beside it.",
        "",
        "| task | method | readout | history | accuracy | AUC | macro-F1 | trained parameters | "
        "of FineAll | best epoch | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    if paper_rows:
        lines += ["## The paper's findings on this data", "", *findings(paper_rows, majority), ""]
    against = baseline_findings(results, baselines)
    if against:
        lines += ["## PeterRec against TF-IDF + LR on the same items (headline metric)", "",
                  *against, ""]
    write_markdown_report(flags.report, lines, seconds, commands)
    print("\n".join(rows + [""] + findings(paper_rows, majority) + [""] + against), flush=True)


if __name__ == "__main__":
    main()
