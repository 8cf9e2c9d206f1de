"""Which procedure learns a task for each continual method: the one place their names are looked up."""

from model.continual import conure_learning, sequential_learning
from model.methods.conure import Conure
from model.methods.sequential_fineall import SequentialFineAll

LEARNERS = {Conure.name: conure_learning.learn_task,
            SequentialFineAll.name: sequential_learning.learn_task}


def learner(method):
    """``learn_task(model, task, method, description, strategy, settings, log)`` of ``method``."""
    return LEARNERS[method.name]
