"""SUMN as a registered model family (``--model=sumn``, the default)."""

import dataclasses

import tensorflow as tf

from contracts import schema
from data_loader.pretraining_inputs import BEHAVIOUR_TABLE
from model.model_family import ModelFamily, architecture, setting
from model.sumn.model_inputs import history_to_model_inputs
from model.sumn.sumn_model import SumnModel
from model.sumn.sumn_trainer import SumnTrainer
from model.sumn.user_encoder import UserEncoder


@dataclasses.dataclass(frozen=True)
class SumnConfig:
    """SUMN's architecture, as ``model_arch.json`` records it (the flags of the same names)."""

    num_vocabulary: int = architecture()
    word_emb_dim: int = architecture()
    model_dim: int = architecture()
    pooling: str = architecture()
    num_hops: int = architecture()
    mlp_layers: tuple = architecture()
    dropout_rate: float = setting(0.1)


def build_sumn(config):
    """A ``SumnModel`` of ``config``, every variable created. Call inside ``strategy.scope()``."""
    model = SumnModel(
        vocabulary_size=config.num_vocabulary, word_emb_dim=config.word_emb_dim,
        model_dim=config.model_dim, pooling=config.pooling, num_hops=config.num_hops,
        mlp_layers=tuple(config.mlp_layers), dropout_rate=config.dropout_rate)
    # One tiny forward pass creates every variable, so checkpoints can be
    # restored eagerly and the optimizer can build its slots up front.
    model(history_to_model_inputs(
        tf.ragged.constant([[[schema.FIRST_WORD_ID]] * 2], dtype=tf.int32)))
    return model


def make_sumn_trainer(model, optimizer, strategy, settings, data=None):
    """SUMN's behavioural-consistency step (+ the objectives beyond it) from ``settings``' flags."""
    return SumnTrainer(model, optimizer, strategy, settings.max_grad_norm,
                       num_sampled=settings.num_sampled,
                       contrastive_weight=settings.contrastive_weight,
                       contrastive_temperature=settings.contrastive_temperature,
                       history_target_weight=settings.history_target_weight)


SUMN = ModelFamily(
    name="sumn",
    summary="bag-of-words behaviours, pooled, behavioural consistency",
    config_class=SumnConfig,
    build=build_sumn,
    pretraining_inputs=BEHAVIOUR_TABLE,
    make_pretrainer=make_sumn_trainer,
    user_encoder=UserEncoder,
)
