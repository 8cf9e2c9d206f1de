"""Each SUPERMOE task scored by its own head on its test users, written beside the checkpoints.

Next-item prediction: HR@10 / NDCG@10 over every item (and HR@5 / MRR@5
among 99 sampled unseen items), ranked from the state at the newest item;
a classification task: accuracy, macro-F1 and AUC of its head on its test
users (``model/tasks``, the same metrics as fine-tuning). The file is
``task_scores-step-<N>.json``: ``{"step": N, "tasks": {name: {metric: value}}}``.
"""

import json
import os

from util.atomic import write_text_atomically

HEADLINES = {"next_item": ("hr@10_full", "ndcg@10_full")}
CLASSIFICATION_HEADLINES = ("accuracy", "auc")


def score_tasks(model, tasks):
    """{task name: its test metrics} of a ``SupermoeModel`` and its ``Task`` objects (same order)."""
    return {task.name: {name: float(value) for name, value in
                        task.scores(model.task_view(index), task.test).items()}
            for index, task in enumerate(tasks)}


def write_task_scores(checkpoint_dir, step, model, data, log=print):
    """Scores every task of ``data.objective`` on its test users; writes and prints them.

    Returns:
        The path written.
    """
    scores = score_tasks(model, data.objective)
    path = os.path.join(checkpoint_dir, f"task_scores-step-{int(step)}.json")
    write_text_atomically(path, json.dumps({"step": int(step), "tasks": scores}, indent=1,
                                           sort_keys=True) + "\n")
    for task in data.objective:
        metrics = scores[task.name]
        shown = HEADLINES.get(task.name, CLASSIFICATION_HEADLINES)
        log(f"test {task.name} ({len(task.test.sequences):,} users): "
            + "  ".join(f"{name} {metrics[name]:.4f}" for name in shown if name in metrics))
    log(f"task scores in {path}")
    return path
