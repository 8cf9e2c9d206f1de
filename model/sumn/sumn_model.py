"""The SUMN model: behaviour encoder -> pooling -> behavioural-consistency decoder.

``SumnModel.consistency_loss`` is the training path, built so peak memory
does not follow the longest histories (issue #3: <= 4 GB at SUMN's paper
shapes, where 128 users x 900 behaviours make every [behaviours, 256]
activation 118 MB and the pooling keeps about 20 of them for its backward
pass): the behaviour projection and the pooling run in chunks of users and
are recomputed chunk by chunk in the backward pass
(``_chunked_user_vectors``); the decoder's vocabulary layer runs fused with
the loss, hop by hop. That part is TensorFlow (a custom gradient, a
``tf.while_loop`` whose iterations do not overlap, a tape per chunk), which
``keras.ops`` cannot express.
"""

import keras
import tensorflow as tf
from keras import ops

from model.sumn.behaviour_encoder import BehaviourEncoder
from model.sumn.consistency_decoder import BehaviouralConsistencyDecoder
from model.layers.input_checks import as_bool_mask
from model.sumn.model_inputs import BEHAVIOUR_MASK
from model.sumn.model_inputs import MODEL_INPUT_KEYS
from model.sumn.model_inputs import WORD_IDS
from model.sumn.model_inputs import WORD_SEGMENTS
from model.sumn.pooling import make_pooling

USER_VECTORS = "user_vectors"
LOGITS = "logits"

# Present behaviours whose projection and pooling activations the training
# path keeps alive at once (about 20 x rows x model_dim x 4 bytes: 42 MB at
# model_dim 256). A batch with fewer rows is one chunk. With this and the
# loss's 64-row kernel blocks, bench/train.py's peak at SUMN's paper shapes
# (900 behaviours) went 4.06 -> 3.82 GB; the step 5.01 -> 5.14 s.
RECOMPUTE_CHUNK_ROWS = 2_048


@keras.saving.register_keras_serializable(package="uur")
class SumnModel(keras.Model):
    """Universal user representations by behavioural consistency (Gu et al., AAAI 2021).

    The encoder side (``behaviour_encoder`` then ``pooling``) turns a user's
    history into ``num_hops`` user vectors; the ``decoder`` predicts the words
    of the user's other behaviours from each, and exists only for training.
    ``encoder_layers`` names the encoder side, for warm starts that restore it
    alone.

    Example:

    ```python
    model = SumnModel(vocabulary_size=1000, word_emb_dim=32, model_dim=32)
    inputs = history_to_model_inputs(batch["history"])
    outputs = model(inputs, training=True)
    loss = behavioural_consistency_loss(outputs["logits"], target_words, target_weights)
    user_vectors = model.encode(inputs)  # [batch_size, 5, 32]
    ```

    Args:
        vocabulary_size: number of word ids (``--num_vocabulary``).
        word_emb_dim: word embedding width (``--word_emb_dim``, SUMN: 256).
        model_dim: behaviour and user vector width (``--model_dim``, SUMN: 256).
        pooling: ``max``, ``mean``, ``mhop`` or ``gruhop`` (``--pooling``).
        num_hops: hops of ``mhop`` / ``gruhop`` (SUMN: 5); ``max`` and ``mean`` give 1.
        mlp_layers: decoder hidden widths (``--mlp_layers``, SUMN: 512).
        dropout_rate: decoder dropout (``--dropout_rate``, SUMN: 0.1).
    """

    def __init__(
        self,
        vocabulary_size,
        word_emb_dim=256,
        model_dim=256,
        pooling="mhop",
        num_hops=5,
        mlp_layers=(512,),
        dropout_rate=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.word_emb_dim = int(word_emb_dim)
        self.model_dim = int(model_dim)
        self.pooling_name = pooling
        self.mlp_layers = tuple(int(width) for width in mlp_layers)
        self.dropout_rate = float(dropout_rate)
        policy = self.dtype_policy
        self.behaviour_encoder = BehaviourEncoder(
            self.vocabulary_size, self.word_emb_dim, self.model_dim, dtype=policy, name="behaviour_encoder"
        )
        self.pooling = make_pooling(pooling, self.model_dim, num_hops, dtype=policy)
        self.decoder = BehaviouralConsistencyDecoder(
            self.vocabulary_size, self.mlp_layers, self.dropout_rate, dtype=policy, name="decoder"
        )
        self.requested_num_hops = int(num_hops)

    @property
    def num_hops(self):
        """User vectors per user: ``num_hops`` for mhop / gruhop, 1 for max / mean."""
        return self.pooling.num_hops

    @property
    def encoder_layers(self):
        """The layers that make user vectors (what a warm start restores), by attribute name."""
        return {"behaviour_encoder": self.behaviour_encoder, "pooling": self.pooling}

    def build(self, input_shape=None):
        # Every weight's shape follows from the constructor arguments.
        self.behaviour_encoder.build()
        self.pooling.build((None, None, self.model_dim))
        self.decoder.build((None, self.num_hops, self.model_dim))

    def call(self, inputs, training=False):
        """Encodes the users and decodes every hop.

        Args:
            inputs: the dict from ``model.sumn.model_inputs.history_to_model_inputs``:
                ``word_ids`` [num_words] int, ``word_segments`` [num_words] int,
                ``behaviour_mask`` [batch_size, max_len] bool.
            training: whether dropout is active.

        Returns:
            A dict: ``user_vectors`` [batch_size, num_hops, model_dim] float32
            and ``logits`` [batch_size, num_hops, vocabulary_size] float32.
        """
        user_vectors = self._user_vectors(inputs)
        logits = self.decoder(user_vectors, training=training)
        return {USER_VECTORS: ops.cast(user_vectors, "float32"), LOGITS: logits}

    def consistency_loss(self, inputs, target_words, target_weights, loss_weights, training=True,
                         num_sampled=0):
        """The training objective, without the [batch_size, num_hops, vocabulary_size] logits.

        What the training loop differentiates: the same value and gradient as
        ``sum(loss_weights * per_hop_consistency_loss(self(inputs)["logits"],
        target_words, target_weights))``, with the decoder's vocabulary layer
        fused with the loss hop by hop
        (``BehaviouralConsistencyDecoder.consistency_loss``).

        Args:
            inputs: the dict from ``history_to_model_inputs`` (see ``call``).
            target_words, target_weights, loss_weights, training, num_sampled:
                as ``BehaviouralConsistencyDecoder.consistency_loss``.

        Returns:
            ``(loss, per_hop)``, as ``BehaviouralConsistencyDecoder.consistency_loss``.
        """
        user_vectors = self.training_user_vectors(inputs)
        return self.decoder.consistency_loss(
            user_vectors, target_words, target_weights, loss_weights, training, num_sampled)

    def training_user_vectors(self, inputs):
        """``encode``'s user vectors, in the compute dtype, by the training path's memory-bounded route.

        The word means are taken once; the behaviour projection and the
        pooling run in chunks of about ``RECOMPUTE_CHUNK_ROWS`` behaviours and
        are recomputed chunk by chunk for the backward pass, so the
        activations alive at once follow the chunk, not the batch.

        Args:
            inputs: the dict from ``history_to_model_inputs`` (see ``call``).

        Returns:
            [batch_size, num_hops, model_dim] user vectors in the compute dtype.
        """
        if not self.built:
            self.build()
        self._check_inputs(inputs)
        mask = as_bool_mask(inputs[BEHAVIOUR_MASK])
        means = self.behaviour_encoder.word_means(inputs[WORD_IDS], inputs[WORD_SEGMENTS], mask)
        return _chunked_user_vectors(
            self._pool_means, means, mask, (self.num_hops, self.model_dim), self.pooling.compute_dtype,
            RECOMPUTE_CHUNK_ROWS,
        )

    def _pool_means(self, means, behaviour_mask):
        return self.pooling(self.behaviour_encoder.project(means, behaviour_mask), behaviour_mask)

    def encode(self, inputs):
        """User vectors only, without the decoder (what inference needs).

        Args:
            inputs: the dict from ``history_to_model_inputs`` (see ``call``).

        Returns:
            [batch_size, num_hops, model_dim] float32 user vectors, hop 1 first.
        """
        if not self.built:
            self.build()
        return ops.cast(self._user_vectors(inputs), "float32")

    @staticmethod
    def _check_inputs(inputs):
        if not isinstance(inputs, dict) or any(key not in inputs for key in MODEL_INPUT_KEYS):
            received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"`inputs` should be the dict from history_to_model_inputs with keys {list(MODEL_INPUT_KEYS)}. "
                f"Received: {received}."
            )

    def _user_vectors(self, inputs):
        self._check_inputs(inputs)
        behaviour_mask = inputs[BEHAVIOUR_MASK]
        behaviours = self.behaviour_encoder(inputs[WORD_IDS], inputs[WORD_SEGMENTS], behaviour_mask)
        return self.pooling(behaviours, behaviour_mask)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "word_emb_dim": self.word_emb_dim,
                "model_dim": self.model_dim,
                "pooling": self.pooling_name,
                "num_hops": self.requested_num_hops,
                "mlp_layers": list(self.mlp_layers),
                "dropout_rate": self.dropout_rate,
            }
        )
        return config


def _chunked_user_vectors(pool_means, means, mask, vector_shape, vector_dtype, chunk_rows):
    """``pool_means(means, mask)`` computed in chunks of users, recomputed for the backward pass.

    A user's vectors depend on that user's behaviours only, and ``means``
    holds the present behaviours user by user (grid order), so a chunk of
    consecutive users is a contiguous block of rows. The forward pass runs
    the chunks one after another and keeps none of their activations; the
    backward pass runs each chunk again under a tape and back-propagates that
    chunk's share of the upstream gradient. So at most one chunk's
    activations (about ``chunk_rows`` behaviours) are alive at once, at the
    price of one more forward pass of the projection and the pooling.

    Args:
        pool_means: ``(means [rows, dim], mask [users, max_len]) -> [users,
            num_hops, model_dim]``; reads variables. It must be
            deterministic (no dropout): the backward pass recomputes it.
        means: [num_present, word_emb_dim] from ``BehaviourEncoder.word_means``.
        mask: [batch_size, max_len] bool.
        vector_shape: ``(num_hops, model_dim)``, the shape of one user's vectors.
        vector_dtype: their dtype (the pooling's compute dtype).
        chunk_rows: behaviours per chunk (a chunk holds at least one user).

    Returns:
        [batch_size, num_hops, model_dim] user vectors, differentiable with
        respect to ``means`` and the variables ``pool_means`` reads.
    """
    batch_size = tf.shape(mask)[0]
    max_len = tf.shape(mask)[1]
    row_starts = tf.concat([[0], tf.cumsum(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1))], axis=0)
    users_per_chunk = tf.maximum(chunk_rows // tf.maximum(max_len, 1), 1)
    # At least one (possibly empty) chunk, so an empty replica slice still runs.
    num_chunks = tf.maximum((batch_size + users_per_chunk - 1) // users_per_chunk, 1)

    def chunk_inputs(chunk, chunk_means):
        first_user = chunk * users_per_chunk
        end_user = tf.minimum(first_user + users_per_chunk, batch_size)
        users = slice(first_user, end_user)
        return chunk_means[row_starts[first_user]:row_starts[end_user]], mask[users], users

    def loop(body, state):
        return tf.while_loop(
            lambda chunk, *_: chunk < num_chunks, body, (tf.constant(0), *state),
            parallel_iterations=1,  # one chunk's activations at a time
        )[1:]

    @tf.custom_gradient
    def user_vectors(means):
        def forward(chunk, outputs):
            chunk_means, chunk_mask, _ = chunk_inputs(chunk, means)
            return chunk + 1, outputs.write(chunk, tf.cast(pool_means(chunk_means, chunk_mask), vector_dtype))

        (outputs,) = loop(forward, (tf.TensorArray(
            vector_dtype, size=num_chunks, infer_shape=False, element_shape=(None, *vector_shape)),))
        result = outputs.concat()

        def gradient(upstream, variables=None):
            variables = list(variables or [])

            def backward(chunk, means_gradients, variable_gradients):
                chunk_means, chunk_mask, users = chunk_inputs(chunk, means)
                with tf.GradientTape() as tape:
                    tape.watch(chunk_means)
                    chunk_vectors = pool_means(chunk_means, chunk_mask)
                gradients = tape.gradient(
                    chunk_vectors, [chunk_means, *variables], output_gradients=upstream[users],
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                means_gradients = means_gradients.write(chunk, gradients[0])
                variable_gradients = [
                    total + tf.convert_to_tensor(gradient)
                    for total, gradient in zip(variable_gradients, gradients[1:])
                ]
                return chunk + 1, means_gradients, variable_gradients

            means_gradients, variable_gradients = loop(
                backward,
                (
                    tf.TensorArray(
                        means.dtype, size=num_chunks, infer_shape=False, element_shape=(None, means.shape[-1])),
                    [tf.zeros_like(variable) for variable in variables],
                ),
            )
            return means_gradients.concat(), variable_gradients

        return result, gradient

    return user_vectors(means)
