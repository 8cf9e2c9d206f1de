"""SUMN's behaviour encoder: mean of a behaviour's word embeddings, then Dense+ReLU.

Decision (the lead's, issue #3): layers use ``keras.ops`` where they can, but
``keras.ops`` has no fused sparse gather + segment reduction, and the unfused
``take`` + ``segment_sum`` materialises a [num_words, word_emb_dim] tensor and
its gradient: 1.5 GB each at SUMN's paper shapes (128 users x 900 behaviours x
1-24 words). So this layer, for that step only, is TensorFlow:
``tf.sparse.segment_mean`` on the embedding table with a custom sparse
gradient (``_embedding_segment_mean``); everything else stays ``keras.ops``.
The embedding gradient stays ``tf.IndexedSlices``, one row per distinct word
of the batch.
"""

import keras
import tensorflow as tf
from keras import ops

from model.layers.input_checks import as_bool_mask
from model.layers.input_checks import check_dim
from model.layers.input_checks import check_integer
from model.layers.input_checks import check_rank


def _in_segment_order(word_ids, word_rows):
    """Sorts the (id, row) pairs by row when they are not sorted already.

    ``tf.sparse.segment_mean`` wants sorted segment ids. Words arrive in
    behaviour order from ``history_to_model_inputs``, so the sort is a no-op
    check there; any other order is sorted (the order of the words within a
    behaviour does not change their mean).
    """

    def reorder():
        order = ops.argsort(word_rows)
        return ops.take(word_ids, order), ops.take(word_rows, order)

    is_sorted = ops.all(ops.greater_equal(word_rows[1:], word_rows[:-1]))
    return ops.cond(is_sorted, lambda: (word_ids, word_rows), reorder)


def _embedding_segment_mean(table, word_ids, word_rows, num_segments):
    """Mean of ``table[word_ids]`` per segment, with an ``IndexedSlices`` gradient.

    The forward pass is ``tf.sparse.segment_mean`` (gather and mean fused).
    Its registered sparse gradient (``SparseSegmentMeanGradV2``) runs 1.2 s
    on 2 CPU cores at SUMN's paper shapes (1.44M words); this one groups the
    words by id in the forward pass (integer work, 0.19 s) and computes the
    gradient as another fused sparse segment sum (0.26 s). The gradient's
    rows are the batch's distinct word ids, sorted, each once.

    Args:
        table: [vocabulary_size, dim] float tensor (the embedding table).
        word_ids: [num_words] int32 rows of ``table``.
        word_rows: [num_words] int32 segment of each word, sorted ascending.
        num_segments: number of output rows.

    Returns:
        [num_segments, dim] means, zero for a segment without words.
    """
    order = tf.argsort(word_ids, stable=True)
    distinct_ids, word_slots = tf.unique(tf.gather(word_ids, order))  # both sorted by id
    rows_by_id = tf.gather(word_rows, order)
    counts = tf.math.bincount(word_rows, minlength=num_segments, maxlength=num_segments, dtype=tf.float32)
    inverse_counts = tf.cast(tf.expand_dims(1.0 / tf.maximum(counts, 1.0), -1), table.dtype)

    @tf.custom_gradient
    def segment_mean(table):
        def gradient(upstream):
            values = tf.sparse.segment_sum(
                upstream * inverse_counts, rows_by_id, word_slots, num_segments=tf.shape(distinct_ids)[0]
            )
            return tf.IndexedSlices(values, distinct_ids, tf.shape(table, out_type=distinct_ids.dtype))

        return tf.sparse.segment_mean(table, word_ids, word_rows, num_segments=num_segments), gradient

    return segment_mean(table)


@keras.saving.register_keras_serializable(package="uur")
class BehaviourEncoder(keras.layers.Layer):
    """Encodes every behaviour (a bag of word ids) as one ``model_dim`` vector.

    A behaviour vector is the mean of its word embeddings followed by
    ``Dense(model_dim, relu)``; absent behaviours come out as zeros. Words
    arrive flat (see ``model.sumn.model_inputs.history_to_model_inputs``) and the
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
        # Inside a mixed-precision model, read the embedding table in float32
        # (the projection autocasts itself), as keras.layers.Embedding does.
        self.autocast = False

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

        return self.project(self.word_means(word_ids, word_segments, behaviour_mask), behaviour_mask)

    def word_means(self, word_ids, word_segments, behaviour_mask):
        """The first half of ``call``: the mean word embedding of every present behaviour.

        Args: as ``call``'s.

        Returns:
            [num_present, word_emb_dim] means in the compute dtype, one row
            per True of ``behaviour_mask``, in grid (row-major) order.
        """
        if not self.built:
            self.build()
        flat_mask = ops.reshape(as_bool_mask(behaviour_mask), (-1,))
        num_present = ops.sum(ops.cast(flat_mask, "int32"))
        slot_rows = ops.cumsum(ops.cast(flat_mask, "int32")) - 1  # row of each present slot
        word_ids = ops.cast(word_ids, "int32")
        word_segments = ops.cast(word_segments, "int32")
        # Padding words and words of absent behaviours add to neither a sum nor
        # a count: drop them from the (integer) index vectors up front.
        kept = ops.logical_and(ops.not_equal(word_ids, 0), ops.take(flat_mask, word_segments))
        kept_words = ops.nonzero(kept)[0]
        word_rows = ops.take(slot_rows, ops.take(word_segments, kept_words))  # in [0, num_present)
        kept_ids, word_rows = _in_segment_order(ops.take(word_ids, kept_words), word_rows)

        # Fused gather + mean straight from the table (see the module note): no
        # [num_words, word_emb_dim] tensor forward or backward. Inside a
        # mixed-precision model the table is read in float32 (this layer does
        # not autocast, like keras.layers.Embedding), so only the
        # [num_present, word_emb_dim] means are cast, not the whole table. A
        # tensor, not the variable, goes into the custom gradient.
        table = tf.convert_to_tensor(self.word_embedding.embeddings)
        means = _embedding_segment_mean(table, kept_ids, word_rows, num_present)
        return ops.cast(means, self.compute_dtype)

    def project(self, means, behaviour_mask):
        """The second half of ``call``: Dense+ReLU of the means, laid out on the grid.

        The projection runs on the present behaviours only; padding slots cost
        one zero-fill, not a share of the projection.

        Args:
            means: [num_present, word_emb_dim] from ``word_means`` (for the
                same ``behaviour_mask``).
            behaviour_mask: [batch_size, max_len] bool, True where a behaviour
                is present.

        Returns:
            [batch_size, max_len, model_dim] behaviour vectors, zero where
            ``behaviour_mask`` is False.
        """
        if not self.built:
            self.build()
        mask = as_bool_mask(behaviour_mask)
        grid_shape = ops.shape(mask)
        present_slots = ops.nonzero(ops.reshape(mask, (-1,)))[0]  # [num_present], grid order
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
