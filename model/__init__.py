"""Keras 3 layers and models: behaviour encoder, pooling strategies, objectives.

Importing this package registers every custom layer with Keras, so
``keras.saving.load_model`` can rebuild a saved ``SumnModel``.
"""

from model.behaviour_encoder import BehaviourEncoder
from model.consistency_decoder import BehaviouralConsistencyDecoder
from model.consistency_loss import behavioural_consistency_loss
from model.consistency_loss import per_hop_consistency_loss
from model.flops import sumn_training_flops
from model.model_inputs import history_to_model_inputs
from model.pooling import POOLING_STRATEGIES
from model.pooling import make_pooling
from model.sumn import SumnModel

__all__ = [
    "BehaviourEncoder",
    "BehaviouralConsistencyDecoder",
    "POOLING_STRATEGIES",
    "SumnModel",
    "behavioural_consistency_loss",
    "history_to_model_inputs",
    "make_pooling",
    "per_hop_consistency_loss",
    "sumn_training_flops",
]
