"""Turns a batch of ragged histories into the dense tensors the SUMN layers read.

The loader yields ``history`` as a ``tf.RaggedTensor`` [batch, (behaviours),
(words)]. Padding every behaviour to the longest one would build a dense
[batch, behaviours, words, dim] tensor whose cost follows the padded maxima;
instead the words stay flat and each word carries the index of its behaviour's
slot in a [batch, max_len] grid, so the encoder can average them with one
segment sum. This is the one place in ``model/`` that uses TensorFlow ops
directly: its input is a TensorFlow ragged tensor.
"""

import tensorflow as tf

WORD_IDS = "word_ids"
WORD_SEGMENTS = "word_segments"
BEHAVIOUR_MASK = "behaviour_mask"
MODEL_INPUT_KEYS = (WORD_IDS, WORD_SEGMENTS, BEHAVIOUR_MASK)


def history_to_model_inputs(history):
    """Flattens a ragged batch of histories into dense model inputs.

    Example:

    ```python
    history = tf.ragged.constant([[[5, 6], [7]], [[8, 9, 10]]])
    inputs = history_to_model_inputs(history)
    # inputs["word_ids"]       == [5, 6, 7, 8, 9, 10]
    # inputs["word_segments"]  == [0, 0, 1, 2, 2, 2]     (slot = user * max_len + behaviour)
    # inputs["behaviour_mask"] == [[True, True], [True, False]]
    ```

    Args:
        history: ``tf.RaggedTensor`` [batch, (behaviours), (words)] of integer
            word ids (0 = padding, 1 = out of vocabulary, real words >= 2).

    Returns:
        A dict of dense tensors:
          ``word_ids``: [num_words] int32, every word id of the batch in order.
          ``word_segments``: [num_words] int32, for each word the index of its
            behaviour in the flattened [batch * max_len] behaviour grid.
          ``behaviour_mask``: [batch, max_len] bool, True where a behaviour is
            present. ``max_len`` is the longest history in this batch (at
            least 1, so an all-empty batch still has a well-formed grid). A
            behaviour with no non-zero word is absent, as in SUMN (present
            when its first word is non-zero).
    """
    if not isinstance(history, tf.RaggedTensor):
        raise TypeError(
            "`history` should be a tf.RaggedTensor [batch, (behaviours), (words)]. "
            f"Received: {type(history).__name__}."
        )
    if history.ragged_rank != 2 or history.shape.rank != 3:
        raise ValueError(
            "`history` should be a tf.RaggedTensor [batch, (behaviours), (words)] "
            f"(ragged_rank 2). Received: shape {history.shape}, ragged_rank {history.ragged_rank}."
        )
    if not history.dtype.is_integer:
        raise TypeError(f"`history` should hold integer word ids. Received: dtype {history.dtype.name}.")

    history = history.with_row_splits_dtype(tf.int32)
    behaviours = history.values  # [total_behaviours, (words)]
    word_ids = tf.cast(behaviours.values, tf.int32)  # [num_words]

    batch_size = history.nrows()
    history_lengths = history.row_lengths()
    max_len = tf.maximum(tf.reduce_max(history_lengths), 1)  # reduce_max of no users is INT_MIN

    # Slot of each behaviour in the [batch * max_len] grid.
    behaviour_user = history.value_rowids()
    behaviour_position = tf.range(behaviours.nrows()) - tf.gather(history.row_splits, behaviour_user)
    behaviour_slot = behaviour_user * max_len + behaviour_position

    word_behaviour = behaviours.value_rowids()
    word_segments = tf.gather(behaviour_slot, word_behaviour)

    real_words = tf.math.unsorted_segment_sum(
        tf.cast(tf.not_equal(word_ids, 0), tf.int32), word_behaviour, behaviours.nrows()
    )
    present = tf.RaggedTensor.from_row_splits(real_words > 0, history.row_splits, validate=False)
    behaviour_mask = present.to_tensor(default_value=False, shape=tf.stack([batch_size, max_len]))

    return {
        WORD_IDS: word_ids,
        WORD_SEGMENTS: word_segments,
        BEHAVIOUR_MASK: behaviour_mask,
    }
