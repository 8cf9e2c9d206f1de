"""The NextItNet / GRec item-sequence encoder: item embedding + stacked dilated residual blocks."""

import keras
from keras import ops

from contracts import schema
from model.layers.input_checks import check_integer
from model.layers.input_checks import check_rank
from model.nextitnet.dilated_residual_block import DilatedResidualBlock

# The paper's stack: dilations 1, 2, 4, 8 repeated (each block's second convolution doubles them).
DEFAULT_DILATIONS = (1, 2, 4, 8, 1, 2, 4, 8)


@keras.saving.register_keras_serializable(package="uur")
class NextItNetEncoder(keras.layers.Layer):
    """Item ids [batch, length] -> hidden states [batch, length, embedding_dim].

    Causal (NextItNet): the state at position t has read items 1..t only, the
    input of next-item prediction. Non-causal (GRec): every state reads both
    ways, the input of masked-item prediction. Sequences are LEFT-padded with
    ``schema.ITEM_PAD_ID`` (0): the newest item, or the CLS token, sits at the
    last position. Hidden states are exactly zero at padding positions and do
    not depend on how much padding a batch adds.

    Example:

    ```python
    encoder = NextItNetEncoder(num_item_ids=1000, embedding_dim=64)
    hidden = encoder(item_ids)  # [batch_size, length, 64]
    ```

    Args:
        num_item_ids: rows of the item embedding, the 3 special ids included.
        embedding_dim: width of the embedding and of every block.
        dilations: dilation of each residual block's first convolution.
        kernel_size: width of every convolution.
        causal: NextItNet (True) or GRec (False).
        block_adapters: None, or one ``BlockAdapter`` per block (what a
            downstream method inserts at each block's hook, e.g. PeterRec's
            model patches).
        dropout_rate: dropout on the item embeddings and on every block's
            residual branch.
    """

    def __init__(self, num_item_ids, embedding_dim, dilations=DEFAULT_DILATIONS, kernel_size=3,
                 causal=True, block_adapters=None, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_item_ids) <= schema.FIRST_ITEM_ID:
            raise ValueError(f"`num_item_ids` should exceed the {schema.FIRST_ITEM_ID} special ids. "
                             f"Received: num_item_ids={num_item_ids}.")
        if int(embedding_dim) < 1:
            raise ValueError(f"`embedding_dim` should be at least 1. Received: embedding_dim={embedding_dim}.")
        dilations = tuple(int(d) for d in dilations)
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"`dilations` should be a non-empty list of positive dilations. "
                             f"Received: dilations={dilations}.")
        adapters = list(block_adapters) if block_adapters is not None else [None] * len(dilations)
        if len(adapters) != len(dilations):
            raise ValueError(f"`block_adapters` should hold one adapter per block ({len(dilations)}). "
                             f"Received: {len(adapters)} adapters.")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` should be in [0, 1). Received: dropout_rate={dropout_rate}.")
        self.num_item_ids = int(num_item_ids)
        self.embedding_dim = int(embedding_dim)
        self.dilations = dilations
        self.kernel_size = int(kernel_size)
        self.causal = bool(causal)
        self.dropout_rate = float(dropout_rate)
        policy = self.dtype_policy
        self.item_embedding = keras.layers.Embedding(
            self.num_item_ids, self.embedding_dim, dtype=policy, name="item_embedding")
        self.embedding_dropout = keras.layers.Dropout(
            self.dropout_rate, dtype=policy, name="embedding_dropout")
        # One attribute per block: TF checkpoints see attributes, not the items of a
        # list, so a model-only restore (fine-tuning, inference) finds every block.
        for index, (dilation, adapter) in enumerate(zip(self.dilations, adapters)):
            setattr(self, f"block_{index}", DilatedResidualBlock(
                self.embedding_dim, dilation, kernel_size=self.kernel_size, causal=self.causal,
                adapter=adapter, dropout_rate=self.dropout_rate, dtype=policy,
                name=f"block_{index}"))

    @property
    def blocks(self):
        """The residual blocks, input side first."""
        return [getattr(self, f"block_{index}") for index in range(len(self.dilations))]

    def build(self, input_shape=None):
        self.item_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, self.embedding_dim))

    def call(self, item_ids, training=False):
        """Encodes left-padded item sequences.

        Args:
            item_ids: int [batch_size, length], ``schema.ITEM_PAD_ID`` (0) at padding.
            training: enables dropout.

        Returns:
            [batch_size, length, embedding_dim], zero at padding positions.
        """
        check_rank(item_ids, 2, "item_ids", "[batch_size, length]")
        check_integer(item_ids, "item_ids")
        mask = ops.not_equal(item_ids, schema.ITEM_PAD_ID)
        hidden = self.embedding_dropout(self.item_embedding(item_ids), training=training)
        for block in self.blocks:
            hidden = block(hidden, mask, training=training)
        return hidden

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def adapter_variables(self):
        """The block adapters' variables (empty without adapters), block by block."""
        return [v for block in self.blocks if block.adapter is not None
                for v in block.adapter.variables]

    def layer_norm_variables(self):
        """Every block's LayerNorm gammas and betas (PeterRec's code fine-tunes one)."""
        return [v for block in self.blocks for norm in block.layer_norms for v in norm.variables]

    def backbone_variables(self):
        """The item embedding, then each block's convolutions and LayerNorms.

        Everything a pretraining run learns in the encoder: the same list, in
        the same order, with or without adapters and whatever the dropout rate
        (dropout's random-seed state is not part of it).
        """
        return list(self.item_embedding.variables) + [
            v for block in self.blocks for v in block.backbone_variables()]

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_item_ids": self.num_item_ids, "embedding_dim": self.embedding_dim,
            "dilations": list(self.dilations), "kernel_size": self.kernel_size,
            "causal": self.causal, "dropout_rate": self.dropout_rate,
            "block_adapters": (None if all(block.adapter is None for block in self.blocks) else [
                keras.saving.serialize_keras_object(block.adapter) for block in self.blocks]),
        })
        return config
