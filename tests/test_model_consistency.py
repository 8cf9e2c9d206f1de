"""The behavioural-consistency objective: MLP decoder and soft-target cross-entropy."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from model.sumn.consistency_decoder import BehaviouralConsistencyDecoder
from model.sumn.consistency_loss import behavioural_consistency_loss
from model.sumn.consistency_loss import per_hop_consistency_loss
from model.sumn.consistency_loss import projected_consistency_loss
from keras_helpers import global_policy

VOCABULARY_SIZE = 11
MODEL_DIM = 6


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def user_vectors(batch_size=3, num_hops=2):
    return np.random.default_rng(0).normal(size=(batch_size, num_hops, MODEL_DIM)).astype("float32")


# ---- decoder ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mlp_layers", [(), (8,), (8, 5)], ids=["linear", "one_hidden", "two_hidden"])
def test_decoder_gives_logits_per_hop(mlp_layers):
    decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=mlp_layers, dropout_rate=0.1)

    logits = decoder(user_vectors())

    assert tuple(logits.shape) == (3, 2, VOCABULARY_SIZE)
    assert len(decoder.hidden_layers) == len(mlp_layers)


def test_decoder_is_dropout_dense_relu_then_linear():
    decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=(8,), dropout_rate=0.5)
    vectors = user_vectors()

    logits = decoder(vectors, training=False).numpy()

    hidden = np.maximum(vectors @ decoder.hidden_layers[0].kernel.numpy() + decoder.hidden_layers[0].bias.numpy(), 0)
    expected = hidden @ decoder.output_projection.kernel.numpy() + decoder.output_projection.bias.numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_decoder_dropout_acts_only_in_training():
    decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=(8,), dropout_rate=0.5)
    vectors = user_vectors()

    inference = [decoder(vectors, training=False).numpy() for _ in range(2)]
    training = decoder(vectors, training=True).numpy()

    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.allclose(training, inference[0])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_decoder_logits_are_float32_under_mixed_precision(policy):
    with global_policy(policy):
        decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=(8,))

    logits = decoder(user_vectors())

    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert decoder.hidden_layers[0].compute_dtype == policy.split("_")[1]


def test_decoder_rejects_user_vectors_without_hop_axis():
    decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE)

    with pytest.raises(ValueError, match=r"`user_vectors` should have shape \[batch_size, num_hops, model_dim\]"):
        decoder(np.zeros((3, MODEL_DIM), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"dropout_rate": 1.0}, r"`dropout_rate` should be in \[0, 1\)", id="dropout_one"),
        pytest.param({"mlp_layers": (0,)}, "`mlp_layers` should hold positive widths", id="zero_width"),
        pytest.param({"vocabulary_size": 1}, "`vocabulary_size` should be at least 2", id="tiny_vocabulary"),
    ],
)
def test_decoder_rejects_bad_arguments(kwargs, message):
    arguments = {"vocabulary_size": VOCABULARY_SIZE, **kwargs}
    with pytest.raises(ValueError, match=message):
        BehaviouralConsistencyDecoder(**arguments)


def test_decoder_get_config_round_trip():
    decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=(8, 5), dropout_rate=0.2)

    restored = keras.layers.deserialize(keras.layers.serialize(decoder))

    assert isinstance(restored, BehaviouralConsistencyDecoder)
    assert restored.get_config() == decoder.get_config()


def test_decoder_save_and_load_give_identical_outputs(tmp_path):
    decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=(8,))
    vectors = user_vectors()
    before = decoder(vectors).numpy()

    path = str(tmp_path / "decoder.keras")
    keras.saving.save_model(decoder, path)
    restored = keras.saving.load_model(path)

    np.testing.assert_array_equal(restored(vectors).numpy(), before)


# ---- loss ------------------------------------------------------------------------------------

# Two users, two hops, a vocabulary of four words.
LOGITS = np.array(
    [
        [[1.0, 2.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5]],
        [[0.0, 0.0, 3.0, 1.0], [2.0, -2.0, 1.0, 0.0]],
    ],
    "float32",
)
TARGET_WORDS = np.array([[1, 3], [2, 0]], "int32")  # user 1 has one target word and one pad


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.mark.parametrize(
    "target_weights",
    [
        pytest.param(np.array([[0.5, 0.5], [1.0, 0.0]], "float32"), id="uniform"),
        # --weighted_target: counts (3, 1) -> log(1 + count) / sum = (2/3, 1/3).
        pytest.param(np.array([[np.log(4) / np.log(8), np.log(2) / np.log(8)], [1.0, 0.0]], "float32"), id="weighted"),
    ],
)
def test_loss_equals_hand_computed_cross_entropy(target_weights):
    log_probabilities = log_softmax(LOGITS.astype("float64"))
    expected_per_hop = np.zeros((2, 2))
    for user in range(2):
        for hop in range(2):
            for word, weight in zip(TARGET_WORDS[user], target_weights[user]):
                expected_per_hop[user, hop] -= weight * log_probabilities[user, hop, word]

    per_hop = per_hop_consistency_loss(LOGITS, TARGET_WORDS, target_weights).numpy()
    per_user = behavioural_consistency_loss(LOGITS, TARGET_WORDS, target_weights).numpy()

    np.testing.assert_allclose(per_hop, expected_per_hop, rtol=1e-6)
    np.testing.assert_allclose(per_user, expected_per_hop.mean(axis=1), rtol=1e-6)
    assert per_user.shape == (2,)


def test_uniform_and_weighted_targets_differ():
    uniform = behavioural_consistency_loss(LOGITS, TARGET_WORDS, np.array([[0.5, 0.5], [1.0, 0.0]], "float32"))
    weighted = behavioural_consistency_loss(LOGITS, TARGET_WORDS, np.array([[2 / 3, 1 / 3], [1.0, 0.0]], "float32"))

    assert not np.isclose(uniform.numpy()[0], weighted.numpy()[0])
    np.testing.assert_allclose(uniform.numpy()[1], weighted.numpy()[1])


def test_loss_matches_dense_categorical_cross_entropy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 3, VOCABULARY_SIZE)).astype("float32")
    # Distinct words per row, as the table builder writes them.
    target_words = np.stack([rng.choice(np.arange(2, VOCABULARY_SIZE), 4, replace=False) for _ in range(5)])
    target_words = target_words.astype("int32")
    target_weights = rng.random((5, 4)).astype("float32")
    target_weights /= target_weights.sum(axis=1, keepdims=True)
    dense = np.zeros((5, VOCABULARY_SIZE), "float32")
    np.put_along_axis(dense, target_words, target_weights, axis=1)

    per_hop = per_hop_consistency_loss(logits, target_words, target_weights).numpy()

    expected = keras.losses.categorical_crossentropy(np.repeat(dense[:, None], 3, axis=1), logits, from_logits=True)
    np.testing.assert_allclose(per_hop, keras.ops.convert_to_numpy(expected), rtol=1e-5)


def test_loss_is_float32_for_half_precision_logits():
    loss = behavioural_consistency_loss(
        LOGITS.astype("float16"), TARGET_WORDS, np.array([[0.5, 0.5], [1.0, 0.0]], "float16")
    )

    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert np.isfinite(loss.numpy()).all()


@pytest.mark.parametrize(
    "logits, target_words, target_weights, error, message",
    [
        pytest.param(
            LOGITS[:, 0], TARGET_WORDS, np.ones((2, 2), "float32"),
            ValueError, r"`logits` should have shape \[batch_size, num_hops, vocabulary_size\]", id="logits_2d",
        ),
        pytest.param(
            LOGITS, TARGET_WORDS, np.ones((2, 3), "float32"),
            ValueError, "`target_weights` should have the shape of `target_words`", id="weights_shape",
        ),
        pytest.param(
            LOGITS, np.ones((3, 2), "int32"), np.ones((3, 2), "float32"),
            ValueError, "the same batch size", id="batch_mismatch",
        ),
        pytest.param(
            LOGITS, TARGET_WORDS.astype("float32"), np.ones((2, 2), "float32"),
            TypeError, "`target_words` should hold integer ids", id="float_words",
        ),
    ],
)
def test_loss_rejects_bad_inputs(logits, target_words, target_weights, error, message):
    with pytest.raises(error, match=message):
        per_hop_consistency_loss(logits, target_words, target_weights)


# ---- fused training form ---------------------------------------------------------------------


def projected_case(width=7, vocabulary=13, batch_size=4, num_hops=3, max_targets=4):
    """Inputs of projected_consistency_loss with padding, a repeated word and a user without targets."""
    rng = np.random.default_rng(5)
    hidden = tf.constant(rng.normal(size=(batch_size, num_hops, width)) * 0.5, tf.float32)
    kernel = tf.Variable(rng.normal(size=(width, vocabulary)) * 0.5, dtype=tf.float32)
    bias = tf.Variable(rng.normal(size=(vocabulary,)), dtype=tf.float32)
    words = np.stack([rng.choice(np.arange(2, vocabulary), max_targets, replace=False) for _ in range(batch_size)])
    words = words.astype("int32")
    weights = rng.random((batch_size, max_targets)).astype("float32")
    words[1, 2:], weights[1, 2:] = 0, 0.0  # padded targets
    words[3, 1] = words[3, 0]  # a word listed twice
    weights /= weights.sum(axis=1, keepdims=True)
    weights[2] = 0.0  # no targets at all
    loss_weights = tf.constant(rng.random((batch_size, num_hops)), tf.float32)
    return hidden, kernel, bias, words, weights, loss_weights


def loss_and_gradients(loss_fn, hidden, kernel, bias):
    with tf.GradientTape() as tape:
        tape.watch(hidden)
        loss, per_hop = loss_fn()
    return loss, per_hop, tape.gradient(loss, [hidden, kernel, bias])


@pytest.mark.parametrize("width", [7, 300], ids=["one_row_block", "three_row_blocks"])
@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf_function"])
def test_projected_loss_equals_the_loss_of_the_logits_with_the_same_gradients(width, in_graph):
    hidden, kernel, bias, words, weights, loss_weights = projected_case(width=width)

    def reference():
        per_hop = per_hop_consistency_loss(tf.matmul(hidden, kernel) + bias, words, weights)
        return tf.reduce_sum(loss_weights * per_hop), per_hop

    def fused():
        return projected_consistency_loss(hidden, kernel, bias, words, weights, loss_weights)

    if in_graph:
        fused = tf.function(fused)
    expected_loss, expected_per_hop, expected_gradients = loss_and_gradients(reference, hidden, kernel, bias)
    loss, per_hop, gradients = loss_and_gradients(fused, hidden, kernel, bias)

    np.testing.assert_allclose(loss.numpy(), expected_loss.numpy(), rtol=1e-5)
    np.testing.assert_allclose(per_hop.numpy(), expected_per_hop.numpy(), rtol=1e-5, atol=1e-6)
    for gradient, expected in zip(gradients, expected_gradients):
        np.testing.assert_allclose(gradient.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)


def test_projected_loss_scales_its_gradient_by_the_upstream_one():
    hidden, kernel, bias, words, weights, loss_weights = projected_case()

    _, _, once = loss_and_gradients(
        lambda: projected_consistency_loss(hidden, kernel, bias, words, weights, loss_weights), hidden, kernel, bias
    )
    with tf.GradientTape() as tape:
        loss, per_hop = projected_consistency_loss(hidden, kernel, bias, words, weights, loss_weights)
        scaled = 3.0 * loss + tf.reduce_sum(per_hop)  # per_hop carries no gradient
    thrice = tape.gradient(scaled, [kernel, bias])

    np.testing.assert_allclose(thrice[0].numpy(), 3.0 * once[1].numpy(), rtol=1e-5)
    np.testing.assert_allclose(thrice[1].numpy(), 3.0 * once[2].numpy(), rtol=1e-5)


def test_projected_loss_in_bfloat16_is_close_to_float32():
    hidden, kernel, bias, words, weights, loss_weights = projected_case(width=64, vocabulary=50)

    exact = loss_and_gradients(
        lambda: projected_consistency_loss(hidden, kernel, bias, words, weights, loss_weights), hidden, kernel, bias
    )
    rounded = loss_and_gradients(
        lambda: projected_consistency_loss(hidden, kernel, bias, words, weights, loss_weights, "bfloat16"),
        hidden, kernel, bias,
    )

    assert rounded[0].dtype == tf.float32
    np.testing.assert_allclose(rounded[0].numpy(), exact[0].numpy(), rtol=1e-2)
    for gradient, expected in zip(rounded[2], exact[2]):
        scale = np.abs(expected.numpy()).max()
        np.testing.assert_allclose(gradient.numpy() / scale, expected.numpy() / scale, atol=2e-2)


def test_projected_loss_rejects_an_unknown_matmul_dtype():
    with pytest.raises(ValueError, match="`matmul_dtype` should be one of"):
        projected_consistency_loss(*projected_case(), matmul_dtype="float16")


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_decoder_consistency_loss_equals_the_loss_of_its_logits(policy):
    with global_policy(policy):
        decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=(8,), dropout_rate=0.5)
    vectors = user_vectors(batch_size=2, num_hops=2)
    loss_weights = np.full((2, 2), 0.25, "float32")
    weights = np.array([[0.5, 0.5], [1.0, 0.0]], "float32")

    loss, per_hop = decoder.consistency_loss(vectors, TARGET_WORDS, weights, loss_weights, training=False)
    expected_per_hop = per_hop_consistency_loss(decoder(vectors, training=False), TARGET_WORDS, weights)

    # bfloat16 matmuls on top of bfloat16 hidden layers under mixed_bfloat16.
    tolerance = 1e-5 if policy == "float32" else 2e-2
    np.testing.assert_allclose(per_hop.numpy(), expected_per_hop.numpy(), rtol=tolerance)
    np.testing.assert_allclose(loss.numpy(), np.sum(loss_weights * expected_per_hop.numpy()), rtol=tolerance)
