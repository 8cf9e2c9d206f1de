"""Pooling strategies: behaviour vectors [batch, max_len, dim] -> user vectors [batch, hops, dim].

One file per strategy (SUMN's ``max``, ``mean``, ``mhop``, ``gruhop``); the
registry maps ``--pooling`` names to them. Every strategy returns
[batch_size, num_hops, model_dim] (``max`` and ``mean`` with one hop) so the
objective and inference treat them alike.
"""

from model.sumn.pooling.gru_hop_pooling import GruHopPooling
from model.sumn.pooling.max_pooling import MaxPooling
from model.sumn.pooling.mean_pooling import MeanPooling
from model.sumn.pooling.multi_hop_pooling import MultiHopPooling
from model.sumn.pooling.registry import MULTI_HOP_STRATEGIES
from model.sumn.pooling.registry import POOLING_STRATEGIES
from model.sumn.pooling.registry import make_pooling
from model.sumn.pooling.registry import pooling_hops

__all__ = [
    "GruHopPooling",
    "MaxPooling",
    "MeanPooling",
    "MultiHopPooling",
    "MULTI_HOP_STRATEGIES",
    "POOLING_STRATEGIES",
    "make_pooling",
    "pooling_hops",
]
