"""Serving one task of a SUPERMOE training run: its user vectors and its head's predictions.

``main/inference.py --checkpoint_dir=runs/moe --task=gender`` serves a task
of the run the way it serves a task of a continual folder: every user's
vector as that task reads it (the task's CLS state; next-item: the state at
the newest item) and the head's predictions, from one checkpoint.
"""

import dataclasses

from model.inference import restore
from util.errors import UserInputError


@dataclasses.dataclass
class ServedRunTasks:
    """The tasks of one SUPERMOE run, restored from one checkpoint.

    Attributes:
        names: the run's task names, in training order.
        tables_dir: the table folder the run trained on ("" if unknown).
        max_items_per_user: most recent items per user it reads.
        num_item_ids: size of its item index.
        checkpoint: the checkpoint prefix served.
    """

    run_config: dict
    checkpoint_dir: str
    checkpoint: str
    names: list
    tables_dir: str
    max_items_per_user: int
    num_item_ids: int
    kind_of_folder: str = "SUPERMOE run"

    def model_for(self, task_name, sample_items, flag="--task"):
        """(the task's view of the restored model, its entry: ``kind`` and ``description``)."""
        if task_name not in self.names:
            raise UserInputError(f"{flag}={task_name} is not a task of this {self.kind_of_folder}; "
                                 f"its tasks: {', '.join(self.names)}")
        model = restore.restore_model(self.run_config, self.checkpoint, self.checkpoint_dir)
        view = model.task_view(self.names.index(task_name))
        return view, {"kind": view.description["task_kind"], "description": view.description}


def served_run_tasks(checkpoint_dir, run_config, step=0):
    """The ``ServedRunTasks`` of a run folder at checkpoint ``step`` (0: the latest)."""
    _, checkpoint = restore.checkpoint_for_step(checkpoint_dir, step)
    return ServedRunTasks(
        run_config=run_config, checkpoint_dir=checkpoint_dir, checkpoint=checkpoint,
        names=[task["name"] for task in run_config["model_tasks"]],
        tables_dir=run_config.get("tables_dir", ""),
        max_items_per_user=int(run_config["max_items_per_user"]),
        num_item_ids=int(run_config["num_item_ids"]))
