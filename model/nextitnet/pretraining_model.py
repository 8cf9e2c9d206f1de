"""The NextItNet / GRec pretraining model: an item-sequence encoder and its item softmax.

The encoder is what fine-tuning reuses; the softmax (one row per item) is the
pretraining objective's output layer and, like SUMN's decoder, is not carried
over to downstream tasks.
"""

import keras

from model.nextitnet.item_softmax import ItemSoftmax
from model.nextitnet.encoder import NextItNetEncoder


@keras.saving.register_keras_serializable(package="uur")
class SequencePretrainingModel(keras.Model):
    """NextItNet (causal, next-item) or GRec (non-causal, masked-item) pretraining model.

    Args:
        num_item_ids: size of the item index, the 3 special ids included.
        model_dim: channels of the encoder (item embedding width).
        dilations: dilation of each residual block.
        kernel_size: width of every convolution.
        causal: True for NextItNet, False for GRec.
        dropout_rate: dropout inside the encoder.

    Call:
        item_ids: int32 [batch, length], left-padded with 0.
        Returns the hidden states [batch, length, model_dim], zero at padding.
    """

    def __init__(self, num_item_ids, model_dim, dilations, kernel_size=3, causal=True,
                 dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_item_ids = int(num_item_ids)
        self.model_dim = int(model_dim)
        self.dilations = tuple(int(d) for d in dilations)
        self.kernel_size = int(kernel_size)
        self.causal = bool(causal)
        self.dropout_rate = float(dropout_rate)
        self.encoder = NextItNetEncoder(
            num_item_ids=self.num_item_ids, embedding_dim=self.model_dim,
            dilations=self.dilations, kernel_size=self.kernel_size, causal=self.causal,
            dropout_rate=self.dropout_rate, name="encoder")
        self.softmax = ItemSoftmax(self.num_item_ids, name="softmax")

    @property
    def encoder_layers(self):
        """The parts a downstream run warm-starts from (the softmax is the objective's, not shared)."""
        return {"encoder": self.encoder}

    def call(self, item_ids, training=False):
        hidden = self.encoder(item_ids, training=training)
        # Touching the softmax once builds its variables with the model.
        if not self.softmax.built:
            self.softmax(hidden[:, :1])
        return hidden

    def get_config(self):
        config = super().get_config()
        config.update(
            num_item_ids=self.num_item_ids, model_dim=self.model_dim,
            dilations=list(self.dilations), kernel_size=self.kernel_size, causal=self.causal,
            dropout_rate=self.dropout_rate)
        return config
