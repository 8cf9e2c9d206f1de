"""How a fine-tuned task reads one user vector out of the encoder's states of a whole sequence.

PeterRec (Yuan et al., SIGIR 2020) reads the state at the CLS token(s). After
next-item pretraining that state is trained to predict what comes next, a
summary weighted towards the most recent items, and it reaches back only as
far as the receptive field (181 items for dilations 1,2,4,8 x2, kernel 3, the
second convolution of each block at twice the dilation), while ML-1M
histories run to 2,276 items. The other readouts pool every position, as the
sequence-encoder literature does:

- ``cls``: the family's CLS reading (``model/nextitnet/user_vector.py``);
- ``mean``: the mean of the states at every non-padding position (CLS tokens
  included), the pooling Sentence-BERT (Reimers and Gurevych, EMNLP 2019)
  found best for sentence vectors;
- ``attention``: a learned weighted mean, a = softmax(w2 . tanh(W1 h_t)) over
  the non-padding positions (the single-head structured self-attention
  pooling of Lin et al., ICLR 2017); W1 [dim, dim] and w2 [dim] train with the
  task head;
- ``cls_mean``: [CLS reading, mean], twice as wide: the head sees both the
  recent summary and the whole history.
"""

import keras
from keras import ops

from contracts import schema
from model.layers.input_checks import check_integer, check_rank

CLS = "cls"
MEAN = "mean"
ATTENTION = "attention"
CLS_MEAN = "cls_mean"
READOUTS = (CLS, MEAN, ATTENTION, CLS_MEAN)


def readout_width(readout, dim):
    """Width of the user vector ``readout`` makes from ``dim``-wide states."""
    return 2 * dim if readout == CLS_MEAN else dim


@keras.saving.register_keras_serializable(package="uur")
class SequenceReadout(keras.layers.Layer):
    """Encoder states [batch, length, dim] -> user vectors [batch, dim] (or [batch, 2 * dim]).

    Example:

    ```python
    readout = SequenceReadout("attention")
    users = readout(hidden, item_ids, cls_vectors)  # [batch_size, dim]
    ```

    Args:
        readout: one of ``READOUTS`` (see the module docstring).

    Call arguments:
        hidden: [batch_size, length, dim] encoder states.
        item_ids: int [batch_size, length] the encoder's input, ``ITEM_PAD_ID`` at padding.
        cls_vectors: [batch_size, dim] the family's CLS reading of the same states.
    """

    def __init__(self, readout=CLS, **kwargs):
        super().__init__(**kwargs)
        if readout not in READOUTS:
            raise ValueError(f"`readout` should be one of {READOUTS}. Received: readout={readout!r}.")
        self.readout = readout
        self.projection = self.score = None

    def build(self, hidden_shape, item_ids_shape=None, cls_vectors_shape=None):
        if self.readout == ATTENTION:
            # Created here: W1's width is the states' width, known only now.
            dim = int(hidden_shape[-1])
            self.projection = keras.layers.Dense(dim, activation="tanh", dtype=self.dtype_policy,
                                                 name="projection")
            self.score = keras.layers.Dense(1, use_bias=False, dtype=self.dtype_policy,
                                            name="score")
            self.projection.build(tuple(hidden_shape))
            self.score.build(tuple(hidden_shape))

    def call(self, hidden, item_ids, cls_vectors):
        check_rank(hidden, 3, "hidden", "[batch_size, length, dim]")
        check_rank(item_ids, 2, "item_ids", "[batch_size, length]")
        check_integer(item_ids, "item_ids")
        if self.readout == CLS:
            return cls_vectors
        real = ops.not_equal(item_ids, schema.ITEM_PAD_ID)  # [batch, length]
        if self.readout == ATTENTION:
            pooled = self._attention_pool(hidden, real)
        else:
            pooled = _masked_mean(hidden, real)
        if self.readout == CLS_MEAN:
            return ops.concatenate([ops.cast(cls_vectors, pooled.dtype), pooled], axis=-1)
        return pooled

    def _attention_pool(self, hidden, real):
        # Scores and softmax in float32: a -1e9 mask does not fit float16.
        logits = ops.cast(self.score(self.projection(hidden))[..., 0], "float32")
        logits = ops.where(real, logits, ops.full_like(logits, -1e9))
        weights = ops.cast(ops.softmax(logits, axis=-1), hidden.dtype)  # [batch, length]
        return ops.einsum("bl,bld->bd", weights, hidden)

    def compute_output_shape(self, hidden_shape, item_ids_shape=None, cls_vectors_shape=None):
        return (hidden_shape[0], readout_width(self.readout, hidden_shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update({"readout": self.readout})
        return config


def _masked_mean(hidden, real):
    """Mean of ``hidden`` [batch, length, dim] over the positions where ``real`` [batch, length]."""
    weights = ops.cast(real, hidden.dtype)[..., None]
    count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1, hidden.dtype))
    return ops.sum(hidden * weights, axis=1) / count
