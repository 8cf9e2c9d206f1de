"""Serving one learned task of a continual folder: its model, and what it writes per user."""

from model.continual.continual_checkpoint import read_state
from model.continual.continual_state import task_model
from model.continual.folder_report import kernel_shapes
from model.methods.registry import get_method
from model.tasks.registry import task_class
from util.errors import UserInputError


def read_folder_state(folder, manifest):
    """The ``ContinualState`` of ``folder`` (its manifest already read)."""
    method = get_method(manifest["method"], "continual.json: method")
    state = read_state(folder, manifest, kernel_shapes(manifest) if method.kernel_masks else [])
    expected = 3 * len(manifest["dilations"]) if method.task_tables and state.tasks else 0
    if len(state.task_tables) != expected:
        raise UserInputError(
            f"{folder}: its backbone checkpoint holds {len(state.task_tables)} task tables; a "
            f"{manifest['method']} folder of this architecture holds {expected}")
    return state


def served_task_model(state, task_name, sample_items, flag="--task"):
    """The model serving learned task ``task_name`` of ``state``, and its manifest entry.

    Raises:
        UserInputError: the folder has not learned that task (the message lists those it has).
    """
    index = state.task_index(task_name)
    if index is None:
        learned = ", ".join(entry["name"] for entry in state.tasks) or "none"
        raise UserInputError(f"{flag}={task_name} is not a task of this continual folder; "
                             f"its tasks: {learned}")
    return task_model(state, index, sample_items), state.tasks[index - 1]


class ServedFolderTasks:
    """The tasks of a continual folder, as ``main/inference.py --task`` serves them.

    The same interface as ``model.supermoe.serving.ServedRunTasks``: ``names``,
    ``tables_dir``, ``max_items_per_user``, ``num_item_ids`` and
    ``model_for(task_name, sample_items)``.
    """

    kind_of_folder = "continual folder"

    def __init__(self, state):
        self.state = state
        manifest = state.manifest
        self.names = [entry["name"] for entry in state.tasks]
        self.tables_dir = manifest.get("tables_dir", "")
        self.max_items_per_user = int(manifest["max_items_per_user"])
        self.num_item_ids = int(manifest["num_item_ids"])

    def model_for(self, task_name, sample_items, flag="--task"):
        return served_task_model(self.state, task_name, sample_items, flag)


def task_outputs(model, items, top_k):
    """Per-user outputs of a served task: ``vectors`` [num_users, dim] and its head's predictions."""
    kind = task_class(model.description, "continual.json")
    vectors = kind.serving_vectors(model, items)
    return dict(kind.predictions(model, items, vectors, top_k), vectors=vectors)
