"""Top-k routing with expert capacity: which experts each token goes to, and into which slot.

The routing of a sparse mixture-of-experts layer, written from the standard
literature (SUPERMOE's own paper, arXiv 2207.04648, publishes only its
abstract; ``../shared/SYSTEMS.md``):

* top-k experts per token by router probability: k = 1 is the Switch
  Transformer (Fedus et al., 2021), k = 2 renormalised over the chosen two
  is GShard (Lepikhin et al., 2020) and Mixtral (Jiang et al., 2024);
* expert capacity: each expert has ``capacity`` slots; in training
  ``capacity = ceil(capacity_factor * k * tokens / experts)`` (GShard's
  2N/E for k = 2, Switch's N/E for k = 1, times the factor). Assignments are
  served in priority order, every token's first choice before any second
  choice (GShard), then by token order; an assignment past its expert's
  capacity is dropped, and its token's share passes only through the
  residual connection around the layer. Without a capacity factor (at
  inference) the capacity is the busiest expert's load, so no token is
  dropped and a user's vector never depends on who else is in the batch;
* the auxiliary losses: Switch's load-balancing loss
  ``E * sum_i f_i P_i`` (f_i: share of the assignments routed to expert i
  before capacity, P_i: mean router probability of expert i; 1 at perfect
  balance) and ST-MoE's router z-loss ``mean(logsumexp(logits)^2)``
  (Zoph et al., 2022).

The router runs in float32 whatever the layer's compute dtype (Switch's
selective precision: a bfloat16 softmax makes routing unstable).
Padding tokens are routed nowhere and count in no statistic.
"""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass
class Routing:
    """The kept assignments of one batch's tokens to expert slots, and the router's statistics.

    Attributes:
        tokens: int32 [assignments], the flat token index of each kept assignment.
        slots: int32 [assignments], its slot, ``expert * capacity + position``.
        gates: float32 [assignments], the weight of its expert's output.
        capacity: int32 scalar, slots per expert.
        load_balancing_loss: float32 scalar, ``E * sum_i f_i P_i``.
        router_z_loss: float32 scalar, ``mean(logsumexp(logits)^2)`` over real tokens.
        expert_load: float32 [experts], f_i: each expert's share of the assignments.
        dropped_fraction: float32 scalar, share of the assignments past capacity.
    """

    tokens: tf.Tensor
    slots: tf.Tensor
    gates: tf.Tensor
    capacity: tf.Tensor
    load_balancing_loss: tf.Tensor
    router_z_loss: tf.Tensor
    expert_load: tf.Tensor
    dropped_fraction: tf.Tensor


def route_tokens(logits, valid, experts_per_token, capacity_factor=None, renormalize=True):
    """Routes each real token to its top-k experts, within each expert's capacity.

    Args:
        logits: float32 [tokens, experts], the router's scores.
        valid: bool [tokens], False at padding.
        experts_per_token: k.
        capacity_factor: slots per expert relative to a perfectly even share of
            the assignments; None: as many as the busiest expert needs (no
            assignment is dropped).
        renormalize: for k > 1, rescale the chosen experts' probabilities to
            sum to 1 (GShard, Mixtral); k = 1 keeps the raw probability, which
            is how Switch trains its router through the output.

    Returns:
        A ``Routing``.
    """
    logits = tf.cast(logits, tf.float32)
    num_experts = int(logits.shape[-1])
    k = int(experts_per_token)
    num_tokens = tf.shape(logits)[0]
    valid_float = tf.cast(valid, tf.float32)
    # At least 1, so a batch of padding only gives zero statistics, not NaN.
    real_tokens = tf.maximum(tf.reduce_sum(valid_float), 1.0)

    probabilities = tf.nn.softmax(logits, axis=-1)
    gates, experts = tf.math.top_k(probabilities, k=k)  # [tokens, k] each
    if k > 1 and renormalize:
        gates = gates / tf.reduce_sum(gates, axis=-1, keepdims=True)

    # Choice-major order: every token's first choice comes before any second choice.
    # (Column by column rather than an int32 transpose, which oneDNN refuses noisily.)
    choices = tf.concat([experts[:, choice] for choice in range(k)], axis=0)  # [k * tokens]
    choice_gates = tf.concat([gates[:, choice] for choice in range(k)], axis=0)
    choice_tokens = tf.tile(tf.range(num_tokens), [k])
    choice_valid = tf.tile(valid, [k])
    # Padding goes to an extra bucket after the last expert: sorted last, never kept.
    buckets = tf.where(choice_valid, choices, num_experts)
    # Reshaped only to give the (always E + 1) counts a static shape.
    counts = tf.reshape(tf.math.bincount(buckets, minlength=num_experts + 1,
                                         maxlength=num_experts + 1, dtype=tf.int32),
                        [num_experts + 1])
    # Position of each assignment within its expert: its rank in a stable sort by expert.
    order = tf.argsort(buckets, stable=True)
    starts = tf.cumsum(counts, exclusive=True)
    sorted_ranks = tf.range(tf.size(buckets)) - tf.gather(starts, tf.gather(buckets, order))
    positions = tf.gather(sorted_ranks, tf.math.invert_permutation(order))

    expert_counts = counts[:num_experts]
    if capacity_factor is None:
        capacity = tf.maximum(tf.reduce_max(expert_counts), 1)
    else:
        capacity = tf.maximum(tf.cast(tf.math.ceil(
            float(capacity_factor) * k * real_tokens / num_experts), tf.int32), 1)
    kept = tf.where(choice_valid & (positions < capacity))[:, 0]
    assignments = tf.cast(k, tf.float32) * real_tokens

    expert_load = tf.cast(expert_counts, tf.float32) / assignments
    mean_probability = tf.reduce_sum(probabilities * valid_float[:, None], axis=0) / real_tokens
    log_normalizers = tf.reduce_logsumexp(logits, axis=-1)
    return Routing(
        tokens=tf.gather(choice_tokens, kept),
        slots=tf.gather(choices * capacity + positions, kept),
        gates=tf.gather(choice_gates, kept),
        capacity=capacity,
        load_balancing_loss=num_experts * tf.reduce_sum(expert_load * mean_probability),
        router_z_loss=tf.reduce_sum(valid_float * tf.square(log_normalizers)) / real_tokens,
        expert_load=expert_load,
        dropped_fraction=(tf.cast(tf.reduce_sum(expert_counts) - tf.size(kept), tf.float32)
                          / assignments))
