"""The model families by name: the one place a ``--model`` value, or a run's recorded family, is looked up.

Adding a family is a new package under ``model/`` with a ``family.py`` that
defines a ``ModelFamily`` (``model/model_family.py``), and one line below.
``main/train.py --model`` takes its choices from here; inference, fine-tuning
and the resume check find a run's family through ``family_of``.
"""

from model.nextitnet.family import GREC, NEXTITNET
from model.sumn.family import SUMN
from model.supermoe.family import SUPERMOE
from util.errors import UserInputError

FAMILIES = {family.name: family for family in (SUMN, NEXTITNET, GREC, SUPERMOE)}

# Runs written before the family was recorded in model_arch.json were SUMN runs.
DEFAULT_FAMILY = SUMN.name


def family_names():
    """The registered family names, the default first."""
    return tuple(FAMILIES)


def get_family(name, flag="--model"):
    """The family called ``name``.

    Raises:
        UserInputError: no family has that name (the message names ``flag``).
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserInputError(
            f"{flag}={name!r} is not a model family; use one of: {', '.join(FAMILIES)}") from None


def family_of(run_config, where="model_arch.json"):
    """The family of a run configuration (``model_arch.json`` as a dict)."""
    return get_family(run_config.get("model", DEFAULT_FAMILY), flag=f"{where}: model")


def architecture_changes(previous, current):
    """``(key, previous, current)`` for each architecture key that differs between two runs.

    A different family is itself the change; otherwise the family's
    architecture fields are compared.
    """
    old = previous.get("model", DEFAULT_FAMILY)
    new = current.get("model", DEFAULT_FAMILY)
    if old != new:
        return [("model", old, new)]
    return FAMILIES[new].architecture_changes(previous, current) if new in FAMILIES else []
