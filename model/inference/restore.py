"""Which checkpoint and which hop inference uses, and restoring any registered family from it.

Only the model is restored: the checkpoint also holds the optimizer's slots
and the step, which inference has no use for. Every model variable must come
back from the checkpoint; a model that does not match it (another
``model_arch.json``, a renamed layer) is a ``UserInputError``, not a model
that silently encodes with freshly initialised weights.
"""

import os

import keras
import tensorflow as tf

from contracts.run_folder import CHECKPOINT_NAME, RUN_CONFIG_FILE, checkpoint_path, checkpoint_steps
from model import registry
from model.checkpoint_integrity import (
    READ_ERRORS,
    damage,
    non_finite_variables,
    tensorflow_warnings_silenced,
)
from util.errors import UserInputError

_MAX_LISTED_STEPS = 20


def _listed(steps):
    shown = [str(step) for step in steps[-_MAX_LISTED_STEPS:]]
    prefix = "..., " if len(steps) > _MAX_LISTED_STEPS else ""
    return prefix + ", ".join(shown)


def checkpoint_for_step(checkpoint_dir, step=0, folder_flag="--checkpoint_dir", step_flag="--step"):
    """The checkpoint ``--step`` names: ``(step, prefix)``.

    Args:
        checkpoint_dir: the run folder main/train.py wrote.
        step: 0 for the latest checkpoint; N for ``ckpt-N``, or ``ckpt-(N+1)``
            where only that exists (SUMN's inference accepted both, as its
            runs saved one step after the round number).
        folder_flag, step_flag: the flags the user gave the two with, named
            in the errors (main/finetune.py's are --pretrained, --pretrained_step).

    Raises:
        UserInputError: the folder is missing or holds no checkpoint, ``step``
            is negative, or neither ``ckpt-N`` nor ``ckpt-(N+1)`` exists (the
            message lists the steps that do).
    """
    if not os.path.isdir(checkpoint_dir):
        raise UserInputError(f"{folder_flag} {checkpoint_dir} does not exist")
    steps = checkpoint_steps(checkpoint_dir)
    if not steps:
        raise UserInputError(
            f"{folder_flag} {checkpoint_dir} holds no checkpoint ({CHECKPOINT_NAME}-<step>.index); "
            f"train with main/train.py first")
    if step < 0:
        raise UserInputError(f"{step_flag}={step} is negative; pass 0 for the latest checkpoint")
    if step == 0:
        chosen = steps[-1]
    elif step in steps:
        chosen = step
    elif step + 1 in steps:
        chosen = step + 1
    else:
        raise UserInputError(
            f"{step_flag}={step}: {checkpoint_dir} has no {CHECKPOINT_NAME}-{step} (nor "
            f"{CHECKPOINT_NAME}-{step + 1}); it holds steps {_listed(steps)}")
    return chosen, checkpoint_path(checkpoint_dir, chosen)


def hop_index(hop, num_hops):
    """The 0-based hop ``--hop`` names: 0 is the last hop, k the k-th (1-based).

    Raises:
        UserInputError: ``hop`` is negative or above ``num_hops``.
    """
    if not 0 <= hop <= num_hops:
        raise UserInputError(
            f"--hop={hop} is out of range: the model has {num_hops} hop"
            f"{'s' if num_hops != 1 else ''} (pass 1..{num_hops}, or 0 for the last)")
    return (hop or num_hops) - 1


def build_run_model(run_config, config_dir=None):
    """The model a run configuration describes, through its family's registration (random weights)."""
    where = os.path.join(config_dir, RUN_CONFIG_FILE) if config_dir else RUN_CONFIG_FILE
    family = registry.family_of(run_config, where)
    return family.build(family.config_from(run_config, where))


def random_model(run_config, seed, config_dir=None):
    """A model of the run's architecture, randomly initialised from ``seed``.

    Its vectors are the random-encoder baseline: what the architecture gives
    before any pretraining.
    """
    keras.utils.set_random_seed(seed)
    return build_run_model(run_config, config_dir)


def restore_model(run_config, prefix, config_dir=None):
    """The run's model (any registered family) with every variable restored from ``prefix``.

    Args:
        run_config: the run's model_arch.json as a dict.
        prefix: a checkpoint prefix such as ``runs/sumn/ckpt-1000``.
        config_dir: the folder of model_arch.json, for messages.

    Raises:
        UserInputError: model_arch.json lacks an architecture key, a file of
            the checkpoint is damaged (named), the checkpoint does not hold
            every model variable with its shape, or a weight is nan or infinite.
    """
    where = os.path.join(config_dir, RUN_CONFIG_FILE) if config_dir else RUN_CONFIG_FILE
    model = build_run_model(run_config, config_dir)
    with tensorflow_warnings_silenced():
        checkpoint = tf.train.Checkpoint(model=model)
        try:
            status = checkpoint.read(prefix)
            status.expect_partial()  # the optimizer and the step are not needed
            status.assert_existing_objects_matched()
        except (AssertionError, *READ_ERRORS) as error:
            why = damage(prefix)
            if why:
                raise UserInputError(f"checkpoint {prefix} cannot be read: {why}; pass --step "
                                     f"of another checkpoint") from None
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserInputError(
                f"checkpoint {prefix} does not match the model described by {where} "
                f"({first_line[:300]})") from None
        finally:
            del checkpoint
    bad = non_finite_variables(model.weights)
    if bad:
        raise UserInputError(
            f"checkpoint {prefix} holds non-finite weights ({', '.join(bad[:3])}), so its user "
            f"vectors would be too; pass --step of a checkpoint saved before its run diverged")
    return model
