"""The downstream methods by name: the one place a ``--method`` value, or a task's recorded method, is looked up.

Adding a method is a ``Method`` subclass in a new file of ``model/methods``
and one entry below.
"""

from model.methods.baselines import FineAll, FineCls, FineLast, Scratch
from model.methods.conure import Conure
from model.methods.peterrec import PeterRec
from model.methods.sequential_fineall import SequentialFineAll
from model.methods.teracon import Teracon
from util.errors import UserInputError

METHODS = {method.name: method for method in (PeterRec(), FineAll(), FineCls(), FineLast(),
                                              Scratch(), Conure(), SequentialFineAll(),
                                              Teracon())}
DEFAULT_METHOD = PeterRec.name
DEFAULT_CONTINUAL_METHOD = Conure.name


def method_names(continual=False):
    """Names of the methods of main/finetune.py (one task per folder) or of main/continual.py."""
    return tuple(name for name, method in METHODS.items() if method.continual == continual)


def get_method(name, flag="--method"):
    """The method called ``name``; a ``UserInputError`` naming ``flag`` if there is none."""
    try:
        return METHODS[name]
    except KeyError:
        raise UserInputError(
            f"{flag}={name!r} is not a method; use one of: {', '.join(METHODS)}") from None
