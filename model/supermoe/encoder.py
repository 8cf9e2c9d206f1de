"""SUPERMOE's user encoder: item (+ recency) embeddings -> mixture-of-experts transformer blocks."""

import keras
from keras import ops

from contracts import schema
from model.layers.input_checks import check_integer, check_rank
from model.supermoe.moe_transformer_block import MoeTransformerBlock

# The routing statistics the encoder averages over its blocks (expert_load is kept per block).
SCALAR_STATISTICS = ("load_balancing_loss", "router_z_loss", "dropped_fraction")


@keras.saving.register_keras_serializable(package="uur")
class SupermoeEncoder(keras.layers.Layer):
    """Item ids [batch, length] -> hidden states [batch, length, dim], and the routing statistics.

    Sequences are LEFT-padded with ``schema.ITEM_PAD_ID`` (0), as for
    NextItNet: the newest item sits at the last position. The optional
    position embedding counts recency (0 = the newest item), so a user's
    states do not depend on how much padding its batch added; histories
    longer than ``max_length`` share the oldest position.

    ``context_dim > 0`` gives every block's router a per-example context
    (the task indicator, ``model/supermoe``'s multi-task model).

    Example:

    ```python
    encoder = SupermoeEncoder(num_item_ids=3400, dim=64, num_blocks=2, num_heads=2,
                              num_experts=8, experts_per_token=2)
    hidden, statistics = encoder(item_ids, training=True)  # [batch, length, 64]
    ```

    Args:
        num_item_ids: rows of the item embedding, the special ids included.
        dim: width of the embeddings and the blocks.
        num_blocks: transformer blocks.
        num_heads: attention heads per block.
        num_experts, experts_per_token, capacity_factor, dispatch, context_dim,
            num_routers: every block's mixture of experts (``SparseMixtureOfExperts``).
        hidden_dim: width inside each expert (default 4 * dim, the
            transformer's).
        max_length: rows of the recency embedding; 0 for none.
        causal: attend to earlier items only (next-item prediction) or both ways.
        dropout_rate: dropout on the embeddings and inside every block.
    """

    def __init__(self, num_item_ids, dim, num_blocks, num_heads, num_experts, experts_per_token,
                 hidden_dim=None, capacity_factor=1.25, dispatch="sparse", context_dim=0,
                 num_routers=1, max_length=200, causal=True, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_item_ids) <= schema.FIRST_ITEM_ID:
            raise ValueError(f"`num_item_ids` should exceed the {schema.FIRST_ITEM_ID} special ids. "
                             f"Received: num_item_ids={num_item_ids}.")
        if int(num_blocks) < 1:
            raise ValueError(f"`num_blocks` should be at least 1. Received: num_blocks={num_blocks}.")
        if int(max_length) < 0:
            raise ValueError(f"`max_length` should be at least 0. Received: max_length={max_length}.")
        self.num_item_ids = int(num_item_ids)
        self.dim = int(dim)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.num_experts = int(num_experts)
        self.experts_per_token = int(experts_per_token)
        self.hidden_dim = int(hidden_dim) if hidden_dim else 4 * self.dim
        self.capacity_factor = float(capacity_factor)
        self.dispatch = dispatch
        self.context_dim = int(context_dim)
        self.num_routers = int(num_routers)
        self.max_length = int(max_length)
        self.causal = bool(causal)
        self.dropout_rate = float(dropout_rate)
        policy = self.dtype_policy
        self.item_embedding = keras.layers.Embedding(
            self.num_item_ids, self.dim, dtype=policy, name="item_embedding")
        self.recency_embedding = (keras.layers.Embedding(
            self.max_length, self.dim, dtype=policy, name="recency_embedding")
            if self.max_length else None)
        self.embedding_dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        # One attribute per block, so TF checkpoints see each (as NextItNetEncoder).
        for index in range(self.num_blocks):
            setattr(self, f"block_{index}", MoeTransformerBlock(
                self.dim, self.num_heads, self.num_experts, self.experts_per_token,
                self.hidden_dim, capacity_factor=self.capacity_factor, dispatch=self.dispatch,
                context_dim=self.context_dim, num_routers=self.num_routers, causal=self.causal,
                dropout_rate=self.dropout_rate, dtype=policy, name=f"block_{index}"))
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=policy,
                                                          name="final_norm")

    @property
    def blocks(self):
        """The transformer blocks, input side first."""
        return [getattr(self, f"block_{index}") for index in range(self.num_blocks)]

    def build(self, input_shape=None):
        self.item_embedding.build((None, None))
        if self.recency_embedding is not None:
            self.recency_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, self.dim))
        self.final_norm.build((None, None, self.dim))

    def call(self, item_ids, context=None, cls_offset=None, router=0, training=False):
        """Encodes left-padded item sequences.

        Args:
            item_ids: int [batch_size, length], 0 at padding.
            context: [batch_size, context_dim] for every router, or None.
            cls_offset: [batch_size, dim] added to the embedding of each CLS
                token (``schema.ITEM_CLS_ID``) of the row, or None: how a task
                embedding marks the position a task reads its user at.
            router: which router of every block routes (per-task gates).
            training: dropout on, and the experts' capacity applies.

        Returns:
            (hidden [batch_size, length, dim], zero at padding; statistics: the
            mean over blocks of each of ``SCALAR_STATISTICS``, and
            ``expert_load`` [num_blocks, num_experts]).
        """
        check_rank(item_ids, 2, "item_ids", "[batch_size, length]")
        check_integer(item_ids, "item_ids")
        token_mask = ops.not_equal(item_ids, schema.ITEM_PAD_ID)
        hidden = self.item_embedding(item_ids)
        if cls_offset is not None:
            is_cls = ops.cast(ops.equal(item_ids, schema.ITEM_CLS_ID), hidden.dtype)
            hidden = hidden + is_cls[:, :, None] * ops.cast(cls_offset, hidden.dtype)[:, None, :]
        if self.recency_embedding is not None:
            length = ops.shape(item_ids)[1]
            recency = ops.minimum(ops.flip(ops.arange(length), axis=0), self.max_length - 1)
            hidden = hidden + self.recency_embedding(recency)[None]
        hidden = self.embedding_dropout(hidden, training=training)
        per_block = []
        for block in self.blocks:
            hidden, statistics = block(hidden, token_mask=token_mask, context=context,
                                       router=router, training=training)
            per_block.append(statistics)
        hidden = self.final_norm(hidden)
        hidden = ops.where(token_mask[:, :, None], hidden, ops.zeros_like(hidden))
        summary = {name: ops.mean(ops.stack([s[name] for s in per_block])) for name in SCALAR_STATISTICS}
        summary["expert_load"] = ops.stack([s["expert_load"] for s in per_block])
        return hidden, summary

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_item_ids": self.num_item_ids, "dim": self.dim, "num_blocks": self.num_blocks,
            "num_heads": self.num_heads, "num_experts": self.num_experts,
            "experts_per_token": self.experts_per_token, "hidden_dim": self.hidden_dim,
            "capacity_factor": self.capacity_factor, "dispatch": self.dispatch,
            "context_dim": self.context_dim, "num_routers": self.num_routers,
            "max_length": self.max_length,
            "causal": self.causal, "dropout_rate": self.dropout_rate,
        })
        return config
