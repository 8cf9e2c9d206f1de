"""The output layer of item prediction: one weight row and one bias per item id."""

import keras
from keras import ops

from model.layers.input_checks import static_shape


@keras.saving.register_keras_serializable(package="uur")
class ItemSoftmax(keras.layers.Layer):
    """Hidden states [..., dim] -> logits over every item id [..., num_item_ids].

    The kernel is stored one row per item, [num_item_ids, dim], the layout
    ``tf.nn.sampled_softmax_loss`` reads, so the sampled and the full softmax
    share one set of weights. Only the pretraining objective uses it; it is
    not carried over to downstream tasks.

    Example:

    ```python
    softmax = ItemSoftmax(num_item_ids=1000)
    logits = softmax(hidden)  # [batch_size, length, 1000]
    ```

    Args:
        num_item_ids: number of item ids, the 3 special ids included.
    """

    def __init__(self, num_item_ids, **kwargs):
        super().__init__(**kwargs)
        if int(num_item_ids) < 2:
            raise ValueError(f"`num_item_ids` should be at least 2. Received: num_item_ids={num_item_ids}.")
        self.num_item_ids = int(num_item_ids)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"The last dimension of ItemSoftmax's input should be known. "
                             f"Received: input_shape={tuple(input_shape)}.")
        self.dim = int(dim)
        # The range of Keras's Embedding initialiser: rows are item vectors.
        self.kernel = self.add_weight(
            shape=(self.num_item_ids, self.dim), initializer="uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.num_item_ids,), initializer="zeros", name="bias")

    def call(self, hidden):
        """Logits of every item id.

        Args:
            hidden: [..., dim] hidden states.

        Returns:
            [..., num_item_ids] logits.
        """
        shape = static_shape(hidden)
        if not shape or (shape[-1] is not None and shape[-1] != self.dim):
            raise ValueError(f"`hidden` should have shape [..., {self.dim}]. "
                             f"Received: `hidden.shape` = {shape}.")
        return ops.matmul(hidden, ops.transpose(self.kernel)) + self.bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_item_ids,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_item_ids": self.num_item_ids})
        return config
