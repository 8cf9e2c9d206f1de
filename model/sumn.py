"""The SUMN model: behaviour encoder -> pooling -> behavioural-consistency decoder."""

import keras
from keras import ops

from model.behaviour_encoder import BehaviourEncoder
from model.consistency_decoder import BehaviouralConsistencyDecoder
from model.model_inputs import BEHAVIOUR_MASK
from model.model_inputs import MODEL_INPUT_KEYS
from model.model_inputs import WORD_IDS
from model.model_inputs import WORD_SEGMENTS
from model.pooling import make_pooling

USER_VECTORS = "user_vectors"
LOGITS = "logits"


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
            inputs: the dict from ``model.model_inputs.history_to_model_inputs``:
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

    def _user_vectors(self, inputs):
        if not isinstance(inputs, dict) or any(key not in inputs for key in MODEL_INPUT_KEYS):
            received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"`inputs` should be the dict from history_to_model_inputs with keys {list(MODEL_INPUT_KEYS)}. "
                f"Received: {received}."
            )
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
