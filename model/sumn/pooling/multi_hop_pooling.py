"""SUMN ``mhop`` pooling: a state vector reads the behaviours by attention, hop after hop."""

import keras
from keras import ops

from model.layers.input_checks import as_bool_mask
from model.layers.input_checks import check_pooling_inputs
from model.sumn.pooling.masking import present_rows
from model.sumn.pooling.masking import present_softmax
from model.sumn.pooling.masking import sum_by_user


@keras.saving.register_keras_serializable(package="uur")
class MultiHopPooling(keras.layers.Layer):
    """Multi-hop key/value attention over behaviours; one user vector per hop.

    With X the behaviour vectors and m the mask::

        K = LN(X Wk)            V = LN(X Wv) * m        (no biases)
        S_0 = s_0 (learned),    s_0 used as the first query
        hop t:  a   = softmax over present behaviours of K s_{t-1} / sqrt(d)
                S_t = S_{t-1} + a^T V
                s_t = LN(S_t)

    and the layer returns [s_1, ..., s_num_hops]. The 1/sqrt(d) is ours, as in
    scaled dot-product attention (Vaswani et al., 2017): SUMN scores two
    LayerNormed d-dimensional vectors unscaled, so from hop 2 on the scores
    have a standard deviation near sqrt(d) (measured: about 58 at d = 256 on
    the demo data) and each hop reads about 2 behaviours of 50, which makes
    the last hop a poor user vector. ``scale_scores=False`` restores SUMN's
    exact scores. One LayerNorm serves every
    hop, as in SUMN. A user with no behaviour gets zero attention weights, so
    its states are LN(s_0) at every hop, never NaN.

    Example:

    ```python
    pooling = MultiHopPooling(model_dim=4, num_hops=5)
    user_vectors = pooling(behaviours, behaviour_mask)  # [batch_size, 5, 4]
    ```

    Args:
        model_dim: width of the behaviour vectors and of the states.
        num_hops: number of attention hops (SUMN: 5).
        scale_scores: divide attention scores by sqrt(model_dim) (default);
            False reproduces SUMN's unscaled scores.
    """

    def __init__(self, model_dim, num_hops=5, scale_scores=True, **kwargs):
        super().__init__(**kwargs)
        if int(model_dim) < 1:
            raise ValueError(f"`model_dim` should be at least 1. Received: model_dim={model_dim}.")
        if int(num_hops) < 1:
            raise ValueError(f"`num_hops` should be at least 1. Received: num_hops={num_hops}.")
        self.model_dim = int(model_dim)
        self.num_hops = int(num_hops)
        self.scale_scores = bool(scale_scores)
        policy = self.dtype_policy
        self.key_projection = keras.layers.Dense(self.model_dim, use_bias=False, dtype=policy, name="key_projection")
        self.value_projection = keras.layers.Dense(
            self.model_dim, use_bias=False, dtype=policy, name="value_projection"
        )
        self.key_norm = keras.layers.LayerNormalization(dtype=policy, name="key_norm")
        self.value_norm = keras.layers.LayerNormalization(dtype=policy, name="value_norm")
        self.state_norm = keras.layers.LayerNormalization(dtype=policy, name="state_norm")

    def build(self, input_shape=None):
        sequence_shape = (None, None, self.model_dim)
        self.key_projection.build(sequence_shape)
        self.value_projection.build(sequence_shape)
        self.key_norm.build(sequence_shape)
        self.value_norm.build(sequence_shape)
        self.state_norm.build((None, self.model_dim))
        self.initial_state = self.add_weight(
            shape=(self.model_dim,), initializer="glorot_uniform", name="initial_state"
        )

    def call(self, behaviours, behaviour_mask):
        """Runs ``num_hops`` attention hops over the present behaviours.

        Args:
            behaviours: [batch_size, max_len, model_dim] behaviour vectors.
            behaviour_mask: [batch_size, max_len] bool, True where present.

        Returns:
            [batch_size, num_hops, model_dim] user vectors, hop 1 first.
        """
        check_pooling_inputs(behaviours, behaviour_mask, self.model_dim)
        mask = as_bool_mask(behaviour_mask)
        # Keys and values of the present behaviours only (see present_rows).
        rows, slots, users = present_rows(behaviours, mask)  # rows: [num_present, model_dim]
        keys = self.key_norm(self.key_projection(rows))
        values = self.value_norm(self.value_projection(rows))

        batch_size = ops.shape(behaviours)[0]
        state_sum = ops.broadcast_to(
            ops.cast(self.initial_state, values.dtype), (batch_size, self.model_dim)
        )
        query = state_sum
        hops = []
        for _ in range(self.num_hops):
            scores = ops.sum(keys * ops.take(query, users, axis=0), axis=-1)  # [num_present]
            if self.scale_scores:
                scores = scores * (self.model_dim ** -0.5)
            weights = ops.cast(present_softmax(scores, slots, mask), values.dtype)
            read = sum_by_user(ops.expand_dims(weights, -1) * values, users, batch_size)
            state_sum = state_sum + read
            query = self.state_norm(state_sum)
            hops.append(query)
        return ops.stack(hops, axis=1)

    def compute_output_shape(self, behaviours_shape, behaviour_mask_shape):
        return (behaviours_shape[0], self.num_hops, self.model_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"model_dim": self.model_dim, "num_hops": self.num_hops,
                       "scale_scores": self.scale_scores})
        return config
