"""SUMN's behavioural-consistency decoder: an MLP from user vectors to vocabulary logits."""

import keras

from model.sumn.consistency_loss import projected_consistency_loss
from model.sumn.sampled_consistency_loss import sampled_consistency_loss
from model.layers.input_checks import check_rank


@keras.saving.register_keras_serializable(package="uur")
class BehaviouralConsistencyDecoder(keras.layers.Layer):
    """Maps each hop's user vector to logits over the vocabulary.

    As in SUMN: for each hidden width, Dropout then Dense(width, relu); then a
    linear Dense to ``vocabulary_size`` logits (no dropout right before it).
    The same weights decode every hop. The output layer runs in float32
    (``dtype="float32"``), so under a mixed-precision policy the logits and
    the softmax cross-entropy that reads them are float32.

    Example:

    ```python
    decoder = BehaviouralConsistencyDecoder(vocabulary_size=100, mlp_layers=(16,))
    logits = decoder(user_vectors)  # [batch_size, num_hops, 100], float32
    ```

    Args:
        vocabulary_size: number of word ids, i.e. logits per hop.
        mlp_layers: widths of the hidden ReLU layers (SUMN: ``(512,)``); may be empty.
        dropout_rate: dropout before each hidden layer, in [0, 1).
    """

    def __init__(self, vocabulary_size, mlp_layers=(512,), dropout_rate=0.1, **kwargs):
        super().__init__(**kwargs)
        if int(vocabulary_size) < 2:
            raise ValueError(f"`vocabulary_size` should be at least 2. Received: vocabulary_size={vocabulary_size}.")
        mlp_layers = tuple(int(width) for width in mlp_layers)
        if any(width < 1 for width in mlp_layers):
            raise ValueError(f"`mlp_layers` should hold positive widths. Received: mlp_layers={mlp_layers}.")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` should be in [0, 1). Received: dropout_rate={dropout_rate}.")
        self.vocabulary_size = int(vocabulary_size)
        self.mlp_layers = mlp_layers
        self.dropout_rate = float(dropout_rate)
        policy = self.dtype_policy
        self.hidden_dropouts = [
            keras.layers.Dropout(self.dropout_rate, dtype=policy, name=f"hidden_dropout_{index}")
            for index in range(len(mlp_layers))
        ]
        self.hidden_layers = [
            keras.layers.Dense(width, activation="relu", dtype=policy, name=f"hidden_{index}")
            for index, width in enumerate(mlp_layers)
        ]
        self.output_projection = keras.layers.Dense(self.vocabulary_size, dtype="float32", name="output_projection")

    def build(self, input_shape):
        width = input_shape[-1]
        for layer, next_width in zip(self.hidden_layers, self.mlp_layers):
            layer.build((None, None, width))
            width = next_width
        self.output_projection.build((None, None, width))

    def call(self, user_vectors, training=False):
        """Decodes every hop's user vector.

        Args:
            user_vectors: [batch_size, num_hops, model_dim] user vectors.
            training: whether dropout is active.

        Returns:
            [batch_size, num_hops, vocabulary_size] float32 logits.
        """
        check_rank(user_vectors, 3, "user_vectors", "[batch_size, num_hops, model_dim]")
        hidden = user_vectors
        for dropout, layer in zip(self.hidden_dropouts, self.hidden_layers):
            hidden = layer(dropout(hidden, training=training))
        return self.output_projection(hidden)

    def consistency_loss(self, user_vectors, target_words, target_weights, loss_weights, training=False,
                         num_sampled=0):
        """The training loss without materialising the logits of every hop at once.

        Runs the hidden layers, then fuses the vocabulary layer with the SUMN
        cross-entropy hop by hop (``projected_consistency_loss``). Same value
        and gradient as ``sum(loss_weights * per_hop_consistency_loss(
        self(user_vectors), target_words, target_weights))``. The softmax and
        the loss run in float32, as in ``call``; under a ``mixed_bfloat16``
        policy the vocabulary layer's matmuls run in bfloat16 here (about 2x
        faster on CPUs with AVX512-BF16, logits rounded to bfloat16; an
        opt-in, since the default policy is float32), under any other
        policy in float32.

        With ``num_sampled > 0`` the vocabulary layer is read only at the
        users' target words and ``num_sampled`` log-uniform negatives
        (``sampled_consistency_loss``: a sampled softmax, an estimate of the
        exact loss whose cost no longer grows with the vocabulary).

        Args:
            user_vectors: [batch_size, num_hops, model_dim] user vectors.
            target_words: [batch_size, max_targets] integer word ids, padded with 0.
            target_weights: [batch_size, max_targets] target probabilities, padded with 0.
            loss_weights: [batch_size, num_hops] constant weight of each user's hop.
            training: whether dropout is active.
            num_sampled: 0 (the exact loss over every word) or the negatives
                of the sampled softmax, below ``vocabulary_size``.

        Returns:
            ``(loss, per_hop)``: the float32 scalar weighted sum and the
            [batch_size, num_hops] float32 per-hop losses (no gradient).
        """
        check_rank(user_vectors, 3, "user_vectors", "[batch_size, num_hops, model_dim]")
        if not self.built:
            self.build(user_vectors.shape)
        hidden = user_vectors
        for dropout, layer in zip(self.hidden_dropouts, self.hidden_layers):
            hidden = layer(dropout(hidden, training=training))
        # Read outside any layer call, the float32 weights come uncast; the
        # loss casts to float32 anyway, should a caller's autocast scope differ.
        if num_sampled:
            return sampled_consistency_loss(
                hidden, self.output_projection.kernel, self.output_projection.bias,
                target_words, target_weights, loss_weights, num_sampled)
        return projected_consistency_loss(
            hidden,
            self.output_projection.kernel,
            self.output_projection.bias,
            target_words,
            target_weights,
            loss_weights,
            matmul_dtype="bfloat16" if self.compute_dtype == "bfloat16" else "float32",
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "mlp_layers": list(self.mlp_layers),
                "dropout_rate": self.dropout_rate,
            }
        )
        return config
