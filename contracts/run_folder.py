"""The contract of a run folder: what main/train.py and main/finetune.py write, and every later stage reads.

A pretraining run folder holds ``model_arch.json`` (the resolved configuration,
``util/run_config.py``) and TensorFlow checkpoints ``ckpt-<step>.index`` /
``ckpt-<step>.data-*``; a task folder holds ``task.json`` and the checkpoint of
the task's own variables, ``task-params.*``; a continual folder holds
``continual.json``, ``backbone.*`` and ``head-<task>.*``. Inference and fine-tuning find
checkpoints through these names, never through the training code.

Every folder kind a tool writes is also described as a ``FolderKind``: its
marker files (any one of them proves our tool wrote the folder) and the
patterns of every top-level entry it may hold. ``--overwrite`` removes a
folder only when it carries a marker and holds nothing else
(``util/output_folder.py``), so a typo never deletes someone's files.
"""

import dataclasses
import fnmatch
import glob
import os
import re

RUN_CONFIG_FILE = "model_arch.json"
CHECKPOINT_NAME = "ckpt"
# tf.train.CheckpointManager's index of the run's checkpoints (the newest first).
CHECKPOINT_STATE_FILE = "checkpoint"
# TensorFlow writes ckpt-<step> into this folder first (functional_saver.py: "<prefix>_temp/part"),
# then merges it into place; a save killed midway leaves it behind.
CHECKPOINT_TEMP_SUFFIX = "_temp"
TENSORBOARD_SUBDIR = "train"
USER_VECTORS_SUBDIR = "user_vectors"
# A multi-task run's scores of each task after training (model/supermoe/task_scores.py).
TASK_SCORES_FILE = "task_scores-step-{step}.json"
TASK_FILE = "task.json"
TASK_PARAMS_PREFIX = "task-params"
TASK_METRICS_FILE = "metrics.json"
# A continual model folder (main/continual.py): the task manifest, the shared backbone
# checkpoint (with every task's kernel masks, packed as bits) and one head checkpoint per task.
CONTINUAL_MANIFEST_FILE = "continual.json"
CONTINUAL_BACKBONE_PREFIX = "backbone"
CONTINUAL_HEAD_PREFIX = "head"
INFERENCE_SUMMARY_FILE = "inference.json"
INFERENCE_SETTINGS_FILE = "_inference_settings.json"
# A folder's lock sits BESIDE it (<parent>/.<name>.lock): emptying or replacing the folder
# (--overwrite, util.atomic.atomic_directory) never removes the lock of the job doing it.
LOCK_SUFFIX = ".lock"

_STEP_PATTERN = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index$")
_TEMP_PATTERN = re.compile(rf"{CHECKPOINT_NAME}-(\d+){CHECKPOINT_TEMP_SUFFIX}$")
# util.output_folder.check_writable's probe file, removed at once (unless the job is killed then).
WRITE_CHECK_PREFIX = ".write-check."
# Short-lived files of our tools, in any folder kind: util.atomic's ".<name>.<random>.tmp"
# and ".<name>.<random>.old", and the writability probe.
_OUR_TEMPORARIES = (".*.*.tmp", ".*.*.old", WRITE_CHECK_PREFIX + "*")


@dataclasses.dataclass(frozen=True)
class FolderKind:
    """What one of our tools writes into a folder.

    Attributes:
        what: the folder's name in messages ("a training run folder").
        written_by: the tool, for messages ("main/train.py").
        markers: file names of which at least one is present in every such folder.
        entries: shell patterns matching every top-level entry it may hold.
    """

    what: str
    written_by: str
    markers: tuple
    entries: tuple

    def is_ours(self, name):
        return any(fnmatch.fnmatchcase(name, pattern)
                   for pattern in self.entries + _OUR_TEMPORARIES)


TRAINING_RUN = FolderKind(
    what="a training run folder", written_by="main/train.py",
    markers=(RUN_CONFIG_FILE, CHECKPOINT_STATE_FILE),
    entries=(RUN_CONFIG_FILE, CHECKPOINT_STATE_FILE, f"{CHECKPOINT_NAME}-*.index",
             f"{CHECKPOINT_NAME}-*.data-*", f"{CHECKPOINT_NAME}-*{CHECKPOINT_TEMP_SUFFIX}",
             TENSORBOARD_SUBDIR, USER_VECTORS_SUBDIR, TASK_SCORES_FILE.format(step="*")))
TASK_RUN = FolderKind(
    what="a task folder", written_by="main/finetune.py",
    markers=(TASK_FILE,),
    entries=(TASK_FILE, TASK_METRICS_FILE, f"{TASK_PARAMS_PREFIX}.*"))
CONTINUAL_RUN = FolderKind(
    what="a continual model folder", written_by="main/continual.py",
    markers=(CONTINUAL_MANIFEST_FILE,),
    entries=(CONTINUAL_MANIFEST_FILE, f"{CONTINUAL_BACKBONE_PREFIX}.*",
             f"{CONTINUAL_HEAD_PREFIX}-*.*"))
# Output shards are named after the input shards, which can be anything, so an inference
# folder is recognised by its settings file only; its --overwrite removes only its own shards.
INFERENCE_OUTPUTS = FolderKind(
    what="a user-vector folder", written_by="main/inference.py",
    markers=(INFERENCE_SETTINGS_FILE, INFERENCE_SUMMARY_FILE),
    entries=("*",))


def checkpoint_path(checkpoint_dir, step):
    """The prefix of ``ckpt-<step>`` in ``checkpoint_dir``."""
    return os.path.join(checkpoint_dir, f"{CHECKPOINT_NAME}-{step}")


def checkpoint_files(prefix):
    """The files of the checkpoint ``prefix``: its ``.index`` and its ``.data-*`` shards."""
    return [prefix + ".index"] + sorted(glob.glob(glob.escape(prefix) + ".data-*"))


def checkpoint_steps(checkpoint_dir):
    """Steps of the complete checkpoints in a folder, ascending."""
    steps = []
    for path in glob.glob(os.path.join(glob.escape(checkpoint_dir), f"{CHECKPOINT_NAME}-*.index")):
        match = _STEP_PATTERN.search(os.path.basename(path))
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


def unfinished_checkpoint_folders(checkpoint_dir):
    """``ckpt-<step>_temp`` folders a killed save left in ``checkpoint_dir``, by name."""
    try:
        names = os.listdir(checkpoint_dir)
    except OSError:
        return []
    return sorted(os.path.join(checkpoint_dir, name) for name in names
                  if _TEMP_PATTERN.match(name) and os.path.isdir(os.path.join(checkpoint_dir, name)))


def continual_head_prefix(folder, task_index):
    """The prefix of task ``task_index``'s head checkpoint in a continual folder."""
    return os.path.join(folder, f"{CONTINUAL_HEAD_PREFIX}-{task_index:03d}")


def lock_path(folder, part=""):
    """The lock file of ``folder`` (one per ``part``, e.g. an inference slice): beside it, hidden."""
    parent, name = os.path.split(os.path.realpath(folder))
    return os.path.join(parent, f".{name}{'.' + part if part else ''}{LOCK_SUFFIX}")
