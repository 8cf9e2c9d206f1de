"""SUPERMOE's encoder: sparse mixture-of-experts transformer blocks over item sequences.

Importing this package registers every layer with Keras, so a saved
``.keras`` file holding them loads back.
"""

from model.supermoe.encoder import SupermoeEncoder
from model.supermoe.expert_routing import Routing
from model.supermoe.expert_routing import route_tokens
from model.supermoe.moe_transformer_block import MoeTransformerBlock
from model.supermoe.sparse_mixture_of_experts import SparseMixtureOfExperts

__all__ = [
    "MoeTransformerBlock",
    "Routing",
    "SparseMixtureOfExperts",
    "SupermoeEncoder",
    "route_tokens",
]
