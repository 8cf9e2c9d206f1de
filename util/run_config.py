"""The JSON files of run folders: ``model_arch.json`` of a training run, ``task.json`` of a task, ``continual.json`` of a continual folder.

Written into the checkpoint folder when training starts, so inference and
evaluation never have to be told the architecture again, and so a resumed run
can refuse a changed architecture instead of failing deep inside a restore.
"""

import json
import os

from contracts.run_folder import CONTINUAL_MANIFEST_FILE, RUN_CONFIG_FILE, TASK_FILE
from util.atomic import write_text_atomically
from util.errors import UserInputError



def run_config_path(checkpoint_dir):
    return os.path.join(checkpoint_dir, RUN_CONFIG_FILE)


def write_run_config(checkpoint_dir, config):
    """Writes ``config`` (a JSON-serialisable dict) as model_arch.json, atomically."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    text = json.dumps(config, indent=2, sort_keys=True, default=str) + "\n"
    write_text_atomically(run_config_path(checkpoint_dir), text)


def read_run_config(checkpoint_dir, required=False, flag="--checkpoint_dir"):
    """The run's model_arch.json as a dict; None (or an error if ``required``) where absent.

    ``flag`` is the flag that named ``checkpoint_dir``, for the error.
    """
    path = run_config_path(checkpoint_dir)
    if not os.path.exists(path):
        if required:
            raise UserInputError(
                f"{flag} {checkpoint_dir} has no {RUN_CONFIG_FILE}: "
                f"is it the folder main/train.py wrote?")
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} is not readable JSON: {error}") from None


def write_task_description(task_dir, description):
    """Writes a task folder's ``task.json`` (a JSON-serialisable dict), atomically."""
    os.makedirs(task_dir, exist_ok=True)
    text = json.dumps(description, indent=2, sort_keys=True, default=str) + "\n"
    write_text_atomically(os.path.join(task_dir, TASK_FILE), text)


def read_task_description(task_dir):
    """A task folder's ``task.json`` as a dict."""
    path = os.path.join(task_dir, TASK_FILE)
    if not os.path.exists(path):
        raise UserInputError(f"{task_dir} holds no {TASK_FILE}: is it a main/finetune.py output?")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} is not readable JSON: {error}") from None


def write_continual_manifest(folder, manifest):
    """Writes a continual folder's ``continual.json`` (a JSON-serialisable dict), atomically."""
    os.makedirs(folder, exist_ok=True)
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    write_text_atomically(os.path.join(folder, CONTINUAL_MANIFEST_FILE), text)


def read_continual_manifest(folder, flag="--model_dir"):
    """A continual folder's ``continual.json``; None where the folder has none."""
    path = os.path.join(folder, CONTINUAL_MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise UserInputError(f"{flag}: {path} is not readable JSON: {error}") from None
