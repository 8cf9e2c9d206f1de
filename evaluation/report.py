"""Writes the downstream evaluation report: JSON, a Markdown table and a bar chart.

``output_dir/evaluation.json``  every metric of every model on every task, plus metadata
``output_dir/evaluation.md``    one row per model, headline columns per task, and the protocol
``output_dir/evaluation.png``   grouped bars: one group per task, its headline metric

All three are rendered first and then renamed into place (``util/atomic.py``),
so a failed run leaves no half-written report.

Example:
    report = build_report([result.as_dict() for result in results], metadata)
    write_evaluation_report(report, "runs/ml1m/evaluation")
    print(markdown_table(report))
"""

import contextlib
import json
import os

from matplotlib.figure import Figure

from util.atomic import atomic_path
from evaluation.probes import MAJORITY, headline_metric

JSON_FILE = "evaluation.json"
MARKDOWN_FILE = "evaluation.md"
PLOT_FILE = "evaluation.png"
REPORT_FILES = (JSON_FILE, MARKDOWN_FILE, PLOT_FILE)

_METRIC_LABELS = {"auc": "AUC", "accuracy": "acc", "macro_f1": "macro-F1"}
_RESULT_FIELDS = ("method", "accuracy", "macro_f1", "auc", "n_train", "n_test", "C", "cv_score", "warnings")


def build_report(results, metadata):
    """Groups per-(model, task) results into the report structure.

    Args:
        results: list of dicts with ``model``, ``task``, ``n_classes`` and the
            fields of ``evaluation.probes.ProbeResult``.
        metadata: dict written as is (date, split, probe, inputs, user counts...).
    Returns:
        {"metadata": ..., "models": [names, majority last], "tasks": {task: {
        "n_classes", "headline_metric", "n_train", "n_test", "results": {model: {...}}}}}
    """
    models = []
    tasks = {}
    for result in results:
        if result["model"] not in models:
            models.append(result["model"])
        task = tasks.setdefault(
            result["task"],
            {
                "n_classes": result["n_classes"],
                "headline_metric": headline_metric(result["n_classes"]),
                "n_train": result["n_train"],
                "n_test": result["n_test"],
                "results": {},
            },
        )
        task["results"][result["model"]] = {field: result[field] for field in _RESULT_FIELDS}
    # The chance level closes the table.
    models.sort(key=lambda name: name == MAJORITY)
    return {"metadata": metadata, "models": models, "tasks": tasks}


def table_columns(report):
    """[(task, metric)]: the headline metric of each task first, then its companion."""
    columns = []
    for task, entry in report["tasks"].items():
        if entry["headline_metric"] == "auc":
            columns += [(task, "auc"), (task, "accuracy")]
        else:
            columns += [(task, "accuracy"), (task, "macro_f1")]
    return columns


def markdown_table(report):
    """One row per model (the majority row is the chance level), two columns per task."""
    columns = table_columns(report)
    header = ["model"] + [f"{task} {_METRIC_LABELS[metric]}" for task, metric in columns]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(columns) + "|"]
    for model in report["models"]:
        label = f"{model} (chance level)" if model == MAJORITY else model
        cells = [_format(report["tasks"][task]["results"].get(model, {}).get(metric)) for task, metric in columns]
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_line(report, model):
    """One line saying what to look at: ``model``'s headline margin over every other row.

    Example: ``look at: sumn_mhop minus each baseline on each task's headline metric
    (positive: sumn_mhop is better): segment AUC +0.003 vs random_encoder, +0.185 vs
    tfidf_logistic; age_group acc ...``. The majority row is the chance level, not a
    margin anyone needs; tasks where ``model`` has no score are left out.
    """
    others = [name for name in report["models"] if name not in (model, MAJORITY)]
    parts = []
    for task, entry in report["tasks"].items():
        metric = entry["headline_metric"]
        mine = entry["results"].get(model, {}).get(metric)
        margins = [
            f"{mine - theirs:+.3f} vs {name}"
            for name in others
            if mine is not None and (theirs := entry["results"].get(name, {}).get(metric)) is not None
        ]
        if margins:
            parts.append(f"{task} {_METRIC_LABELS[metric]} " + ", ".join(margins))
    if not parts:
        return f"look at: the {model} row against the chance level (no other baseline was probed).\n"
    return (f"look at: {model} minus each baseline on each task's headline metric "
            f"(positive: {model} is better): " + "; ".join(parts) + ".\n")


def render_markdown(report):
    """The whole ``evaluation.md``: protocol, results table, task sizes and chosen C."""
    metadata = report["metadata"]
    lines = ["# Downstream evaluation of frozen user vectors", ""]
    for key in ("date", "split", "probe_model", "model_selection", "labels"):
        if key in metadata:
            lines.append(f"- **{key.replace('_', ' ')}**: {metadata[key]}")
    for name, source in metadata.get("inputs", {}).items():
        lines.append(f"- **{name}**: {source}")
    if "users" in metadata:
        lines.append("- **users**:")
        lines += [f"  - {name}: {count}" for name, count in metadata["users"].items()]
    for note in metadata.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "## Results", "", markdown_table(report)]
    lines += ["## Tasks", "", "| task | classes | headline | train users | test users |", "|---|---:|---|---:|---:|"]
    for task, entry in report["tasks"].items():
        lines.append(
            f"| {task} | {entry['n_classes']} | {_METRIC_LABELS[entry['headline_metric']]} "
            f"| {entry['n_train']} | {entry['n_test']} |"
        )
    tuned = [model for model in report["models"] if model != MAJORITY]
    if tuned:
        lines += ["", "## Chosen C (cross-validation score on train users)", ""]
        lines += ["| model | " + " | ".join(report["tasks"]) + " |", "|---" + "|---:" * len(report["tasks"]) + "|"]
        for model in tuned:
            cells = []
            for entry in report["tasks"].values():
                result = entry["results"].get(model, {})
                score = "" if result.get("cv_score") is None else f" ({result['cv_score']:.3f})"
                cells.append(f"{_format(result.get('C'), digits=None)}{score}")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_plot(report, path):
    """Grouped bar chart of each task's headline metric, one bar per model, as PNG."""
    tasks = list(report["tasks"])
    models = report["models"]
    width = 0.8 / max(len(models), 1)
    figure = Figure(figsize=(max(6.0, 1.2 + 0.45 * len(models) * len(tasks)), 4.5), dpi=120)
    axes = figure.add_subplot()
    for index, model in enumerate(models):
        heights = []
        for task in tasks:
            entry = report["tasks"][task]
            value = entry["results"].get(model, {}).get(entry["headline_metric"])
            heights.append(float("nan") if value is None else value)
        positions = [group + (index - (len(models) - 1) / 2) * width for group in range(len(tasks))]
        label = f"{model} (chance level)" if model == MAJORITY else model
        style = {"color": "0.8", "edgecolor": "0.4", "hatch": "//"} if model == MAJORITY else {}
        bars = axes.bar(positions, heights, width, label=label, **style)
        axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels(
        [f"{task}\n({_METRIC_LABELS[report['tasks'][task]['headline_metric']]})" for task in tasks]
    )
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel("AUC (binary) / accuracy (multi-class)")
    metadata = report["metadata"]
    axes.set_title(
        f"Downstream probes ({metadata.get('probe', '')}), test users of the "
        f"{metadata.get('split_name', '')} split",
        fontsize=10,
    )
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, format="png")


def write_evaluation_report(report, output_dir):
    """Writes the three report files into ``output_dir`` all-or-nothing; returns their paths."""
    paths = {name: os.path.join(output_dir, name) for name in REPORT_FILES}
    json_text = json.dumps(report, indent=2, sort_keys=False, default=_json_default) + "\n"
    markdown_text = render_markdown(report)
    with contextlib.ExitStack() as stack:
        temporary = {name: stack.enter_context(atomic_path(path)) for name, path in paths.items()}
        with open(temporary[JSON_FILE], "w", encoding="utf-8") as handle:
            handle.write(json_text)
        with open(temporary[MARKDOWN_FILE], "w", encoding="utf-8") as handle:
            handle.write(markdown_text)
        render_plot(report, temporary[PLOT_FILE])
        # mkstemp creates 0600 files; a report is meant to be read by others.
        mode = 0o666 & ~_current_umask()
        for path in temporary.values():
            os.chmod(path, mode)
    return paths


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _format(value, digits=3):
    if value is None:
        return "-"
    if digits is None:
        return f"{value:g}"
    return f"{value:.{digits}f}"


def _json_default(value):
    # numpy scalars from the probes.
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
