"""SUMN's behaviour encoder: mean of a behaviour's word embeddings, then Dense+ReLU."""

import keras
from keras import ops

from model.input_checks import as_bool_mask
from model.input_checks import check_dim
from model.input_checks import check_integer
from model.input_checks import check_rank


def _segment_sum(data, segment_ids, num_segments):
    """Sums the rows of ``data`` by segment: [num_rows, dim] -> [num_segments, dim].

    Words arrive in behaviour order from ``history_to_model_inputs``, so the
    sorted kernel serves: it is faster than the unsorted one and its gradient
    is a plain gather (the unsorted one's gradient also builds a mask and a
    select over the whole [num_rows, dim] gradient). Any other order falls
    back to the unsorted kernel.
    """

    def in_order():
        sums = ops.segment_sum(data, segment_ids, sorted=True)  # rows up to the largest id
        return ops.pad(sums, [[0, num_segments - ops.shape(sums)[0]], [0, 0]])

    def any_order():
        return ops.segment_sum(data, segment_ids, num_segments=num_segments)

    is_sorted = ops.all(ops.greater_equal(segment_ids[1:], segment_ids[:-1]))
    return ops.cond(is_sorted, in_order, any_order)


@keras.saving.register_keras_serializable(package="uur")
class BehaviourEncoder(keras.layers.Layer):
    """Encodes every behaviour (a bag of word ids) as one ``model_dim`` vector.

    A behaviour vector is the mean of its word embeddings followed by
    ``Dense(model_dim, relu)``; absent behaviours come out as zeros. Words
    arrive flat (see ``model.model_inputs.history_to_model_inputs``) and the
    projection runs on the present behaviours only, so the cost follows the
    real words and behaviours, never the padded maxima; only the output is
    laid out on the [batch_size, max_len] grid. Word id 0 (padding)
    contributes to neither the sum nor the count, which is what SUMN's zeroed
    embedding row 0 achieves.

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
        flat_mask = ops.reshape(mask, (-1,))
        # The work runs on the present behaviours only ([num_present] rows, in
        # grid order) and the result is scattered into the grid at the end, so
        # padding slots cost one zero-fill, not a share of the projection.
        present_slots = ops.nonzero(flat_mask)[0]  # [num_present]
        num_present = ops.shape(present_slots)[0]
        slot_rows = ops.cumsum(ops.cast(flat_mask, "int32")) - 1  # row of each present slot
        word_ids = ops.cast(word_ids, "int32")
        word_segments = ops.cast(word_segments, "int32")
        # Padding words and words of absent behaviours add to neither a sum nor
        # a count: drop them from the (integer) index vectors up front.
        kept = ops.logical_and(ops.not_equal(word_ids, 0), ops.take(flat_mask, word_segments))
        kept_words = ops.nonzero(kept)[0]
        word_rows = ops.take(slot_rows, ops.take(word_segments, kept_words))  # in [0, num_present)

        # Embed each distinct word once: the embedding gradient then has one row
        # per distinct word of the batch rather than one per occurrence, which
        # keeps the optimizer's sparse-to-dense update small.
        unique_ids, word_index = ops.unique(ops.take(word_ids, kept_words), sorted=False, return_inverse=True)
        table = self.word_embedding(unique_ids)  # [num_distinct, word_emb_dim]
        embedded = ops.take(table, word_index, axis=0)  # [num_kept_words, word_emb_dim]
        sums = _segment_sum(embedded, word_rows, num_present)
        counts = ops.bincount(word_rows, minlength=num_present)
        means = sums / ops.expand_dims(ops.cast(ops.maximum(counts, 1), sums.dtype), -1)

        behaviours = self.behaviour_projection(means)  # [num_present, model_dim]
        grid = ops.scatter(
            ops.expand_dims(present_slots, -1), behaviours, (grid_shape[0] * grid_shape[1], self.model_dim)
        )
        return ops.reshape(grid, (grid_shape[0], grid_shape[1], self.model_dim))

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
