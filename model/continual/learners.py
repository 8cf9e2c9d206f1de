"""Which procedure learns a task for each continual method: the one place their names are looked up."""

from model.continual import conure_learning, sequential_learning, teracon_learning
from model.methods.conure import Conure
from model.methods.sequential_fineall import SequentialFineAll
from model.methods.teracon import Teracon

LEARNERS = {Conure.name: conure_learning.learn_task,
            SequentialFineAll.name: sequential_learning.learn_task,
            Teracon.name: teracon_learning.learn_task}


def learner(method):
    """``learn_task(model, state, task, method, description, strategy, settings, log)`` of ``method``.

    It trains ``model`` (the new task's, built from ``state``, the folder
    before the task) and returns ``(report, heads)``: the training report
    and ``{task_index: [np.ndarray]}`` of every EARLIER task's head it
    changed (TERACON trains them; the others change none).
    """
    return LEARNERS[method.name]
