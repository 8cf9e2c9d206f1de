"""The contract of a run folder: what main/train.py and main/finetune.py write, and every later stage reads.

A pretraining run folder holds ``model_arch.json`` (the resolved configuration,
``util/run_config.py``) and TensorFlow checkpoints ``ckpt-<step>.index`` /
``ckpt-<step>.data-*``; a task folder holds ``task.json`` and the checkpoint of
the task's own variables, ``task-params.*``. Inference and fine-tuning find
checkpoints through these names, never through the training code.
"""

import glob
import os
import re

RUN_CONFIG_FILE = "model_arch.json"
CHECKPOINT_NAME = "ckpt"
TASK_FILE = "task.json"
TASK_PARAMS_PREFIX = "task-params"

_STEP_PATTERN = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index$")


def checkpoint_path(checkpoint_dir, step):
    """The prefix of ``ckpt-<step>`` in ``checkpoint_dir``."""
    return os.path.join(checkpoint_dir, f"{CHECKPOINT_NAME}-{step}")


def checkpoint_steps(checkpoint_dir):
    """Steps of the complete checkpoints in a folder, ascending."""
    steps = []
    for path in glob.glob(os.path.join(checkpoint_dir, f"{CHECKPOINT_NAME}-*.index")):
        match = _STEP_PATTERN.search(os.path.basename(path))
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)
