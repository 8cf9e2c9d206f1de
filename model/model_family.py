"""What a model family is: the one registration that makes ``--model=<name>`` work everywhere.

A family bundles what every stage needs to know about one kind of model, so
that no entry point branches on its name:

* ``config_class``: a frozen dataclass. Its fields are what the builder
  needs, taken from ``model_arch.json``; fields marked ``architecture()``
  (the default) change the shapes or meaning of checkpointed variables and
  are compared when a run resumes.
* ``build(config)``: the model, every variable created (one tiny forward pass
  on the family's sample inputs), so checkpoints restore eagerly.
* ``pretraining_inputs``: which table of a table folder the family pretrains
  on, how it is checked and read (``data_loader.pretraining_inputs``).
* ``make_pretrainer(model, optimizer, strategy, settings, data)``: the
  ``DistributedTrainer`` of its pretraining objective (``data`` is what
  ``pretraining_inputs.prepare`` returned: SUPERMOE's trainer takes its
  tasks from there).
* ``user_encoder``: how ``main/inference.py`` reads user vectors out of it,
  ``(model, hop_index) -> callable``; None where batch inference does not
  serve the family yet.
* ``report_tasks(checkpoint_dir, step, model, data)``: after training, a
  family trained on supervised tasks scores them on their test users and
  writes the scores into the run folder (SUPERMOE); None for the others.
* ``served_tasks(checkpoint_dir, run_config, step)``: the tasks of a run
  that ``main/inference.py --task`` serves (SUPERMOE's heads); None where a
  run has no task of its own.
* ``traits``: facts about the family that task.json records beside its
  architecture (NextItNet: ``causal``).
* ``settings_problem(settings)``: a flag value the family cannot train
  with, as one sentence (or None).
* ``build_backbone(config, make_adapter)``: the encoder a downstream task
  reuses, ``make_adapter(block_index)`` giving the method's adapter of each
  block (or None), plus how a user
  vector is read from it (``TaskBackbone``); None for a family that is not
  fine-tuned.
"""

import dataclasses
import json
from typing import Any, Callable

from util.errors import UserInputError

_ARCHITECTURE = "architecture"


def architecture(default=dataclasses.MISSING, **kwargs):
    """A config field that shapes checkpointed variables (checked when a run resumes)."""
    return dataclasses.field(default=default, metadata={_ARCHITECTURE: True}, **kwargs)


def setting(default=dataclasses.MISSING, **kwargs):
    """A config field the builder needs that does not shape the variables (a dropout rate)."""
    return dataclasses.field(default=default, metadata={_ARCHITECTURE: False}, **kwargs)


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """One registered model family (see the module docstring for each part)."""

    name: str
    summary: str
    config_class: type
    build: Callable[[Any], Any]
    pretraining_inputs: Any
    make_pretrainer: Callable[..., Any]
    user_encoder: Callable[..., Any] | None = None
    build_backbone: Callable[..., Any] | None = None
    settings_problem: Callable[[Any], str | None] | None = None
    report_tasks: Callable[..., Any] | None = None
    served_tasks: Callable[..., Any] | None = None
    traits: dict = dataclasses.field(default_factory=dict)

    def check_settings(self, settings):
        """A sentence naming a flag that contradicts this family, or None."""
        return self.settings_problem(settings) if self.settings_problem else None

    def architecture_keys(self):
        """The ``model_arch.json`` keys that must not change when a run resumes."""
        return ("model",) + tuple(
            field.name for field in dataclasses.fields(self.config_class)
            if field.metadata.get(_ARCHITECTURE, True))

    def config_from(self, run_config, where="model_arch.json"):
        """The family's config from a run configuration (``model_arch.json`` as a dict).

        Raises:
            UserInputError: an entry the family needs is missing.
        """
        values = {}
        for field in dataclasses.fields(self.config_class):
            if field.name in run_config:
                values[field.name] = run_config[field.name]
            elif field.default is dataclasses.MISSING:
                raise UserInputError(
                    f"{where} has no {field.name!r} entry, which a {self.name} model needs; "
                    f"was it written by main/train.py?")
        return self.config_class(**values)

    def architecture_changes(self, previous, current):
        """``(key, previous, current)`` for each architecture key whose value differs."""
        changes = []
        for key in self.architecture_keys():
            # Compared as JSON: a tuple flag and the list model_arch.json stored are equal,
            # and so are two dicts whose keys were written in another order.
            if key in previous and key in current and (
                    json.dumps(previous[key], default=str, sort_keys=True)
                    != json.dumps(current[key], default=str, sort_keys=True)):
                changes.append((key, previous[key], current[key]))
        return changes


@dataclasses.dataclass(frozen=True)
class TaskBackbone:
    """A family's encoder as a downstream task uses it.

    Attributes:
        encoder: the Keras layer (holding the method's block adapters).
        inputs_for: ``[batch, (length)] ragged items -> model inputs`` (CLS tokens in place).
        user_vector: ``(hidden, inputs) -> [batch, dim]``: reads the user out of the states.
        dim: width of the user vector.
    """

    encoder: Any
    inputs_for: Callable[[Any], Any]
    user_vector: Callable[[Any, Any], Any]
    dim: int
