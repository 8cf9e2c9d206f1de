"""NextItNet and GRec as registered model families (``--model=nextitnet|grec``).

Both are the same dilated-CNN encoder over item sequences; NextItNet is
causal and pretrained on next-item prediction, GRec is non-causal and
pretrained on masked-item prediction. Downstream tasks read the user at CLS
tokens, as PeterRec does: ``[items..., CLS]`` -> the last state (causal),
``[CLS, items..., CLS]`` -> first + last state (non-causal).
"""

import dataclasses
import functools

import tensorflow as tf

from contracts import schema
from data_loader.pretraining_inputs import SEQUENCE_TABLE
from model.model_family import ModelFamily, TaskBackbone, architecture, setting
from model.nextitnet.encoder import NextItNetEncoder
from model.nextitnet.pretraining_model import SequencePretrainingModel
from model.nextitnet.sequence_inputs import append_cls
from model.nextitnet.sequence_pretrainer import SequencePretrainer
from model.nextitnet.user_vector import cls_user_vector


@dataclasses.dataclass(frozen=True)
class SequenceModelConfig:
    """The item-sequence encoder's architecture, as ``model_arch.json`` records it."""

    num_item_ids: int = architecture()
    model_dim: int = architecture()
    dilations: tuple = architecture()
    kernel_size: int = architecture()
    dropout_rate: float = setting(0.0)


def build_sequence_model(config, causal):
    """A ``SequencePretrainingModel`` of ``config``, every variable created."""
    model = SequencePretrainingModel(
        num_item_ids=config.num_item_ids, model_dim=config.model_dim,
        dilations=tuple(config.dilations), kernel_size=config.kernel_size, causal=causal,
        dropout_rate=config.dropout_rate)
    model(tf.constant([[schema.FIRST_ITEM_ID] * 2], dtype=tf.int32))
    return model


def make_sequence_pretrainer(model, optimizer, strategy, settings, data=None):
    """Next-item (causal) or masked-item (non-causal) prediction; sampled softmax by flag."""
    return SequencePretrainer(model, optimizer, strategy, settings.max_grad_norm,
                              num_sampled=settings.num_sampled,
                              mask_fraction=settings.mask_fraction, seed=settings.seed)


def build_task_backbone(config, make_adapter, causal):
    """The encoder a downstream task fine-tunes; ``make_adapter(i)`` is block i's adapter or None.

    Named ``encoder`` as in pretraining, so the backbone's variables line up.
    """
    encoder = NextItNetEncoder(
        num_item_ids=config.num_item_ids, embedding_dim=config.model_dim,
        dilations=tuple(config.dilations), kernel_size=config.kernel_size, causal=causal,
        block_adapters=[make_adapter(index) for index in range(len(config.dilations))],
        dropout_rate=config.dropout_rate, name="encoder")
    return TaskBackbone(
        encoder=encoder,
        inputs_for=functools.partial(append_cls, causal=causal),
        user_vector=functools.partial(cls_user_vector, causal=causal),
        dim=config.model_dim)


def _masking_problem(settings):
    if settings.mask_fraction <= 0:
        return "--mask_fraction must be more than 0 for --model=grec"
    return None


def _sequence_family(name, summary, causal, settings_problem=None):
    return ModelFamily(
        name=name,
        summary=summary,
        config_class=SequenceModelConfig,
        build=functools.partial(build_sequence_model, causal=causal),
        pretraining_inputs=SEQUENCE_TABLE,
        make_pretrainer=make_sequence_pretrainer,
        build_backbone=functools.partial(build_task_backbone, causal=causal),
        settings_problem=settings_problem,
        traits={"causal": causal},
    )


NEXTITNET = _sequence_family(
    "nextitnet", "causal dilated CNN over item sequences, next-item prediction", causal=True)
GREC = _sequence_family(
    "grec", "the same CNN non-causal, masked-item prediction", causal=False,
    settings_problem=_masking_problem)
