"""BehaviourEncoder: masked mean of word embeddings per behaviour, then Dense+ReLU."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.sumn.behaviour_encoder import BehaviourEncoder
from model.sumn.model_inputs import history_to_model_inputs

VOCABULARY_SIZE = 30
WORD_EMB_DIM = 6
MODEL_DIM = 5


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def encode(encoder, rows):
    inputs = history_to_model_inputs(tf.ragged.constant(rows, dtype=tf.int32, ragged_rank=2, inner_shape=()))
    return encoder(inputs["word_ids"], inputs["word_segments"], inputs["behaviour_mask"]).numpy()


def expected_behaviours(encoder, rows):
    """The SUMN definition, computed by hand with numpy on padded arrays."""
    table = encoder.word_embedding.embeddings.numpy()
    kernel = encoder.behaviour_projection.kernel.numpy()
    bias = encoder.behaviour_projection.bias.numpy()
    max_len = max(1, max(len(user) for user in rows))
    expected = np.zeros((len(rows), max_len, MODEL_DIM), np.float32)
    for user, behaviours in enumerate(rows):
        for position, words in enumerate(behaviours):
            words = [word for word in words if word != 0]
            if words:
                mean = table[words].mean(axis=0)
                expected[user, position] = np.maximum(mean @ kernel + bias, 0.0)
    return expected


def test_behaviour_vector_is_dense_relu_of_mean_word_embedding():
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)
    rows = [[[5, 6, 7], [8]], [[9, 9, 2]], []]

    behaviours = encode(encoder, rows)

    assert behaviours.shape == (3, 2, MODEL_DIM)
    np.testing.assert_allclose(behaviours, expected_behaviours(encoder, rows), rtol=1e-5, atol=1e-6)


def test_mean_of_word_embeddings_equals_hand_computation():
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)
    encoder.build()
    # An identity-like projection with zero bias exposes the mean itself.
    table = np.abs(np.random.default_rng(0).normal(size=(VOCABULARY_SIZE, WORD_EMB_DIM))).astype("float32")
    encoder.word_embedding.embeddings.assign(table)
    encoder.behaviour_projection.kernel.assign(np.eye(WORD_EMB_DIM, MODEL_DIM, dtype="float32"))
    encoder.behaviour_projection.bias.assign(np.zeros(MODEL_DIM, "float32"))

    behaviours = encode(encoder, [[[3, 4], [10, 11, 12]]])

    np.testing.assert_allclose(behaviours[0, 0], ((table[3] + table[4]) / 2)[:MODEL_DIM], rtol=1e-6)
    np.testing.assert_allclose(behaviours[0, 1], ((table[10] + table[11] + table[12]) / 3)[:MODEL_DIM], rtol=1e-6)


def test_padding_word_adds_to_neither_sum_nor_count():
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)

    with_padding = encode(encoder, [[[5, 0, 6, 0]]])
    without_padding = encode(encoder, [[[5, 6]]])

    np.testing.assert_allclose(with_padding, without_padding, rtol=1e-6)


def test_absent_behaviours_are_zero():
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)
    encoder.build()
    # A positive bias would make an empty behaviour non-zero after the ReLU.
    encoder.behaviour_projection.bias.assign(np.ones(MODEL_DIM, "float32"))

    behaviours = encode(encoder, [[[5], []], []])

    assert np.all(behaviours[0, 0] > 0)
    np.testing.assert_array_equal(behaviours[0, 1], 0.0)
    np.testing.assert_array_equal(behaviours[1], 0.0)


@pytest.mark.parametrize(
    "word_ids, word_segments, behaviour_mask, error, message",
    [
        pytest.param(
            np.zeros((2, 3), "int32"), np.zeros((6,), "int32"), np.ones((1, 6), bool),
            ValueError, r"`word_ids` should have shape \[num_words\].*\(2, 3\)", id="word_ids_2d",
        ),
        pytest.param(
            np.zeros((4,), "int32"), np.zeros((3,), "int32"), np.ones((1, 6), bool),
            ValueError, "`word_segments` should have one entry per word", id="length_mismatch",
        ),
        pytest.param(
            np.zeros((4,), "int32"), np.zeros((4,), "int32"), np.ones((6,), bool),
            ValueError, r"`behaviour_mask` should have shape \[batch_size, max_len\]", id="mask_1d",
        ),
        pytest.param(
            np.zeros((4,), "float32"), np.zeros((4,), "int32"), np.ones((1, 6), bool),
            TypeError, "`word_ids` should hold integer ids", id="float_word_ids",
        ),
    ],
)
def test_bad_inputs_are_rejected_with_argument_and_shape(word_ids, word_segments, behaviour_mask, error, message):
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)

    with pytest.raises(error, match=message):
        encoder(word_ids, word_segments, behaviour_mask)


def test_bad_constructor_argument_is_named():
    with pytest.raises(ValueError, match="`model_dim` should be at least 1"):
        BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, 0)


def test_get_config_round_trip():
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)

    restored = keras.layers.deserialize(keras.layers.serialize(encoder))

    assert isinstance(restored, BehaviourEncoder)
    assert restored.get_config() == encoder.get_config()


def test_save_and_load_give_identical_outputs(tmp_path):
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)
    rows = [[[5, 6, 7], [8]], [[9, 9, 2]]]
    before = encode(encoder, rows)

    path = str(tmp_path / "encoder.keras")
    keras.saving.save_model(encoder, path)
    restored = keras.saving.load_model(path)

    np.testing.assert_array_equal(encode(restored, rows), before)


def embedding_gradient(encoder, word_ids, word_segments, behaviour_mask):
    """The embedding's gradient of a fixed quadratic loss of the encoder's output."""
    with tf.GradientTape() as tape:
        behaviours = encoder(word_ids, word_segments, behaviour_mask)
        loss = tf.reduce_sum(tf.square(tf.cast(behaviours, tf.float32)) * np.arange(1, MODEL_DIM + 1))
    return tape.gradient(loss, encoder.word_embedding.embeddings)


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf_function"])
def test_embedding_gradient_is_indexed_slices_over_the_distinct_words(in_graph):
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)
    # Repeated words, a padding word, an empty user.
    inputs = history_to_model_inputs(tf.ragged.constant([[[5, 6, 7, 5], [8, 0]], [[9, 9, 2]], []], dtype=tf.int32))
    gradient_of = tf.function(embedding_gradient) if in_graph else embedding_gradient

    gradient = gradient_of(encoder, inputs["word_ids"], inputs["word_segments"], inputs["behaviour_mask"])

    assert isinstance(gradient, tf.IndexedSlices)
    np.testing.assert_array_equal(gradient.indices.numpy(), [2, 5, 6, 7, 8, 9])
    # Against the same loss through a dense gather of the table, word by word.
    table = encoder.word_embedding.embeddings
    kernel, bias = encoder.behaviour_projection.kernel, encoder.behaviour_projection.bias
    with tf.GradientTape() as tape:
        tape.watch(table.value)
        means = tf.stack([tf.reduce_mean(tf.gather(table.value, words), axis=0)
                          for words in ([5, 6, 7, 5], [8], [9, 9, 2])])
        behaviours = tf.nn.relu(tf.matmul(means, kernel) + bias)
        loss = tf.reduce_sum(tf.square(behaviours) * np.arange(1, MODEL_DIM + 1))
    expected = tf.convert_to_tensor(tape.gradient(loss, table.value))
    np.testing.assert_allclose(tf.convert_to_tensor(gradient).numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)


def test_words_out_of_behaviour_order_give_the_same_vectors():
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)
    mask = np.array([[True, True, False], [True, False, False]])

    in_order = encoder(np.array([5, 6, 7, 8, 9], "int32"), np.array([0, 0, 1, 1, 3], "int32"), mask)
    shuffled = encoder(np.array([8, 5, 9, 7, 6], "int32"), np.array([1, 0, 3, 1, 0], "int32"), mask)

    np.testing.assert_allclose(shuffled.numpy(), in_order.numpy(), rtol=1e-6)


def test_call_is_word_means_then_project():
    encoder = BehaviourEncoder(VOCABULARY_SIZE, WORD_EMB_DIM, MODEL_DIM)
    inputs = history_to_model_inputs(tf.ragged.constant([[[5, 6], [7]], [], [[8, 0, 9]]], dtype=tf.int32))
    args = (inputs["word_ids"], inputs["word_segments"], inputs["behaviour_mask"])

    means = encoder.word_means(*args)

    assert tuple(means.shape) == (3, WORD_EMB_DIM)  # one row per present behaviour
    np.testing.assert_array_equal(encoder.project(means, inputs["behaviour_mask"]).numpy(), encoder(*args).numpy())
