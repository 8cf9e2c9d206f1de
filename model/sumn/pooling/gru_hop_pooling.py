"""SUMN ``gruhop`` pooling: a GRU state reads the behaviours by additive attention."""

import keras
from keras import ops

from model.layers.input_checks import as_bool_mask
from model.layers.input_checks import check_pooling_inputs
from model.sumn.pooling.masking import present_rows
from model.sumn.pooling.masking import present_softmax
from model.sumn.pooling.masking import sum_by_user


@keras.saving.register_keras_serializable(package="uur")
class GruHopPooling(keras.layers.Layer):
    """Multi-hop additive attention driven by a GRU; one user vector per hop.

    With X the behaviour vectors::

        g_0 = tanh(learned vector)
        hop t:  e_i = w2 tanh(W1 [x_i; g_{t-1}])
                input = sum_i softmax over present behaviours of e, times x_i
                g_t = GRUCell(input, g_{t-1})

    and the layer returns [g_1, ..., g_num_hops]. ``W1 [x; g]`` is computed as
    ``W1x x + W1g g`` so the behaviour half is projected once, not once per
    hop, and no [batch, max_len, 2 * model_dim] tensor is built. ``w2`` has
    no bias: a constant shift of every score does not change a softmax.

    Example:

    ```python
    pooling = GruHopPooling(model_dim=4, num_hops=5)
    user_vectors = pooling(behaviours, behaviour_mask)  # [batch_size, 5, 4]
    ```

    Args:
        model_dim: width of the behaviour vectors and of the GRU state.
        num_hops: number of hops (SUMN: 5).
    """

    def __init__(self, model_dim, num_hops=5, **kwargs):
        super().__init__(**kwargs)
        if int(model_dim) < 1:
            raise ValueError(f"`model_dim` should be at least 1. Received: model_dim={model_dim}.")
        if int(num_hops) < 1:
            raise ValueError(f"`num_hops` should be at least 1. Received: num_hops={num_hops}.")
        self.model_dim = int(model_dim)
        self.num_hops = int(num_hops)
        policy = self.dtype_policy
        self.behaviour_score_projection = keras.layers.Dense(
            self.model_dim, dtype=policy, name="behaviour_score_projection"
        )
        self.state_score_projection = keras.layers.Dense(
            self.model_dim, use_bias=False, dtype=policy, name="state_score_projection"
        )
        self.score_output = keras.layers.Dense(1, use_bias=False, dtype=policy, name="score_output")
        # reset_after=False is the original GRU (and TF1 GRUCell's) formulation.
        self.gru_cell = keras.layers.GRUCell(self.model_dim, reset_after=False, dtype=policy, name="gru_cell")

    def build(self, input_shape=None):
        sequence_shape = (None, None, self.model_dim)
        self.behaviour_score_projection.build(sequence_shape)
        self.state_score_projection.build((None, self.model_dim))
        self.score_output.build(sequence_shape)
        self.gru_cell.build((None, self.model_dim))
        self.initial_state = self.add_weight(
            shape=(self.model_dim,), initializer="glorot_uniform", name="initial_state"
        )

    def call(self, behaviours, behaviour_mask):
        """Runs ``num_hops`` GRU-driven attention hops over the present behaviours.

        Args:
            behaviours: [batch_size, max_len, model_dim] behaviour vectors.
            behaviour_mask: [batch_size, max_len] bool, True where present.

        Returns:
            [batch_size, num_hops, model_dim] user vectors (GRU states), hop 1 first.
        """
        check_pooling_inputs(behaviours, behaviour_mask, self.model_dim)
        mask = as_bool_mask(behaviour_mask)
        # Scores and read-outs over the present behaviours only (see present_rows).
        rows, slots, users = present_rows(behaviours, mask)  # rows: [num_present, model_dim]
        projected_rows = self.behaviour_score_projection(rows)

        batch_size = ops.shape(behaviours)[0]
        state = ops.broadcast_to(
            ops.tanh(ops.cast(self.initial_state, behaviours.dtype)), (batch_size, self.model_dim)
        )
        hops = []
        for _ in range(self.num_hops):
            state_part = ops.take(self.state_score_projection(state), users, axis=0)
            hidden = ops.tanh(projected_rows + state_part)  # [num_present, model_dim]
            scores = ops.squeeze(self.score_output(hidden), -1)
            weights = ops.cast(present_softmax(scores, slots, mask), behaviours.dtype)
            gru_input = sum_by_user(ops.expand_dims(weights, -1) * rows, users, batch_size)
            state, _ = self.gru_cell(gru_input, [state])
            hops.append(state)
        return ops.stack(hops, axis=1)

    def compute_output_shape(self, behaviours_shape, behaviour_mask_shape):
        return (behaviours_shape[0], self.num_hops, self.model_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"model_dim": self.model_dim, "num_hops": self.num_hops})
        return config
