"""history_to_model_inputs: ragged histories -> flat word ids, behaviour slots, mask."""

import numpy as np
import pytest
import tensorflow as tf

from model.sumn.model_inputs import history_to_model_inputs


def ragged(rows):
    return tf.ragged.constant(rows, dtype=tf.int32, ragged_rank=2, inner_shape=())


def as_numpy(inputs):
    return {key: value.numpy() for key, value in inputs.items()}


def test_flat_words_point_at_their_behaviour_slot():
    inputs = as_numpy(history_to_model_inputs(ragged([[[5, 6], [7]], [[8, 9, 10]], [[11], [12], [13, 14]]])))

    np.testing.assert_array_equal(inputs["word_ids"], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14])
    # max_len = 3: user u, behaviour b lives in slot 3 * u + b.
    np.testing.assert_array_equal(inputs["word_segments"], [0, 0, 1, 3, 3, 3, 6, 7, 8, 8])
    np.testing.assert_array_equal(
        inputs["behaviour_mask"], [[True, True, False], [True, False, False], [True, True, True]]
    )
    assert inputs["word_ids"].dtype == np.int32
    assert inputs["word_segments"].dtype == np.int32
    assert inputs["behaviour_mask"].dtype == bool


def test_max_len_is_the_longest_history_in_the_batch():
    short = history_to_model_inputs(ragged([[[5]], [[6]]]))
    long = history_to_model_inputs(ragged([[[5]], [[6], [7], [8], [9]]]))

    assert short["behaviour_mask"].shape == (2, 1)
    assert long["behaviour_mask"].shape == (2, 4)


@pytest.mark.parametrize(
    "rows, expected_mask",
    [
        pytest.param([[[5], [], [6]]], [[True, False, True]], id="empty_behaviour_is_absent"),
        pytest.param([[[0, 0], [6]]], [[False, True]], id="all_padding_behaviour_is_absent"),
        pytest.param([[[5]], []], [[True], [False]], id="user_without_history"),
        pytest.param([[], []], [[False], [False]], id="batch_without_history_keeps_one_slot"),
    ],
)
def test_absent_behaviours(rows, expected_mask):
    inputs = as_numpy(history_to_model_inputs(ragged(rows)))

    np.testing.assert_array_equal(inputs["behaviour_mask"], expected_mask)


def test_int64_ids_and_row_splits_are_accepted():
    history = tf.ragged.constant([[[5, 6]], [[7]]], dtype=tf.int64, row_splits_dtype=tf.int64)

    inputs = as_numpy(history_to_model_inputs(history))

    np.testing.assert_array_equal(inputs["word_ids"], [5, 6, 7])
    assert inputs["word_ids"].dtype == np.int32


def test_works_inside_tf_function_with_unknown_shapes():
    spec = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)
    convert = tf.function(history_to_model_inputs, input_signature=[spec])

    inputs = as_numpy(convert(ragged([[[5, 6], [7]], [[8]]])))

    np.testing.assert_array_equal(inputs["word_segments"], [0, 0, 1, 2])


@pytest.mark.parametrize(
    "history, error, message",
    [
        pytest.param(np.zeros((2, 3, 4), np.int32), TypeError, "`history` should be a tf.RaggedTensor", id="dense"),
        pytest.param(
            tf.ragged.constant([[1, 2], [3]]), ValueError, r"ragged_rank 2\). Received: shape", id="ragged_rank_1"
        ),
        pytest.param(
            tf.ragged.constant([[[1.0]]], dtype=tf.float32), TypeError, "integer word ids", id="float_ids"
        ),
    ],
)
def test_bad_history_is_rejected(history, error, message):
    with pytest.raises(error, match=message):
        history_to_model_inputs(history)
