"""A pre-LN transformer block whose feed-forward is a sparse mixture of experts."""

import keras
from keras import ops

from model.layers.input_checks import check_rank
from model.supermoe.sparse_mixture_of_experts import SparseMixtureOfExperts


@keras.saving.register_keras_serializable(package="uur")
class MoeTransformerBlock(keras.layers.Layer):
    """x + Attention(LN(x)), then + MoE(LN(x)): a pre-LN block (Xiong et al., 2020).

    Attention reads only real positions (``token_mask``), and only earlier
    ones when ``causal``; the feed-forward is a ``SparseMixtureOfExperts``
    (Switch / GShard place it exactly there, in place of the dense
    feed-forward). A token the experts dropped keeps its attention output
    through the residual. States at padding positions are exactly 0, so a
    user's states never depend on how much padding the batch added.

    Example:

    ```python
    block = MoeTransformerBlock(dim=64, num_heads=2, num_experts=8, experts_per_token=2,
                                hidden_dim=256)
    hidden, statistics = block(hidden, token_mask=mask, training=True)
    ```

    Args:
        dim: width of the states.
        num_heads: attention heads (``dim`` divides evenly among them).
        num_experts, experts_per_token, hidden_dim, capacity_factor, dispatch,
            context_dim, num_routers: the mixture of experts'
            (``SparseMixtureOfExperts``).
        causal: attend to earlier positions only.
        dropout_rate: dropout on the attention probabilities and on both
            residual branches.
        epsilon: the LayerNorms' epsilon.
    """

    def __init__(self, dim, num_heads, num_experts, experts_per_token, hidden_dim,
                 capacity_factor=1.25, dispatch="sparse", context_dim=0, num_routers=1,
                 causal=True, dropout_rate=0.0, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if int(dim) < 1 or int(num_heads) < 1 or int(dim) % int(num_heads):
            raise ValueError(f"`dim` should be a positive multiple of `num_heads`. "
                             f"Received: dim={dim}, num_heads={num_heads}.")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` should be in [0, 1). Received: dropout_rate={dropout_rate}.")
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.causal = bool(causal)
        self.dropout_rate = float(dropout_rate)
        self.epsilon = float(epsilon)
        policy = self.dtype_policy
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=policy, name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=self.dim // self.num_heads,
            dropout=self.dropout_rate, dtype=policy, name="attention")
        self.experts_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=policy, name="experts_norm")
        self.experts = SparseMixtureOfExperts(
            num_experts, experts_per_token, hidden_dim, capacity_factor=capacity_factor,
            dispatch=dispatch, context_dim=context_dim, num_routers=num_routers, dtype=policy,
            name="experts")
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.experts_norm.build(input_shape)
        self.experts.build(input_shape)

    def call(self, inputs, token_mask, context=None, router=0, training=False):
        """One block.

        Args:
            inputs: [batch_size, length, dim].
            token_mask: bool [batch_size, length], False at padding.
            context: [batch_size, context_dim] for the router, or None.
            router: which of the experts' routers routes.
            training: dropout on, and the experts' capacity applies.

        Returns:
            (hidden [batch_size, length, dim], the experts' routing statistics).
        """
        check_rank(inputs, 3, "inputs", "[batch_size, length, dim]")
        check_rank(token_mask, 2, "token_mask", "[batch_size, length]")
        token_mask = ops.cast(token_mask, "bool")
        # [batch, query, key]: real keys only (a padding query is zeroed below).
        attention_mask = ops.logical_and(token_mask[:, :, None], token_mask[:, None, :])
        normed = self.attention_norm(inputs)
        attended = self.attention(normed, normed, attention_mask=attention_mask,
                                  use_causal_mask=self.causal, training=training)
        hidden = inputs + self.dropout(attended, training=training)
        served, statistics = self.experts(self.experts_norm(hidden), token_mask=token_mask,
                                          context=context, router=router, training=training)
        hidden = hidden + self.dropout(served, training=training)
        return ops.where(token_mask[:, :, None], hidden, ops.zeros_like(hidden)), statistics

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        experts = self.experts
        config.update({
            "dim": self.dim,
            "num_heads": self.num_heads,
            "num_experts": experts.num_experts,
            "experts_per_token": experts.experts_per_token,
            "hidden_dim": experts.hidden_dim,
            "capacity_factor": experts.capacity_factor,
            "dispatch": experts.dispatch,
            "context_dim": experts.context_dim,
            "num_routers": experts.num_routers,
            "causal": self.causal,
            "dropout_rate": self.dropout_rate,
            "epsilon": self.epsilon,
        })
        return config
