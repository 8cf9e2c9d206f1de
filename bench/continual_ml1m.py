"""The continual-learning benchmark on MovieLens-1M: one task sequence, four ways to learn it.

    python bench/continual_ml1m.py                     # about 45 minutes on two CPU cores
    python bench/continual_ml1m.py --with_stored --methods=teracon
                                                       # add one method to the stored ones
    python bench/continual_ml1m.py --steps=100 --epochs=1 --retrain_epochs=0 \\
        --tasks=items,gender --methods=conure          # a smoke run

The sequence of DESIGN.md ("Continual and multi-task learning: how we
measure"): T1 next-item prediction (the pretraining objective), T2
target-window item recommendation, T3 gender, T4 age, T5 occupation, on the
canonical split (user_id % 5 == 0 is test; validation users come from the
train side). One NextItNet is pretrained (self-supervised, every user's
history), then each method learns the sequence from it:

* conure: one continual folder (main/continual.py --method=conure); task 1 is
  pruned to 30% of each kernel and retrained, every later task trains the
  free weights, is pruned and retrained;
* sequential_fineall: one continual folder in which every weight is
  fine-tuned on each task in turn (the forgetting baseline), task 1 = the
  pretrained model as it is;
* peterrec: one main/finetune.py task folder of patches per task over the
  frozen backbone (task 1 = the pretrained model);
* independent_fineall: one main/finetune.py FineAll folder per task (a whole
  model per task; task 1 = the pretrained model).

After learning task i, every task j <= i is scored on its test users as the
method serves it then: R[i][j]. For the two continual folders that is a
``main/continual.py --evaluate`` run after each task; PeterRec's and the
independent models' tasks live in folders that later tasks never touch, so
their R[i][j] is each folder's own test score. The report gives R per
method, the final average, BWT (Lopez-Paz and Ranzato, 2017), the bytes and
parameters each added task stores, the time per task, a plot of R
(``continual_ml1m.png``) and the goals of the Conure and TERACON issues.

Each method's results are kept beside the report (``continual_ml1m-results/
<method>.json``, committed with it) with the settings and a fingerprint of the
pretrained backbone they were learned from. Pretraining is deterministic on
one machine (fixed seeds, the same data order), so a later run, even from a
fresh checkout, can learn only some methods and ``--with_stored`` reports the
stored ones beside them, after checking that they share its backbone.
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import sys

from common import REPO_ROOT, build_and_pretrain_nextitnet, run_command, run_description, write_markdown_report

from util.atomic import write_text_atomically

DEFAULT_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "ml-1m"))
TASKS = ("items", "gender", "age", "occupation")
METHODS = ("conure", "teracon", "teracon_own_item_head", "teracon_without_replay",
           "teracon_paper_share", "teracon_no_retention", "sequential_fineall", "peterrec",
           "independent_fineall")
# Methods a run learns only when --methods names them.
EXTRA_METHODS = ("teracon_no_retention_no_replay", "teracon_heavy_replay",
                 "teracon_paper_learning_rate", "teracon_all_item_labels",
                 "teracon_strong_retention", "teracon_retention_half_batch",
                 "teracon_served_scale", "teracon_every_position")
# TERACON's loss as the paper has it: pseudo-label retention only, no replay of task 1.
NO_REPLAY = "--first_task_replay_weight=0"
# Bench methods that are main/continual.py methods with other flags: the ablations.
CONTINUAL_VARIANTS = {
    # T2's head with its own table of item vectors (PeterRec's), not the backbone's embedding.
    "teracon_own_item_head": ("teracon", ["--item_head=own"]),
    "teracon_without_replay": ("teracon", [NO_REPLAY]),
    # The paper's rule throughout: its share of the batch alone (about one user of 128 here).
    "teracon_paper_share": ("teracon", ["--retention_min_share=0", NO_REPLAY]),
    # The ablation of the issue: no retention loss (task 1 still replays its own loss) ...
    "teracon_no_retention": ("teracon", ["--retention_weight=0"]),
    # ... and neither: every old task is left to drift.
    "teracon_no_retention_no_replay": ("teracon", ["--retention_weight=0", NO_REPLAY]),
    # The replay weight tried first (the default, 0.2, was tried second: see the README).
    "teracon_heavy_replay": ("teracon", ["--first_task_replay_weight=0.5"]),
    # The paper's schedule: T2 at the bench's rate (1e-3), tasks 3, 4, ... at LATER_TASK_FLAGS'.
    "teracon_paper_learning_rate": ("teracon", [NO_REPLAY]),
    # Diagnostics of the paper's loss's forgetting of T1 (none replays T1).
    "teracon_all_item_labels": ("teracon", ["--retention_top_k=0", "--retention_min_share=0",
                                            NO_REPLAY]),
    # 4x the paper's alpha = 0.7: w_i shares alpha among the old tasks (1/4 each by T5).
    "teracon_strong_retention": ("teracon", ["--retention_weight=2.8", "--retention_min_share=0",
                                             NO_REPLAY]),
    "teracon_retention_half_batch": ("teracon", ["--retention_min_share=0.5", NO_REPLAY]),
    # The old tasks' student outputs at s_max (as they are served), not at the step's scale.
    "teracon_served_scale": ("teracon", ["--retention_scale=served", NO_REPLAY]),
    # T1's head retained at every position of the history, as it was trained, not the newest only.
    "teracon_every_position": ("teracon", ["--retention_positions=all", NO_REPLAY]),
}
# Flags a variant adds from task 3 on (after the bench's own, so they win): the official
# TERACON code trains T2 at 1e-3 and every later task at 1e-4 (../shared/SYSTEMS.md).
LATER_TASK_FLAGS = {"teracon_paper_learning_rate": ["--learning_rate=1e-4"]}
# What each TERACON variant changes, and the row it is compared with in the goals section.
TERACON_DIAGNOSTICS = {
    "teracon_own_item_head": ("T2's head with its own item table, not tied to the item "
                              "embedding", "teracon"),
    "teracon_without_replay": ("the paper's loss: no replay of T1's own next-item loss, "
                               "pseudo-label retention only", "teracon"),
    "teracon_heavy_replay": ("T1's replay at weight 0.5, not 0.2", "teracon"),
    "teracon_no_retention_no_replay": ("neither retention nor replay", "teracon_no_retention"),
    "teracon_paper_share": ("the paper's share of the batch alone, no 25% floor (both without "
                            "replay)", "teracon_without_replay"),
    "teracon_paper_learning_rate": ("the paper's learning rates, 1e-3 for T2 and 1e-4 for every "
                                    "later task, not 1e-3 throughout (both without replay)",
                                    "teracon_without_replay"),
    "teracon_all_item_labels": ("every item's score as T1's pseudo-labels, not the top 100 "
                                "(both with the paper's share)", "teracon_paper_share"),
    "teracon_strong_retention": ("a 4x retention weight, alpha = 2.8 (both with the paper's "
                                 "share)", "teracon_paper_share"),
    "teracon_retention_half_batch": ("every old task retained on at least 50% of each batch, "
                                     "not 25% (both without replay)", "teracon_without_replay"),
    "teracon_served_scale": ("old tasks retained at s_max, as they are served, not at the "
                             "step's annealed scale (both without replay)",
                             "teracon_without_replay"),
    "teracon_every_position": ("T1's next-item head retained at every position of the history, "
                               "not at the newest item only (both without replay)",
                               "teracon_without_replay"),
}
CONTINUAL_METHODS = ("conure", "teracon", "sequential_fineall", *CONTINUAL_VARIANTS)
# Methods that retrain task 1 on its own objective (--first_task_epochs) before task 2.
RETRAIN_FIRST_TASK = ("conure", "teracon")
FINETUNE_METHOD = {"peterrec": "peterrec", "independent_fineall": "fineall"}
FIRST_TASK = "next_item"
# The one number per task that R holds: full-ranking NDCG@10 for item tasks, accuracy for
# profiles (the papers' metric); AUC and macro-F1 are in the final-scores table.
R_METRIC = {"next_item": "ndcg@10_full", "items": "ndcg@10_full"}
PROFILE_METRIC = "accuracy"


def parse_flags(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="the shared ml-1m folder")
    parser.add_argument("--work_dir", default=os.path.join(REPO_ROOT, "bench", "work",
                                                           "continual_ml1m"),
                        help="tables, runs and task folders (git-ignored)")
    parser.add_argument("--report", default=os.path.join(REPO_ROOT, "bench", "results",
                                                         "continual_ml1m.md"),
                        help="Markdown report to write (the plot goes beside it)")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="the tasks after next_item, in order: 'items' and/or label "
                             "columns of users.dat")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--max_items_per_user", type=int, default=100,
                        help="most recent history items per user sequence")
    parser.add_argument("--steps", type=int, default=1500, help="NextItNet pretraining steps")
    parser.add_argument("--batch_size", type=int, default=64, help="pretraining batch size")
    parser.add_argument("--model_dim", type=int, default=64, help="channels")
    parser.add_argument("--dilations", default="1,4,1,4,1,4,1,4",
                        help="one residual block per dilation (Conure's code: [1,4] x 4)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="Conure: epochs on the free weights; every other method trains "
                             "--epochs + --retrain_epochs per task, so all cost the same")
    parser.add_argument("--retrain_epochs", type=int, default=1,
                        help="Conure: epochs on the kept weights after pruning")
    parser.add_argument("--first_task_epochs", type=int, default=1,
                        help="Conure: epochs retraining task 1 on its kept 30%%")
    parser.add_argument("--task_batch_size", type=int, default=128, help="users per step")
    parser.add_argument("--task_learning_rate", type=float, default=1e-3,
                        help="Adam learning rate of every method's tasks")
    parser.add_argument("--reuse_pretrained", action="store_true",
                        help="keep the tables and pretrained run in --work_dir")
    parser.add_argument("--with_stored", action="store_true",
                        help="also report every method whose results an earlier run stored "
                             "beside --report (<report>-results/<method>.json) and --methods "
                             "did not rerun; refused unless they were learned from the same "
                             "settings and the same pretrained backbone (fingerprint)")
    return parser.parse_args(argv)


def _metric(task):
    return R_METRIC.get(task, PROFILE_METRIC)


def _folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(folder) for name in names)


def _labels(flags, task):
    return [] if task in ("items", FIRST_TASK) else [
        f"--labels={os.path.join(flags.data, 'users.dat')}"]


def _task_flags(flags):
    return [f"--batch_size={flags.task_batch_size}", f"--learning_rate={flags.task_learning_rate}"]


def run_continual(flags, method, pretrained, tasks, commands, seconds):
    """Learns the sequence into one continual folder; returns (R rows, per-task records)."""
    python = sys.executable
    folder = os.path.join(flags.work_dir, method)
    cli_method, extra = CONTINUAL_VARIANTS.get(method, (method, []))
    first_epochs = flags.first_task_epochs if cli_method in RETRAIN_FIRST_TASK else 0
    rows, records = [], []
    previous_bytes = 0
    for index, task in enumerate(tasks, start=1):
        start = ([f"--method={cli_method}", f"--pretrained={pretrained}", f"--model_dir={folder}"]
                 if index == 1 else [f"--model_dir={folder}"])
        print(f"{method}: task {index} ({task})", flush=True)
        if index == 1 and os.path.exists(folder):
            shutil.rmtree(folder)  # the bench's own folder of an earlier run
        stage = f"{method} T{index} {task}"
        later = LATER_TASK_FLAGS.get(method, []) if index >= 3 else []
        seconds[stage], stdout = run_command(
            [python, "main/continual.py", *start, f"--task={task}", *_labels(flags, task),
             f"--epochs={flags.epochs}", f"--retrain_epochs={flags.retrain_epochs}",
             f"--first_task_epochs={first_epochs}", *_task_flags(flags), *extra, *later],
            commands)
        print("  " + [line for line in stdout.splitlines() if "learned in" in line][-1],
              flush=True)
        scores_file = os.path.join(flags.work_dir, f"{method}-after-{index}.json")
        seconds[f"{method} T{index} evaluate"], _ = run_command(
            [python, "main/continual.py", f"--model_dir={folder}", f"--evaluate={scores_file}"],
            commands)
        with open(scores_file, encoding="utf-8") as handle:
            scores = json.load(handle)["test_metrics"]
        rows.append([scores[name][_metric(name)] for name in tasks[:index]])
        with open(os.path.join(folder, "continual.json"), encoding="utf-8") as handle:
            entry = json.load(handle)["tasks"][-1]
        size = _folder_bytes(folder)
        records.append({"task": task, "seconds": seconds[stage], "bytes": size - previous_bytes,
                        "parameters": entry["stored_parameters"],
                        "head_parameters": entry.get("head_parameters"),
                        "backbone_parameters": entry.get("backbone_parameters"),
                        "mask_bits": entry["stored_mask_bits"], "mask_share": entry["mask_share"],
                        "final": None})
        previous_bytes = size
    for record, name in zip(records, tasks):
        record["final"] = scores[name]
    return rows, records


def run_separate(flags, method, pretrained, tasks, first_scores, commands, seconds):
    """One main/finetune.py folder per task after T1; returns (R rows, per-task records)."""
    python = sys.executable
    scores, records = [first_scores], [{"task": FIRST_TASK, "seconds": 0.0, "bytes": 0,
                                        "parameters": 0, "mask_bits": 0, "mask_share": None,
                                        "final": first_scores}]
    for task in tasks[1:]:
        output = os.path.join(flags.work_dir, method, task)
        print(f"{method}: {task}", flush=True)
        stage = f"{method} {task}"
        seconds[stage], stdout = run_command(
            [python, "main/finetune.py", f"--pretrained={pretrained}", f"--task={task}",
             f"--method={FINETUNE_METHOD[method]}", *_labels(flags, task),
             f"--epochs={flags.epochs + flags.retrain_epochs}", *_task_flags(flags),
             f"--output_dir={output}", "--overwrite"], commands)
        print("  " + stdout.strip().splitlines()[-2], flush=True)
        with open(os.path.join(output, "task.json"), encoding="utf-8") as handle:
            description = json.load(handle)
        scores.append(description["test_metrics"])
        records.append({"task": task, "seconds": seconds[stage], "bytes": _folder_bytes(output),
                        "parameters": description["parameters"]["trainable"], "mask_bits": 0,
                        "mask_share": None, "final": description["test_metrics"]})
    # Separate folders: learning task i changes no folder of an earlier task.
    rows = [[scores[j][_metric(tasks[j])] for j in range(i + 1)] for i in range(len(tasks))]
    return rows, records


def summary(rows):
    """(final average, BWT) of a lower-triangular R (lists of row prefixes)."""
    final = rows[-1]
    count = len(final)
    bwt = (sum(final[j] - rows[j][j] for j in range(count - 1)) / (count - 1)
           if count > 1 else 0.0)
    return sum(final) / count, bwt


def _results_file(flags, method):
    return os.path.join(os.path.splitext(flags.report)[0] + "-results", f"{method}.json")


def backbone_fingerprint(pretrained):
    """sha256 of the pretrained run's checkpoint files (their tensor bytes, not the logs)."""
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(pretrained, "ckpt-*"))):
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def store_results(flags, method, tasks, settings, result, seconds):
    """Keeps one method's R and records, so a later run can report it beside new methods."""
    rows, records = result
    stages = {stage: value for stage, value in seconds.items() if stage.startswith(method + " ")}
    path = _results_file(flags, method)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text_atomically(path, json.dumps(
        {"tasks": tasks, "settings": settings, "rows": rows, "records": records,
         "seconds": stages}, indent=1) + "\n")


def stored_results(flags, tasks, settings, methods, seconds):
    """{method: (rows, records)} stored by an earlier run, for methods this one does not rerun."""
    found = {}
    for method in METHODS + EXTRA_METHODS:
        path = _results_file(flags, method)
        if method in methods or not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
        if stored["tasks"] != tasks:
            sys.exit(f"{path} was measured on the tasks {stored['tasks']}, this run has "
                     f"{tasks}; rerun {method} (add it to --methods) or leave out --with_stored")
        differing = sorted(name for name in set(stored["settings"]) | set(settings)
                           if stored["settings"].get(name) != settings.get(name))
        if differing:
            sys.exit(f"{path} was measured with other {', '.join(differing)} than this run "
                     f"('backbone' is the pretrained model's fingerprint); rerun {method} (add "
                     f"it to --methods) or leave out --with_stored")
        found[method] = (stored["rows"], stored["records"])
        seconds.update(stored["seconds"])
    return found


def _settings(flags, pretrained):
    """The flags every method of one report must share, and the backbone they start from."""
    settings = {name: getattr(flags, name) for name in (
        "max_items_per_user", "steps", "batch_size", "model_dim", "dilations", "epochs",
        "retrain_epochs", "first_task_epochs", "task_batch_size", "task_learning_rate")}
    settings["backbone"] = backbone_fingerprint(pretrained)
    return settings


def main(argv=None):
    flags = parse_flags(argv)
    if not os.path.exists(os.path.join(flags.data, "events.parquet")):
        sys.exit(f"MovieLens-1M is not at {flags.data}; pass --data")
    tables = os.path.join(flags.work_dir, "tables")
    pretrained = os.path.join(flags.work_dir, "nextitnet")
    tasks = [FIRST_TASK] + [task for task in flags.tasks.split(",") if task]
    methods = [method for method in flags.methods.split(",") if method]
    unknown = [method for method in methods if method not in METHODS + EXTRA_METHODS]
    if unknown:
        sys.exit(f"--methods: unknown {', '.join(unknown)}; choose from "
                 f"{', '.join(METHODS + EXTRA_METHODS)}")
    separate = [m for m in methods if m not in CONTINUAL_METHODS]
    if separate and "sequential_fineall" not in methods:
        sys.exit("peterrec and independent_fineall take task 1's score from "
                 "sequential_fineall's first task; include it in --methods")
    commands, seconds = [], {}
    if not (flags.reuse_pretrained and os.path.isdir(pretrained)):
        build_and_pretrain_nextitnet(flags, tables, pretrained, commands, seconds)
    settings = _settings(flags, pretrained)
    # Checked before any learning, so a mismatch costs seconds, not an hour.
    stored = stored_results(flags, tasks, settings, methods, seconds) if flags.with_stored else {}

    results = {}
    # The continual folders first: sequential FineAll's T1 is the pretrained model as it is,
    # which is also task 1 of PeterRec and of the independent models.
    for method in [m for m in methods if m in CONTINUAL_METHODS]:
        results[method] = run_continual(flags, method, pretrained, tasks, commands, seconds)
        store_results(flags, method, tasks, settings, results[method], seconds)
    if separate:
        with open(os.path.join(flags.work_dir, "sequential_fineall-after-1.json"),
                  encoding="utf-8") as handle:
            first = json.load(handle)["test_metrics"][FIRST_TASK]
        for method in separate:
            results[method] = run_separate(flags, method, pretrained, tasks, first, commands,
                                           seconds)
            store_results(flags, method, tasks, settings, results[method], seconds)
    results.update(stored)
    order = METHODS + EXTRA_METHODS
    results = {method: results[method] for method in sorted(results, key=order.index)}
    write_report(flags, tasks, results, commands, seconds)


def _points(value):
    return f"{100 * value:.2f}"


def plot(path, tasks, results):
    """One heat map of R per method (rows: after task i; columns: task j)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, len(results), figsize=(3.4 * len(results), 3.4),
                                squeeze=False)
    for axis, (method, (rows, _)) in zip(axes[0], results.items()):
        matrix = np.full((len(tasks), len(tasks)), np.nan)
        for i, row in enumerate(rows):
            matrix[i, :len(row)] = row
        base = np.array([rows[j][j] for j in range(len(rows))])
        change = (matrix - base[None, :]) * 100
        image = axis.imshow(change, cmap="RdBu", vmin=-10, vmax=10)
        for i in range(len(rows)):
            for j in range(i + 1):
                axis.text(j, i, f"{100 * matrix[i, j]:.1f}", ha="center", va="center", fontsize=7)
        axis.set_title(method, fontsize=9)
        axis.set_xticks(range(len(tasks)), [f"T{j + 1}" for j in range(len(tasks))], fontsize=7)
        axis.set_yticks(range(len(tasks)), [f"after T{i + 1}" for i in range(len(tasks))],
                        fontsize=7)
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8,
                    label="R[i][j] - R[j][j] (points)")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_report(flags, tasks, results, commands, seconds):
    header = "| after | " + " | ".join(f"T{j + 1} {task}" for j, task in enumerate(tasks)) + " |"
    rule = "|---|" + "---:|" * len(tasks)
    lines = [
        "# MovieLens-1M: continual learning of five tasks into one model",
        "",
        run_description(seconds),
        f"NextItNet: {flags.model_dim} channels, dilations {flags.dilations} (two convolutions "
        f"per block), the {flags.max_items_per_user} most recent items per user, {flags.steps} "
        f"pretraining steps of batch {flags.batch_size}.",
        f"Tasks: {', '.join(f'T{j + 1} {task}' for j, task in enumerate(tasks))}. Every method "
        f"trains {flags.epochs + flags.retrain_epochs} epochs per task after T1 (Conure: "
        f"{flags.epochs} on the free weights + {flags.retrain_epochs} on the kept ones), batch "
        f"{flags.task_batch_size}, Adam {flags.task_learning_rate}; each phase keeps its best "
        f"validation epoch. Conure retrains T1 on its kept 30% and TERACON through its "
        f"task-1 masks, for {flags.first_task_epochs} epoch(s); the other methods' T1 is the "
        f"pretrained model as it is.",
        f"R[i][j] (in points): task j's test score after task i was learned, as the method "
        f"serves it then; item tasks: full-ranking NDCG@10, profiles: {PROFILE_METRIC}. "
        f"BWT = mean over j < n of R[n][j] - R[j][j].",
        "",
    ]
    overview = ["| method | final average | BWT | stored per added task (bytes) | "
                "parameters per added task | seconds per task |", "|---|---:|---:|---:|---:|---:|"]
    for method, (rows, records) in results.items():
        average, bwt = summary(rows)
        added = records[1:] or records
        mean_bytes = sum(r["bytes"] for r in added) / len(added)
        mean_params = sum(r["parameters"] for r in added) / len(added)
        mean_seconds = sum(r["seconds"] for r in added) / len(added)
        overview.append(f"| {method} | {_points(average)} | {100 * bwt:+.2f} | {mean_bytes:,.0f} "
                        f"| {mean_params:,.0f} | {mean_seconds:.0f} |")
        lines += [f"## {method}", "", header, rule]
        for i, row in enumerate(rows):
            cells = [_points(value) for value in row] + [""] * (len(tasks) - len(row))
            lines.append(f"| T{i + 1} | " + " | ".join(cells) + " |")
        lines += ["", "| task | seconds | bytes added to the folder(s) | parameters stored | "
                      "mask bits | mask share |", "|---|---:|---:|---:|---:|---:|"]
        for record in records:
            share = "-" if record["mask_share"] is None else f"{record['mask_share']:.1%}"
            lines.append(f"| {record['task']} | {record['seconds']:.0f} | {record['bytes']:,} | "
                         f"{record['parameters']:,} | {record['mask_bits']:,} | {share} |")
        lines.append("")
    lines[len(lines):] = ["## Overview", "", *overview, "",
                          "## Final scores (after the last task), every metric", "",
                          "| method | task | metrics |", "|---|---|---|"]
    for method, (_, records) in results.items():
        for record in records:
            shown = ", ".join(f"{name} {value:.4f}" for name, value in record["final"].items()
                              if value is not None)
            lines.append(f"| {method} | {record['task']} | {shown} |")
    lines += ["", "## Goals (Conure issue)", "", *goals(results), ""]
    picture = os.path.splitext(flags.report)[0] + ".png"
    plot(picture, tasks, results)
    lines += [f"![R per method]({os.path.basename(picture)})", ""]
    write_markdown_report(flags.report, lines, seconds, commands)
    print("\n".join(overview + [""] + goals(results)), flush=True)


def goals(results):
    lines = []
    if "conure" in results:
        rows, records = results["conure"]
        average, bwt = summary(rows)
        lines.append(f"- Conure's BWT is exactly 0: {100 * bwt:+.4f} points: "
                     f"{'holds' if bwt == 0 else 'does not hold'}")
        if "sequential_fineall" in results:
            _, seq_bwt = summary(results["sequential_fineall"][0])
            lines.append(f"- sequential FineAll forgets (BWT clearly negative): "
                         f"{100 * seq_bwt:+.2f} points: "
                         f"{'holds' if seq_bwt < -0.005 else 'does not hold: the sequence does not show forgetting'}")
        if "peterrec" in results:
            peter_average, _ = summary(results["peterrec"][0])
            gap = 100 * (average - peter_average)
            lines.append(f"- Conure's final average >= PeterRec's - 1 point: {_points(average)} vs "
                         f"{_points(peter_average)} ({gap:+.2f}): "
                         f"{'holds' if gap >= -1 else 'does not hold'}")
            conure_bytes = sum(r["bytes"] for r in records[1:]) / max(len(records) - 1, 1)
            peter = results["peterrec"][1][1:]
            peter_bytes = sum(r["bytes"] for r in peter) / max(len(peter), 1)
            lines.append(f"- Conure stores less per added task than PeterRec: {conure_bytes:,.0f} "
                         f"vs {peter_bytes:,.0f} bytes: "
                         f"{'holds' if conure_bytes < peter_bytes else 'does not hold'}")
            slower = [f"{c['task']} ({c['seconds']:.0f} s vs {p['seconds']:.0f} s)"
                      for c, p in zip(records[1:], peter) if c["seconds"] > p["seconds"]]
            lines.append("- each task learned in at most PeterRec's time: " + (
                "holds" if not slower else "does not hold for " + ", ".join(slower)))
    if "teracon" in results:
        lines += ["", "## Goals (TERACON issue)", "", *teracon_goals(results)]
    return lines


def teracon_goals(results):
    rows, records = results["teracon"]
    average, bwt = summary(rows)
    lines = [f"- TERACON's BWT >= -1 point: {100 * bwt:+.2f}: "
             f"{'holds' if bwt >= -0.01 else 'does not hold'}"]
    if "conure" in results:
        conure_average, _ = summary(results["conure"][0])
        lines.append(f"- TERACON's final average >= Conure's: {_points(average)} vs "
                     f"{_points(conure_average)}: "
                     f"{'holds' if average >= conure_average else 'does not hold'}")
    added = [r for r in records[1:] if r.get("backbone_parameters")]
    if added:
        backbone = added[0]["backbone_parameters"]
        shares = ", ".join(
            f"{r['task']} {r['parameters'] / backbone:.2%} "
            f"({(r['parameters'] - r['head_parameters']) / backbone:.2%} without its head)"
            for r in added)
        small = all(r["parameters"] < 0.01 * backbone for r in added)
        lines.append(f"- stored parameters per added task < 1% of the backbone's {backbone:,}: "
                     f"{shares}: {'holds' if small else 'does not hold'}")
    if "teracon_no_retention" in results:
        _, ablation_bwt = summary(results["teracon_no_retention"][0])
        lines.append(f"- without the retention loss (alpha = 0) TERACON forgets visibly more: "
                     f"BWT {100 * ablation_bwt:+.2f} vs {100 * bwt:+.2f}: "
                     f"{'holds' if ablation_bwt < bwt - 0.005 else 'does not hold'}")
    for variant, (what, reference) in TERACON_DIAGNOSTICS.items():
        if variant in results and reference in results:
            variant_average, variant_bwt = summary(results[variant][0])
            reference_average, reference_bwt = summary(results[reference][0])
            lines.append(f"- {what} ({variant} vs {reference}): final average "
                         f"{_points(variant_average)} vs {_points(reference_average)}, BWT "
                         f"{100 * variant_bwt:+.2f} vs {100 * reference_bwt:+.2f}")
    return lines


if __name__ == "__main__":
    main()
