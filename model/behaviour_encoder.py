"""SUMN's behaviour encoder: mean of a behaviour's word embeddings, then Dense+ReLU."""

import keras
from keras import ops

from model.input_checks import as_bool_mask
from model.input_checks import check_dim
from model.input_checks import check_integer
from model.input_checks import check_rank


@keras.saving.register_keras_serializable(package="uur")
class BehaviourEncoder(keras.layers.Layer):
    """Encodes every behaviour (a bag of word ids) as one ``model_dim`` vector.

    A behaviour vector is the mean of its word embeddings followed by
    ``Dense(model_dim, relu)``; absent behaviours come out as zeros. Words
    arrive flat (see ``model.model_inputs.history_to_model_inputs``), so the
    cost follows the number of real words, never the padded maxima. Word id 0
    (padding) contributes to neither the sum nor the count, which is what
    SUMN's zeroed embedding row 0 achieves.

    Example:

    ```python
    encoder = BehaviourEncoder(vocabulary_size=100, word_emb_dim=8, model_dim=4)
    inputs = history_to_model_inputs(tf.ragged.constant([[[5, 6], [7]], [[8]]]))
    behaviours = encoder(inputs["word_ids"], inputs["word_segments"], inputs["behaviour_mask"])
    # behaviours.shape == (2, 2, 4)
    ```

    Args:
        vocabulary_size: number of word ids (the largest id + 1).
        word_emb_dim: width of the word embeddings.
        model_dim: width of the behaviour vectors.
    """

    def __init__(self, vocabulary_size, word_emb_dim, model_dim, **kwargs):
        super().__init__(**kwargs)
        for argument, value, minimum in (
            ("vocabulary_size", vocabulary_size, 2),
            ("word_emb_dim", word_emb_dim, 1),
            ("model_dim", model_dim, 1),
        ):
            if int(value) < minimum:
                raise ValueError(f"`{argument}` should be at least {minimum}. Received: {argument}={value}.")
        self.vocabulary_size = int(vocabulary_size)
        self.word_emb_dim = int(word_emb_dim)
        self.model_dim = int(model_dim)
        self.word_embedding = keras.layers.Embedding(
            self.vocabulary_size, self.word_emb_dim, dtype=self.dtype_policy, name="word_embedding"
        )
        self.behaviour_projection = keras.layers.Dense(
            self.model_dim, activation="relu", dtype=self.dtype_policy, name="behaviour_projection"
        )

    def build(self, input_shape=None):
        # Every weight's shape follows from the constructor arguments.
        self.word_embedding.build()
        self.behaviour_projection.build((None, None, self.word_emb_dim))

    def call(self, word_ids, word_segments, behaviour_mask):
        """Averages each behaviour's word embeddings and projects them.

        Args:
            word_ids: [num_words] integer word ids of the whole batch, flat.
            word_segments: [num_words] integer index of each word's behaviour
                in the flattened [batch_size * max_len] behaviour grid.
            behaviour_mask: [batch_size, max_len] bool, True where a behaviour
                is present.

        Returns:
            [batch_size, max_len, model_dim] behaviour vectors, zero where
            ``behaviour_mask`` is False.
        """
        ids_shape = check_rank(word_ids, 1, "word_ids", "[num_words]")
        segments_shape = check_rank(word_segments, 1, "word_segments", "[num_words]")
        check_rank(behaviour_mask, 2, "behaviour_mask", "[batch_size, max_len]")
        check_integer(word_ids, "word_ids")
        check_integer(word_segments, "word_segments")
        check_dim(
            segments_shape[0],
            ids_shape[0],
            "`word_segments` should have one entry per word, like `word_ids`. Received: "
            f"`word_segments.shape` = {segments_shape}, `word_ids.shape` = {ids_shape}.",
        )

        mask = as_bool_mask(behaviour_mask)
        grid_shape = ops.shape(mask)
        num_slots = grid_shape[0] * grid_shape[1]
        word_ids = ops.cast(word_ids, "int32")
        word_segments = ops.cast(word_segments, "int32")

        # Padding words go to one extra slot that is dropped afterwards, so they
        # add to neither the sum nor the count (cheaper than masking the
        # [num_words, word_emb_dim] embeddings).
        is_word = ops.not_equal(word_ids, 0)
        segments = ops.where(is_word, word_segments, num_slots)
        embedded = self.word_embedding(word_ids)  # [num_words, word_emb_dim]
        sums = ops.segment_sum(embedded, segments, num_segments=num_slots + 1)[:num_slots]
        counts = ops.segment_sum(
            ops.ones_like(word_ids, dtype="float32"), segments, num_segments=num_slots + 1
        )[:num_slots]
        means = sums / ops.cast(ops.expand_dims(ops.maximum(counts, 1.0), -1), sums.dtype)
        means = ops.reshape(means, (grid_shape[0], grid_shape[1], self.word_emb_dim))

        behaviours = self.behaviour_projection(means)
        return ops.where(ops.expand_dims(mask, -1), behaviours, ops.zeros_like(behaviours))

    def compute_output_shape(self, word_ids_shape, word_segments_shape, behaviour_mask_shape):
        return (behaviour_mask_shape[0], behaviour_mask_shape[1], self.model_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "word_emb_dim": self.word_emb_dim,
                "model_dim": self.model_dim,
            }
        )
        return config
