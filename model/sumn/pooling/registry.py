"""The ``--pooling`` strategies by name, and the one way to build one."""

from model.sumn.pooling.gru_hop_pooling import GruHopPooling
from model.sumn.pooling.max_pooling import MaxPooling
from model.sumn.pooling.mean_pooling import MeanPooling
from model.sumn.pooling.multi_hop_pooling import MultiHopPooling
from util.errors import UserInputError

POOLING_STRATEGIES = {
    "max": MaxPooling,
    "mean": MeanPooling,
    "mhop": MultiHopPooling,
    "gruhop": GruHopPooling,
}

# Strategies that run several hops; the others always return one.
MULTI_HOP_STRATEGIES = ("mhop", "gruhop")


def make_pooling(name, model_dim, num_hops=5, **layer_kwargs):
    """Builds the pooling layer that ``--pooling=name`` asks for.

    Args:
        name: one of ``POOLING_STRATEGIES`` (max, mean, mhop, gruhop).
        model_dim: width of the behaviour vectors.
        num_hops: hops for mhop and gruhop; max and mean always return 1.
        **layer_kwargs: passed to the layer constructor (e.g. dtype).

    Returns:
        A layer mapping (behaviours [batch_size, max_len, model_dim],
        behaviour_mask [batch_size, max_len]) to [batch_size, hops, model_dim].

    Raises:
        UserInputError: ``name`` is not a known strategy.
    """
    if name not in POOLING_STRATEGIES:
        raise UserInputError(
            f"--pooling={name!r} is not a pooling strategy; use one of: {', '.join(POOLING_STRATEGIES)}."
        )
    if name in MULTI_HOP_STRATEGIES:
        return POOLING_STRATEGIES[name](model_dim, num_hops=num_hops, **layer_kwargs)
    return POOLING_STRATEGIES[name](model_dim, **layer_kwargs)


def pooling_hops(name, num_hops):
    """How many user vectors per user ``--pooling=name`` yields with ``num_hops``."""
    if name not in POOLING_STRATEGIES:
        raise UserInputError(
            f"--pooling={name!r} is not a pooling strategy; use one of: {', '.join(POOLING_STRATEGIES)}."
        )
    return int(num_hops) if name in MULTI_HOP_STRATEGIES else 1
