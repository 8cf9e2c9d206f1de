"""Sequential fine-tuning as a continual method: one model fine-tuned task after task (it forgets).

The baseline continual learning is measured against (Lopez-Paz and
Ranzato, 2017; Conure's and TERACON's papers): every weight trains on each
new task, so the tasks before it are served by a backbone that has moved on.
Each task trains for the same epochs a Conure task does (its train and
retrain phases together), so the two are compared at equal cost.
"""

import time

from model.continual.task_phases import train_phase


def learn_task(model, state, task, method, description, strategy, settings, log=print):
    """Fine-tunes every weight of ``model`` on ``task``.

    Returns (report, {}): the phase's report and the seconds; the earlier
    tasks' heads are left as they are (``state`` is not read).
    """
    started = time.perf_counter()
    epochs = settings.epochs + settings.retrain_epochs
    report = {"train": train_phase(model, task, method, description, strategy, settings, epochs,
                                   log, "fine-tune every weight")}
    report["seconds"] = time.perf_counter() - started
    return report, {}
