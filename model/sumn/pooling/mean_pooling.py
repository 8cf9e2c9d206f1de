"""SUMN ``mean`` pooling: the mean of a user's present behaviour vectors."""

import keras
from keras import ops

from model.layers.input_checks import as_bool_mask
from model.layers.input_checks import check_pooling_inputs


@keras.saving.register_keras_serializable(package="uur")
class MeanPooling(keras.layers.Layer):
    """Masked mean over a user's behaviours, as one hop; zeros for a user with none.

    Example:

    ```python
    pooling = MeanPooling(model_dim=4)
    user_vectors = pooling(behaviours, behaviour_mask)  # [batch_size, 1, 4]
    ```

    Args:
        model_dim: width of the behaviour vectors.
    """

    num_hops = 1

    def __init__(self, model_dim, **kwargs):
        super().__init__(**kwargs)
        if int(model_dim) < 1:
            raise ValueError(f"`model_dim` should be at least 1. Received: model_dim={model_dim}.")
        self.model_dim = int(model_dim)

    def call(self, behaviours, behaviour_mask):
        """Averages the present behaviours.

        Args:
            behaviours: [batch_size, max_len, model_dim] behaviour vectors.
            behaviour_mask: [batch_size, max_len] bool, True where present.

        Returns:
            [batch_size, 1, model_dim] user vectors.
        """
        check_pooling_inputs(behaviours, behaviour_mask, self.model_dim)
        mask = as_bool_mask(behaviour_mask)
        present = ops.where(ops.expand_dims(mask, -1), behaviours, ops.zeros_like(behaviours))
        counts = ops.maximum(ops.sum(ops.cast(mask, "float32"), axis=1, keepdims=True), 1.0)
        pooled = ops.sum(present, axis=1) / ops.cast(counts, behaviours.dtype)
        return ops.expand_dims(pooled, 1)

    def compute_output_shape(self, behaviours_shape, behaviour_mask_shape):
        return (behaviours_shape[0], 1, self.model_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"model_dim": self.model_dim})
        return config
