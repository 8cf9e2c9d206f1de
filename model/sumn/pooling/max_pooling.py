"""SUMN ``max`` pooling: element-wise max over the behaviours and a learned CLS vector."""

import keras
from keras import ops

from model.layers.input_checks import as_bool_mask
from model.layers.input_checks import check_pooling_inputs
from model.sumn.pooling.masking import lowest_value


@keras.saving.register_keras_serializable(package="uur")
class MaxPooling(keras.layers.Layer):
    """Masked element-wise max over a user's behaviours, as one hop.

    A learned CLS vector always takes part in the max (SUMN prepends it as a
    behaviour that is never masked), so a user with no behaviour gets the CLS
    vector rather than -inf.

    Example:

    ```python
    pooling = MaxPooling(model_dim=4)
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

    def build(self, input_shape=None):
        self.cls_vector = self.add_weight(
            shape=(self.model_dim,), initializer="glorot_uniform", name="cls_vector"
        )

    def call(self, behaviours, behaviour_mask):
        """Pools the present behaviours and the CLS vector by element-wise max.

        Args:
            behaviours: [batch_size, max_len, model_dim] behaviour vectors.
            behaviour_mask: [batch_size, max_len] bool, True where present.

        Returns:
            [batch_size, 1, model_dim] user vectors.
        """
        check_pooling_inputs(behaviours, behaviour_mask, self.model_dim)
        mask = ops.expand_dims(as_bool_mask(behaviour_mask), -1)
        masked = ops.where(mask, behaviours, ops.full_like(behaviours, lowest_value(behaviours.dtype)))
        pooled = ops.maximum(ops.max(masked, axis=1), ops.cast(self.cls_vector, behaviours.dtype))
        return ops.expand_dims(pooled, 1)

    def compute_output_shape(self, behaviours_shape, behaviour_mask_shape):
        return (behaviours_shape[0], 1, self.model_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"model_dim": self.model_dim})
        return config
