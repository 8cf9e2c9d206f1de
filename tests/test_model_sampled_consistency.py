"""SUMN's sampled-softmax consistency loss (``--num_sampled``): the formula, its masks, its use."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.sumn.consistency_decoder import BehaviouralConsistencyDecoder
from model.sumn.consistency_loss import projected_consistency_loss
from model.sumn.sampled_consistency_loss import sampled_consistency_loss

WIDTH = 8
VOCABULARY_SIZE = 300
# Three users: two with targets (one padded), one without any.
TARGET_WORDS = np.array([[5, 6, 7, 0], [8, 9, 10, 11], [0, 0, 0, 0]], "int32")
TARGET_WEIGHTS = np.array([[0.5, 0.25, 0.25, 0.0], [0.25] * 4, [0.0] * 4], "float32")


def case(num_hops=2, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(3, num_hops, WIDTH)).astype("float32")
    kernel = rng.normal(size=(WIDTH, VOCABULARY_SIZE)).astype("float32")
    bias = rng.normal(size=VOCABULARY_SIZE).astype("float32")
    loss_weights = np.full((3, num_hops), 1.0 / (3 * num_hops), "float32")
    return hidden, kernel, bias, loss_weights


def sampled_loss(hidden, kernel, bias, loss_weights, num_sampled, words=TARGET_WORDS,
                 weights=TARGET_WEIGHTS, draw_seed=7):
    tf.random.set_seed(draw_seed)
    return sampled_consistency_loss(hidden, kernel, bias, words, weights, loss_weights,
                                    num_sampled, seed=3)


def test_loss_is_the_corrected_softmax_over_targets_and_samples_without_accidental_hits():
    hidden, kernel, bias, loss_weights = case()
    loss, per_hop = sampled_loss(hidden, kernel, bias, loss_weights, num_sampled=40)

    # The same draw again (same global and op seed), then the loss by hand in numpy.
    tf.random.set_seed(7)
    sampled, target_expected, sampled_expected = tf.random.log_uniform_candidate_sampler(
        true_classes=tf.reshape(tf.cast(TARGET_WORDS, tf.int64), [-1, 1]), num_true=1,
        num_sampled=40, unique=True, range_max=VOCABULARY_SIZE, seed=3)
    sampled, sampled_expected = sampled.numpy(), sampled_expected.numpy()
    target_expected = target_expected.numpy().reshape(TARGET_WORDS.shape)
    expected = np.zeros((3, 2))
    for user in range(3):
        present = TARGET_WEIGHTS[user] > 0
        words = TARGET_WORDS[user][present]
        negatives = ~np.isin(sampled, words)
        for hop in range(2):
            logits = hidden[user, hop] @ kernel + bias
            target_z = logits[words] - np.log(target_expected[user][present])
            sampled_z = logits[sampled[negatives]] - np.log(sampled_expected[negatives])
            candidates = np.concatenate([target_z, sampled_z])
            log_normaliser = np.log(np.sum(np.exp(candidates - candidates.max()))) + candidates.max()
            q = TARGET_WEIGHTS[user][present]
            expected[user, hop] = q.sum() * log_normaliser - np.sum(q * target_z)

    np.testing.assert_allclose(per_hop.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss.numpy(), np.sum(loss_weights * expected), rtol=1e-5)


def test_a_target_drawn_as_a_negative_is_not_counted_twice():
    # Users whose targets are the most frequent words: the log-uniform sampler draws them.
    words = np.array([[0, 1, 2, 3]], "int32")  # ids 0.. are the likeliest draws
    weights = np.full((1, 4), 0.25, "float32")
    hidden, kernel, bias, _ = case(num_hops=1)
    loss_weights = np.ones((1, 1), "float32")
    _, with_hits = sampled_loss(hidden[:1], kernel, bias, loss_weights, 100, words, weights)

    # Done by hand without removing the hits, the loss would be larger.
    tf.random.set_seed(7)
    sampled, target_expected, sampled_expected = tf.random.log_uniform_candidate_sampler(
        true_classes=tf.reshape(tf.cast(words, tf.int64), [-1, 1]), num_true=1,
        num_sampled=100, unique=True, range_max=VOCABULARY_SIZE, seed=3)
    assert np.isin(words[0], sampled.numpy()).all()  # every target was also drawn
    logits = hidden[0, 0] @ kernel + bias
    target_z = logits[words[0]] - np.log(target_expected.numpy()[:, 0])
    sampled_z = logits[sampled.numpy()] - np.log(sampled_expected.numpy())
    counted_twice = (np.log(np.exp(np.concatenate([target_z, sampled_z])).sum())
                     - np.sum(weights[0] * target_z))
    assert with_hits.numpy()[0, 0] < counted_twice - 1e-3


def test_padding_and_users_without_targets_change_nothing():
    hidden, kernel, bias, loss_weights = case()
    _, per_hop = sampled_loss(hidden, kernel, bias, loss_weights, 40)
    wider_words = np.pad(TARGET_WORDS, ((0, 0), (0, 3)))
    wider_weights = np.pad(TARGET_WEIGHTS, ((0, 0), (0, 3)))
    _, padded = sampled_loss(hidden, kernel, bias, loss_weights, 40, wider_words, wider_weights)

    np.testing.assert_allclose(padded.numpy(), per_hop.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(per_hop.numpy()[2], 0.0)
    hidden = tf.constant(hidden)
    with tf.GradientTape() as tape:
        tape.watch(hidden)
        loss, _ = sampled_loss(hidden, kernel, bias, loss_weights, 40)
    np.testing.assert_array_equal(tape.gradient(loss, hidden).numpy()[2], 0.0)


def test_many_samples_estimate_the_exact_loss():
    hidden, kernel, bias, loss_weights = case()
    exact, _ = projected_consistency_loss(hidden, kernel, bias, TARGET_WORDS, TARGET_WEIGHTS,
                                          loss_weights)
    few, _ = sampled_loss(hidden, kernel, bias, loss_weights, 10)
    most, _ = sampled_loss(hidden, kernel, bias, loss_weights, VOCABULARY_SIZE - 1)

    assert abs(float(most) - float(exact)) < 0.02 * float(exact)
    assert abs(float(most) - float(exact)) < abs(float(few) - float(exact))


def test_descending_the_sampled_loss_descends_the_exact_one():
    keras.utils.set_random_seed(0)
    hidden, kernel, bias, loss_weights = case()
    kernel, bias = tf.Variable(kernel), tf.Variable(bias)
    optimizer = keras.optimizers.SGD(learning_rate=1.0)

    def exact():
        return float(projected_consistency_loss(hidden, kernel, bias, TARGET_WORDS, TARGET_WEIGHTS,
                                                loss_weights)[0])

    before = exact()
    for step in range(30):
        with tf.GradientTape() as tape:
            loss, _ = sampled_loss(hidden, kernel, bias, loss_weights, 20, draw_seed=step)
        optimizer.apply_gradients(zip(tape.gradient(loss, [kernel, bias]), [kernel, bias]))
    assert exact() < 0.8 * before


@pytest.mark.parametrize("num_sampled", [0, VOCABULARY_SIZE])
def test_rejects_a_sample_outside_the_vocabulary(num_sampled):
    hidden, kernel, bias, loss_weights = case()
    with pytest.raises(ValueError, match=r"`num_sampled` should be in \[1, 300\)"):
        sampled_consistency_loss(hidden, kernel, bias, TARGET_WORDS, TARGET_WEIGHTS, loss_weights,
                                 num_sampled)


def test_decoder_reads_its_vocabulary_layer_at_the_sampled_words_only_when_asked():
    decoder = BehaviouralConsistencyDecoder(VOCABULARY_SIZE, mlp_layers=(8,), dropout_rate=0.0)
    vectors, _, _, loss_weights = case()
    exact, _ = decoder.consistency_loss(vectors, TARGET_WORDS, TARGET_WEIGHTS, loss_weights)
    tf.random.set_seed(7)
    sampled, _ = decoder.consistency_loss(vectors, TARGET_WORDS, TARGET_WEIGHTS, loss_weights,
                                          num_sampled=20)

    hidden = decoder.hidden_layers[0](vectors)
    projection = decoder.output_projection
    expected_exact, _ = projected_consistency_loss(hidden, projection.kernel, projection.bias,
                                                   TARGET_WORDS, TARGET_WEIGHTS, loss_weights)
    tf.random.set_seed(7)
    expected_sampled, _ = sampled_consistency_loss(hidden, projection.kernel, projection.bias,
                                                   TARGET_WORDS, TARGET_WEIGHTS, loss_weights, 20)
    np.testing.assert_allclose(float(exact), float(expected_exact), rtol=1e-5)
    np.testing.assert_allclose(float(sampled), float(expected_sampled), rtol=1e-5)
    assert abs(float(sampled) - float(exact)) > 1e-3
