"""Each SUPERMOE task scored by its own head on its test users, written beside the checkpoints.

Next-item prediction: HR@10 / NDCG@10 over every item (and HR@5 / MRR@5
among 99 sampled unseen items), ranked from the state at the newest item;
a classification task: accuracy, macro-F1 and AUC of its head on its test
users (``model/tasks``, the same metrics as fine-tuning). The same scores
on each task's validation users (10% of its train users, held out of
training) are written beside them: compare configurations (``--task_weights``,
the task indicator, expert counts) on those, never on the test users. The
file is ``task_scores-step-<N>.json``:
``{"step": N, "tasks": {name: {metric: value}}, "validation": {name: {metric: value}}}``
(``tasks`` holds the test scores).
"""

import json
import os

from contracts import run_folder
from util.atomic import write_text_atomically

HEADLINES = {"next_item": ("hr@10_full", "ndcg@10_full")}
CLASSIFICATION_HEADLINES = ("accuracy", "auc")


def score_tasks(model, tasks, split="test"):
    """{task name: its metrics on ``split``} of a ``SupermoeModel`` and its ``Task`` objects (same order).

    Args:
        split: ``"test"`` or ``"validation"``, the attribute of each task holding the users scored.
    """
    return {task.name: {name: float(value) for name, value in
                        task.scores(model.task_view(index), getattr(task, split)).items()}
            for index, task in enumerate(tasks)}


def write_task_scores(checkpoint_dir, step, model, data, log=print):
    """Scores every task of ``data.objective`` on its test users; writes and prints them.

    Returns:
        The path written.
    """
    scores = score_tasks(model, data.objective)
    validation = score_tasks(model, data.objective, "validation")
    path = os.path.join(checkpoint_dir, run_folder.TASK_SCORES_FILE.format(step=int(step)))
    write_text_atomically(path, json.dumps({"step": int(step), "tasks": scores, "validation": validation},
                                           indent=1, sort_keys=True) + "\n")
    for split, split_scores in (("validation", validation), ("test", scores)):
        for task in data.objective:
            metrics = split_scores[task.name]
            shown = HEADLINES.get(task.name, CLASSIFICATION_HEADLINES)
            log(f"{split} {task.name} ({len(getattr(task, split).sequences):,} users): "
                + "  ".join(f"{name} {metrics[name]:.4f}" for name in shown if name in metrics))
    log(f"task scores in {path}")
    return path
