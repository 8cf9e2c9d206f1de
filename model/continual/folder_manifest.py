"""A continual folder's manifest (``continual.json``) and the task descriptions its models are built from.

The manifest names the method and the family's architecture (copied from the
pretrained run), where the backbone came from, and one entry per learned task
(``folder_report.task_entry``), each holding the task description its
``TaskModel`` is rebuilt from.
"""

import os

from model.continual.continual_state import ContinualState
from model.finetune.backbone import copy_variables, read_pretrained_model
from model.finetune.task_checkpoint import build_task_model


def new_manifest(pretrained, family, method_name, pretrained_dir, prefix, step):
    """The manifest of a folder that starts from checkpoint ``prefix`` of the run ``pretrained_dir``.

    Args:
        pretrained: the run's ``model_arch.json``.
        family: its ``ModelFamily``.
        method_name: the continual method.
        pretrained_dir, prefix, step: the run folder, the checkpoint and its step.
    """
    manifest = {key: pretrained[key] for key in family.architecture_keys() if key in pretrained}
    manifest.update(family.traits)
    manifest.update(
        model=family.name, method=method_name, pretrained_run=os.path.abspath(pretrained_dir),
        pretrained_checkpoint=os.path.abspath(prefix), pretrained_step=step,
        pretrained_num_sampled=int(pretrained.get("num_sampled", 0)),
        max_items_per_user=pretrained["max_items_per_user"],
        tables_dir=pretrained.get("tables_dir", ""), tasks=[])
    return manifest


def task_description(manifest, method, task, index, dropout_rate, settings):
    """The description of task ``index`` (its ``TaskModel``'s recipe, kept in its manifest entry)."""
    description = {key: value for key, value in manifest.items() if key != "tasks"}
    description.update(method=method.name, dropout_rate=dropout_rate, task_index=index)
    description.update(task.description_entries())
    description.update(method.description_entries(settings))
    return description


def first_task_model(manifest, description, sample_items):
    """Task 1's model: the pretrained encoder, and its item softmax as the head; no weight owned yet."""
    model = build_task_model(description, sample_items)
    pretrained = read_pretrained_model(manifest["pretrained_checkpoint"], manifest)
    where = f"checkpoint {manifest['pretrained_checkpoint']}"
    copy_variables(pretrained.encoder.backbone_variables(), model.encoder.backbone_variables(),
                   where)
    copy_variables(pretrained.softmax.weights, model.head.weights, where)
    return model


def without_last_task(state):
    """``state`` before its last task: that task's weights freed, its head and entry dropped.

    The weights it trained keep their values as free weights (a relearned
    task starts from them, as any Conure task starts from the free weights).
    """
    index = len(state.tasks)
    owners = [owner * (owner != index) for owner in state.owners]
    heads = {key: value for key, value in state.heads.items() if key != index}
    return ContinualState(dict(state.manifest, tasks=state.tasks[:-1]), state.backbone, owners,
                          heads)
