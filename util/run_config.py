"""``model_arch.json``: the resolved configuration of a training run.

Written into the checkpoint folder when training starts, so inference and
evaluation never have to be told the architecture again, and so a resumed run
can refuse a changed architecture instead of failing deep inside a restore.
"""

import json
import os

from util.atomic import write_text_atomically
from util.errors import UserInputError

RUN_CONFIG_FILE = "model_arch.json"

# Flags that change the shapes or meaning of checkpointed variables.
ARCHITECTURE_KEYS = (
    "model", "num_vocabulary", "word_emb_dim", "model_dim", "mlp_layers", "pooling", "num_hops",
    "num_item_ids", "dilations", "kernel_size",
)


def run_config_path(checkpoint_dir):
    return os.path.join(checkpoint_dir, RUN_CONFIG_FILE)


def write_run_config(checkpoint_dir, config):
    """Writes ``config`` (a JSON-serialisable dict) as model_arch.json, atomically."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    text = json.dumps(config, indent=2, sort_keys=True, default=str) + "\n"
    write_text_atomically(run_config_path(checkpoint_dir), text)


def read_run_config(checkpoint_dir, required=False):
    """The run's model_arch.json as a dict; None (or an error if ``required``) where absent."""
    path = run_config_path(checkpoint_dir)
    if not os.path.exists(path):
        if required:
            raise UserInputError(
                f"--checkpoint_dir {checkpoint_dir} has no {RUN_CONFIG_FILE}: "
                f"is it the folder main/train.py wrote?")
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} is not readable JSON: {error}") from None


def architecture_changes(previous, current):
    """Architecture flags whose values differ: a list of (flag, previous, current)."""
    changes = []
    for key in ARCHITECTURE_KEYS:
        # Compared as JSON: a tuple flag and the list model_arch.json stored are equal.
        if key in previous and key in current and (
                json.dumps(previous[key], default=str) != json.dumps(current[key], default=str)):
            changes.append((key, previous[key], current[key]))
    return changes
