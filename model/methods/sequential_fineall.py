"""Sequential FineAll: the continual baseline that fine-tunes everything on each task in turn.

One backbone, one head per task, nothing frozen: after task i, tasks j < i
are served by the backbone task i left (their heads unchanged), which is how
forgetting shows (``model/continual/sequential_learning.py``).
"""

from model.methods.method import Method


class SequentialFineAll(Method):
    name = "sequential_fineall"
    summary = ("baseline: one model, every weight fine-tuned on each task in turn (earlier "
               "tasks are forgotten)")
    continual = True

    def trainable_variables(self, task_model, description):
        return list(task_model.encoder.backbone_variables()) + list(
            task_model.head.trainable_variables)
