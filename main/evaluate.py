"""Downstream evaluation of frozen user vectors: probes on labelled users vs. baselines.

    python main/evaluate.py --vectors=runs/ml1m/vectors --labels=../shared/data/ml-1m/users.dat \\
        --tables=runs/ml1m/tables --baseline_vectors=random_encoder=runs/ml1m/random_vectors \\
        --output_dir=runs/ml1m/evaluation

Reads the vectors, the labels and (optionally) the bag of words of the table
folder; keeps the users every input has; splits them (canonical: user_id % 5 == 0
is test); trains a probe per task on the train users (C chosen by 5-fold
cross-validation on the train users only) and scores it on the test users, side
by side with the majority class, TF-IDF + logistic regression and any baseline
vectors; writes evaluation.json / .md / .png and prints the Markdown table, ending
with one line: the model's margin over each baseline, per task.
"""

import argparse
import contextlib
import datetime
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from evaluation.report import build_report, comparison_line, markdown_table, write_evaluation_report  # noqa: E402
from data_loader.bag_of_words import read_bag_of_words  # noqa: E402
from data_loader.labels import read_labels  # noqa: E402
from data_loader.user_vectors import read_user_vectors  # noqa: E402
from evaluation import probes as probes  # noqa: E402
from main.flags.common import FlagHelpFormatter  # noqa: E402
from util.cli import run_cli  # noqa: E402
from util.errors import UserInputError  # noqa: E402
from util.flag_types import non_negative_int, positive_int  # noqa: E402
from util.folder_lock import FolderLock  # noqa: E402
from util.output_folder import check_writable  # noqa: E402

CANONICAL = probes.CANONICAL_SPLIT
SPLIT_COLUMN_PREFIX = probes.SPLIT_COLUMN_PREFIX


def parse_flags(argv):
    parser = argparse.ArgumentParser(
        description="Probe frozen user vectors on labelled users and compare them with baselines.",
        formatter_class=FlagHelpFormatter)
    parser.add_argument("--vectors", required=True,
                        help="user vectors of the model under test, as main/inference.py wrote them: a "
                             "folder, file or glob of .parquet shards (id, embedding, length), "
                             ".npy shards with <shard>.ids.txt, .tsv or .tfrecord shards; required.")
    parser.add_argument("--name", default="model",
                        help="row label of the model under test in the report (default: model).")
    parser.add_argument("--baseline_vectors", action="append", default=[], metavar="NAME=PATH",
                        type=_named_path,
                        help="more user vectors to probe the same way, e.g. random_encoder=PATH for a "
                             "randomly initialised encoder; repeatable (default: none).")
    parser.add_argument("--separator", default="\t",
                        help="field separator of .tsv vector lines (id, comma-joined vector, length), as "
                             "main/inference.py wrote them; '\\t' or 'tab' means a tab (default: a tab).")
    parser.add_argument("--labels", required=True,
                        help="label table: .parquet/.csv/.tsv with a user id column and one column per "
                             "label, or a MovieLens users.dat (ML-1M) / u.user (ML-100k); required.")
    parser.add_argument("--label_id_column", default=None,
                        help="user id column of a .parquet/.csv label table (default: user_id, else id).")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated label columns to evaluate (default: every label column; "
                             "gender,age,occupation for MovieLens).")
    parser.add_argument("--split", default=CANONICAL,
                        help="'canonical' (integer user ids; id %% 5 == 0 is test) or column:NAME (a "
                             "label column holding train/test) (default: canonical).")
    parser.add_argument("--tables", default=None,
                        help="SUMN table folder whose inference shards give each user's bag of words for "
                             "the TF-IDF + logistic regression baseline (default: baseline skipped).")
    parser.add_argument("--lsa_dim", default=0, type=non_negative_int,
                        help="also probe LSA user vectors of this width (TF-IDF of the --tables bags "
                             "reduced by TruncatedSVD, fitted without labels), as the row lsa_<width>: "
                             "the unsupervised anchor at the model's own width; 0 skips it (default: 0).")
    parser.add_argument("--probe", default=probes.LOGISTIC, choices=probes.PROBES,
                        help="probe on the vectors: standardised logistic regression, or a one-hidden-"
                             "layer MLP with L2 alpha = 1/C (default: logistic).")
    parser.add_argument("--C", default=",".join(f"{c:g}" for c in probes.DEFAULT_C_GRID), type=_c_grid,
                        help="comma-separated grid of inverse regularisation strengths; the best is chosen "
                             f"by {probes.CV_FOLDS}-fold cross-validation on the train users only "
                             "(default: %(default)s).")
    parser.add_argument("--seed", default=0, type=int,
                        help="seed of the CV folds, the MLP and the train-user sample (default: 0).")
    parser.add_argument("--max_train_users", default=None, type=positive_int,
                        help="probe on at most this many train users, a seeded sample (default: all).")
    parser.add_argument("--output_dir", required=True,
                        help="folder for evaluation.json, evaluation.md and evaluation.png; required.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_flags(argv)
    # Probing takes minutes: an output folder that cannot be written fails now, not after it.
    check_writable(args.output_dir, "--output_dir")
    with FolderLock(args.output_dir, "--output_dir"):
        return _evaluate(args)


def _evaluate(args):
    notes = []
    labels, tasks, split_column = _read_labels(args)
    vectors = _read_vectors(args)
    bag = _read_bag_of_words(args, notes)
    if args.lsa_dim and bag is None:
        raise UserInputError(f"--lsa_dim={args.lsa_dim} needs --tables: LSA reduces the tables' bags of words.")
    ids, users = _common_users(labels, vectors, bag)
    is_test = _test_users(ids, labels, split_column)
    results = _probe_tasks(args, tasks, ids, is_test, labels, vectors, bag)
    report = _build(results, args, labels, vectors, bag, users, notes)
    paths = write_evaluation_report(report, args.output_dir)
    print(markdown_table(report), end="")
    print(comparison_line(report, args.name), end="")
    print(f"wrote {', '.join(paths.values())}", file=sys.stderr)
    return 0


def _read_labels(args):
    with _flag("--labels"):
        labels = read_labels(args.labels, id_column=args.label_id_column)
    split_column = probes.split_column(args.split)
    if split_column is not None:
        with _flag("--split"):
            labels.column(split_column)  # raises, naming the file and column, where it is missing
    with _flag("--tasks"):
        tasks = _tasks(args.tasks, labels, split_column)
    return labels, tasks, split_column


def _read_vectors(args):
    """{row name: UserVectors}, the model under test first."""
    sources = {args.name: args.vectors, **dict(args.baseline_vectors)}
    reserved = {probes.MAJORITY, probes.TFIDF} | ({probes.lsa_row(args.lsa_dim)} if args.lsa_dim else set())
    if len(sources) != 1 + len(args.baseline_vectors) or set(sources) & reserved:
        raise UserInputError(
            f"--name and --baseline_vectors names must be distinct and not one of the baselines' "
            f"({', '.join(sorted(reserved))}); got {', '.join([args.name] + [name for name, _ in args.baseline_vectors])}."
        )
    vectors = {}
    for name, path in sources.items():
        with _flag("--vectors" if name == args.name else f"--baseline_vectors {name}"):
            vectors[name] = read_user_vectors(path, separator=args.separator)
    return vectors


def _read_bag_of_words(args, notes):
    if not args.tables:
        notes.append("--tables not given, so the TF-IDF bag-of-words baseline was skipped.")
        print(f"note: {notes[-1]}", file=sys.stderr)
        return None
    with _flag("--tables"):
        return read_bag_of_words(args.tables)


def _test_users(ids, labels, split_column):
    """np.ndarray[bool] [len(ids)]: which of ``ids`` are test users."""
    if split_column is None:
        return probes.canonical_test_mask(ids, f"label file {labels.source} (column '{labels.id_column}')")
    values, present = labels.column(split_column)
    rows = probes.rows_of(labels.ids, ids)
    return probes.column_test_mask(values[rows], present[rows], labels.source, split_column)


def _probe_tasks(args, tasks, ids, is_test, labels, vectors, bag):
    """Every model and baseline on every task; a list of result dicts."""
    label_rows = probes.rows_of(labels.ids, ids)
    features = {name: data.vectors[probes.rows_of(data.ids, ids)] for name, data in vectors.items()}
    counts = None if bag is None else bag.counts[probes.rows_of(bag.ids, ids)]
    if args.lsa_dim:
        print(f"fitting LSA-{args.lsa_dim} on {counts.shape[0]} users' bags of words", file=sys.stderr)
        features[probes.lsa_row(args.lsa_dim)] = probes.lsa_vectors(counts, args.lsa_dim, args.seed)
    folds = probes.CV_FOLDS if len(args.C) > 1 else 1
    results = []
    for task in tasks:
        values, present = labels.column(task)
        values, present = values[label_rows], present[label_rows]
        train, test = probes.split_task_users(present, is_test, task=task, source=labels.source,
                                              max_train_users=args.max_train_users, seed=args.seed)
        probes.check_task_labels(values[train], task=task, source=labels.source, folds=folds, probe=args.probe)
        print(f"task {task}: {len(train)} train / {len(test)} test users", file=sys.stderr)
        for result in probes.evaluate_task(task, values, train, test, features, counts, probe=args.probe,
                                           c_grid=args.C, seed=args.seed):
            for warning in result.warnings:
                print(f"note: {task} / {result.model}: {warning}", file=sys.stderr)
            results.append(result.as_dict())
    return results


def _build(results, args, labels, vectors, bag, users, notes):
    split = ("canonical (test users: integer user id % 5 == 0)" if args.split == CANONICAL
             else f"label column '{args.split[len(SPLIT_COLUMN_PREFIX):]}' (train/test)")
    probe = ("StandardScaler + LogisticRegression" if args.probe == probes.LOGISTIC
             else f"StandardScaler + MLPClassifier{probes.MLP_HIDDEN_UNITS} (alpha = 1/C)")
    metadata = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "split": split,
        "split_name": "canonical" if args.split == CANONICAL else args.split,
        "probe": args.probe,
        "probe_model": probe,
        "model_selection": _model_selection(args),
        "C_grid": list(args.C),
        "seed": args.seed,
        "max_train_users": args.max_train_users,
        "labels": labels.source,
        "inputs": {name: data.source for name, data in vectors.items()} | (
            {probes.TFIDF: bag.source} if bag is not None else {}) | (
            {probes.lsa_row(args.lsa_dim): f"TF-IDF of {bag.source} reduced by TruncatedSVD to "
                                           f"{args.lsa_dim} dimensions"} if args.lsa_dim else {}),
        "users": users,
        "notes": notes,
    }
    return build_report(results, metadata)


def _model_selection(args):
    if len(args.C) == 1:
        chosen = f"C = {args.C[0]:g} for every model and task (a single value, so no cross-validation)"
    else:
        chosen = (
            f"C from {{{', '.join(f'{c:g}' for c in args.C)}}} chosen per model and task by "
            f"{probes.CV_FOLDS}-fold stratified cross-validation on the train users only (test users "
            "are never used to choose C), maximising AUC for binary tasks and accuracy for multi-class "
            "tasks, then refitted on all train users"
        )
    sample = "" if args.max_train_users is None else f"; at most {args.max_train_users} train users (seeded sample)"
    return f"{chosen}{sample}. The TF-IDF baseline uses logistic regression and the same grid."


def _common_users(labels, vectors, bag):
    """Ids every input has (sorted), and how many users each input has and lacks."""
    named = {f"labels ({labels.source})": (f"label file {labels.source} (column '{labels.id_column}')", labels.ids)}
    for name, data in vectors.items():
        named[f"vectors {name} ({data.source})"] = (f"user-vector file {data.source} (column 'id')", data.ids)
    if bag is not None:
        named[f"tables ({bag.source})"] = (f"table {bag.source} (column 'id')", bag.ids)
    label_file, _ = named[f"labels ({labels.source})"]
    for where, ids in list(named.values())[1:]:
        if len(np.intersect1d(labels.ids, ids)) == 0:
            raise UserInputError(
                f"no user id of {where} appears in {label_file}; ids are compared as text."
            )
    common = functools.reduce(np.intersect1d, [ids for _, ids in named.values()])
    if len(common) == 0:
        raise UserInputError(
            f"no user appears in every input ({'; '.join(where for where, _ in named.values())}), "
            "although each shares users with the labels."
        )
    users = {"evaluated": int(len(common))}
    for name, (_, ids) in named.items():
        users[name] = f"{len(ids)} users, {len(ids) - len(common)} not evaluated"
    return common, users


def _tasks(flag, labels, split_column):
    if flag is None:
        tasks = [task for task in labels.default_tasks if task != split_column]
    else:
        tasks = [task.strip() for task in flag.split(",") if task.strip()]
    if not tasks:
        raise UserInputError(f"no task to evaluate; label file {labels.source} has no label column besides the split.")
    if split_column in tasks:
        raise UserInputError(f"column '{split_column}' of label file {labels.source} is the split column, not a task.")
    for task in tasks:
        labels.column(task)  # raises, naming the file and column, where it is missing
    return tasks


@contextlib.contextmanager
def _flag(name):
    """Prefixes a reader's UserInputError with the flag that named the file."""
    try:
        yield
    except UserInputError as error:
        raise UserInputError(f"{name}: {error}") from None


def _named_path(text):
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got '{text}'")
    return name, path


def _c_grid(text):
    try:
        grid = tuple(float(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    # nan compares false with everything, so "not above 0" rather than "at most 0".
    if not grid or not all(0 < c < float("inf") for c in grid):
        raise argparse.ArgumentTypeError(f"expected positive finite numbers, got '{text}'")
    return grid


if __name__ == "__main__":
    run_cli(main)
