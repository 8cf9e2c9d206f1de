"""Reads SUMN user vectors: one hop's vector per user from a batch of ragged histories."""

import tensorflow as tf

from model.sumn.model_inputs import history_to_model_inputs

# A batch's histories as the loaders yield them (data_loader/batch_format.py).
_HISTORY_SPEC = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2,
                                    row_splits_dtype=tf.int64)


class UserEncoder:
    """Turns a batch of histories into one user vector each, from one hop of a ``SumnModel``.

    Example:

    ```python
    encoder = UserEncoder(model, hop_index=model.num_hops - 1)
    vectors = encoder(batch["history"])  # np.ndarray [batch_size, model_dim] float32
    ```

    Args:
        model: a restored ``SumnModel``.
        hop_index: which hop, 0-based (``model.encode`` returns hop 1 first).
    """

    def __init__(self, model, hop_index):
        if not 0 <= hop_index < model.num_hops:
            raise ValueError(f"`hop_index` should be in 0..{model.num_hops - 1}. Received: {hop_index}.")
        self.model = model
        self.hop_index = int(hop_index)
        self.dim = int(model.model_dim)
        # Batches differ in users and history lengths; a signature with every
        # dimension unknown makes one trace serve them all.
        self._encode = tf.function(self._encode_history, reduce_retracing=True,
                                   input_signature=[_HISTORY_SPEC])

    def _encode_history(self, history):
        vectors = self.model.encode(history_to_model_inputs(history))  # [B, hops, dim]
        return vectors[:, self.hop_index]

    def __call__(self, history):
        """history: [B, (behaviours), (words)] int ragged -> [B, dim] float32 numpy array."""
        history = tf.cast(history, tf.int32).with_row_splits_dtype(tf.int64)
        return self._encode(history).numpy()
