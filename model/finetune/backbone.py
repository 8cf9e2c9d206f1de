"""Puts a pretrained backbone into a task model's encoder.

The pretraining checkpoint is restored into the model that wrote it (rebuilt
through its family's registration from its ``model_arch.json``), then the encoder's backbone variables are
copied one to one into the task encoder, whose extra model patches keep their
identity initialisation. Matching by position in ``backbone_variables()`` (with
a shape check) rather than by name is deliberate: adapters change which Keras
auto-names the task encoder's layers get, never the order of its backbone.
"""

import tensorflow as tf

from model import registry
from model.checkpoint_integrity import (
    READ_ERRORS,
    damage,
    non_finite_variables,
    tensorflow_warnings_silenced,
)
from util.errors import UserInputError


def read_pretrained_model(checkpoint_prefix, arch_config):
    """The pretraining model of ``checkpoint_prefix``, rebuilt from ``arch_config`` and restored.

    Raises:
        UserInputError: a file of the checkpoint is damaged (the message names
            it), the checkpoint does not hold this architecture, or it holds
            non-finite weights.
    """
    family = registry.family_of(arch_config)
    pretrained = family.build(family.config_from(arch_config))
    try:
        # The run's optimizer slots stay unread; TensorFlow's warning about each is held back.
        with tensorflow_warnings_silenced():
            status = tf.train.Checkpoint(model=pretrained).read(checkpoint_prefix)
            status.assert_existing_objects_matched()
            del status
    except (AssertionError, *READ_ERRORS) as error:
        why = damage(checkpoint_prefix)
        if why:
            raise UserInputError(f"checkpoint {checkpoint_prefix} cannot be read: {why}") from None
        raise UserInputError(
            f"checkpoint {checkpoint_prefix} does not hold the model its model_arch.json "
            f"describes ({str(error).splitlines()[0]})") from None
    bad = non_finite_variables(pretrained.weights)
    if bad:
        raise UserInputError(
            f"checkpoint {checkpoint_prefix} holds non-finite weights ({', '.join(bad[:3])}); "
            f"pass --pretrained_step of a checkpoint saved before the run diverged")
    return pretrained


def copy_variables(source, target, where):
    """Assigns each of ``source`` to the ``target`` at the same position (shapes checked).

    Raises:
        UserInputError: the lists differ in length or a shape differs (``where``
            names the checkpoint in the message).
    """
    if len(source) != len(target):
        raise UserInputError(
            f"{where}: its encoder has {len(source)} backbone variables, the task encoder "
            f"{len(target)}")
    for from_variable, to_variable in zip(source, target):
        if tuple(from_variable.shape) != tuple(to_variable.shape):
            raise UserInputError(
                f"{where}: {from_variable.path} has shape {tuple(from_variable.shape)}, the task "
                f"encoder expects {tuple(to_variable.shape)}")
        to_variable.assign(from_variable)
    return len(target)


def restore_backbone(encoder, checkpoint_prefix, arch_config):
    """Copies the pretrained encoder of ``checkpoint_prefix`` into ``encoder``.

    Args:
        encoder: the task model's built encoder (with or without adapters).
        checkpoint_prefix: a ``ckpt-<step>`` prefix of a pretraining run.
        arch_config: that run's configuration (``model_arch.json``), or a task
            description carrying the same architecture keys.

    Returns:
        The number of variables copied.

    Raises:
        UserInputError: as ``read_pretrained_model``, or the encoders differ.
    """
    pretrained = read_pretrained_model(checkpoint_prefix, arch_config)
    return copy_variables(pretrained.encoder.backbone_variables(), encoder.backbone_variables(),
                          f"checkpoint {checkpoint_prefix}")
