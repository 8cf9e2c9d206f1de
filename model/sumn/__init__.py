"""SUMN (Gu et al., AAAI 2021): behaviour encoder, pooling strategies, consistency decoder and loss.

Importing this package registers every SUMN layer with Keras, so
``keras.saving.load_model`` can rebuild a saved ``SumnModel``.
"""

from model.sumn.behaviour_encoder import BehaviourEncoder
from model.sumn.consistency_decoder import BehaviouralConsistencyDecoder
from model.sumn.consistency_loss import behavioural_consistency_loss
from model.sumn.consistency_loss import per_hop_consistency_loss
from model.sumn.flops import sumn_training_flops
from model.sumn.model_inputs import history_to_model_inputs
from model.sumn.pooling import POOLING_STRATEGIES
from model.sumn.pooling import make_pooling
from model.sumn.sumn_model import SumnModel

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
