"""PeterRec's inputs and objective: left padding, CLS tokens, next-item and masked-item targets, loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contracts import schema
from model.nextitnet import ItemSoftmax
from model.nextitnet import append_cls
from model.nextitnet import item_prediction_loss
from model.nextitnet import left_pad
from model.nextitnet import mask_items
from model.nextitnet import next_item_targets

CLS = schema.ITEM_CLS_ID
MASK = schema.ITEM_MASK_ID


def ragged(rows):
    return tf.ragged.constant(rows, dtype=tf.int64, ragged_rank=1)


def test_special_ids_are_the_documented_ones():
    assert (schema.ITEM_PAD_ID, schema.ITEM_MASK_ID, schema.ITEM_CLS_ID, schema.FIRST_ITEM_ID) == (0, 1, 2, 3)


# --- left_pad / append_cls --------------------------------------------------------------------

def test_left_pad_puts_the_newest_item_last():
    padded = left_pad(ragged([[5, 6, 7], [8], []]))

    assert padded.dtype == tf.int32
    np.testing.assert_array_equal(padded.numpy(), [[5, 6, 7], [0, 0, 8], [0, 0, 0]])


def test_left_pad_of_empty_users_has_no_columns():
    assert tuple(left_pad(ragged([[], []])).shape) == (2, 0)


def test_left_pad_rejects_a_dense_tensor():
    with pytest.raises(TypeError, match="`items` should be a tf.RaggedTensor"):
        left_pad(tf.constant([[1, 2]]))


def test_left_pad_runs_in_a_graph():
    padded = tf.function(left_pad)(ragged([[4], [5, 6]]))

    np.testing.assert_array_equal(padded.numpy(), [[0, 4], [5, 6]])


def test_append_cls_causal_ends_with_cls():
    inputs = append_cls(ragged([[5, 6, 7], [8], []]), causal=True)

    np.testing.assert_array_equal(inputs.numpy(), [[5, 6, 7, CLS], [0, 0, 8, CLS], [0, 0, 0, CLS]])


def test_append_cls_non_causal_wraps_the_items():
    inputs = append_cls(ragged([[5, 6, 7], [8]]), causal=False)

    np.testing.assert_array_equal(inputs.numpy(), [[CLS, 5, 6, 7, CLS], [0, 0, CLS, 8, CLS]])


# --- next_item_targets ------------------------------------------------------------------------

def test_next_item_targets_shift_by_one_and_skip_padding():
    padded = tf.constant([[5, 6, 7], [0, 0, 8], [0, 4, 9]])

    inputs, targets, weights = next_item_targets(padded)

    np.testing.assert_array_equal(inputs.numpy(), [[5, 6], [0, 0], [0, 4]])
    np.testing.assert_array_equal(targets.numpy(), [[6, 7], [0, 8], [4, 9]])
    np.testing.assert_array_equal(weights.numpy(), [[1, 1], [0, 0], [0, 1]])
    assert weights.dtype == tf.float32


# --- mask_items -------------------------------------------------------------------------------

NUM_ITEM_IDS = 100_000


def many_users(num_users=400, max_length=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_length + 1, size=num_users)
    lengths[:5] = 1  # users with a single item still get one masked position
    rows = [rng.integers(3, NUM_ITEM_IDS, size=n).tolist() for n in lengths]
    return left_pad(ragged(rows))


def test_mask_items_chooses_the_fraction_of_real_positions():
    padded = many_users()
    masked, targets, weights = (t.numpy() for t in mask_items(padded, 0.3, [7, 11], NUM_ITEM_IDS))
    padded = padded.numpy()
    real = padded != 0
    chosen = weights == 1.0

    assert not np.any(chosen & ~real)
    assert np.all(chosen.sum(1) >= 1)
    assert abs(chosen.sum() / real.sum() - 0.3) < 0.02
    np.testing.assert_array_equal(targets[chosen], padded[chosen])
    np.testing.assert_array_equal(targets[~chosen], 0)
    np.testing.assert_array_equal(masked[~chosen], padded[~chosen])


def test_mask_items_splits_80_10_10():
    padded = many_users()
    masked, targets, weights = (t.numpy() for t in mask_items(padded, 0.3, [1, 2], NUM_ITEM_IDS))
    chosen = weights == 1.0
    replaced, original = masked[chosen], targets[chosen]

    as_mask = np.mean(replaced == MASK)
    unchanged = np.mean(replaced == original)
    random_item = np.mean((replaced != MASK) & (replaced != original))

    assert abs(as_mask - 0.8) < 0.03
    assert abs(unchanged - 0.1) < 0.02
    assert abs(random_item - 0.1) < 0.02
    assert np.all(replaced[replaced != MASK] >= schema.FIRST_ITEM_ID)
    assert np.all(replaced < NUM_ITEM_IDS)


def test_mask_items_is_fixed_by_its_seed():
    padded = many_users(num_users=20)

    first = [t.numpy() for t in mask_items(padded, 0.3, [3, 4], NUM_ITEM_IDS)]
    again = [t.numpy() for t in mask_items(padded, 0.3, [3, 4], NUM_ITEM_IDS)]
    other = [t.numpy() for t in mask_items(padded, 0.3, [3, 5], NUM_ITEM_IDS)]

    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])


def test_mask_items_takes_a_tensor_seed_in_a_graph():
    padded = many_users(num_users=4)
    seed = tf.constant([9, 1], tf.int64)

    graph = tf.function(lambda p, s: mask_items(p, 0.5, s, NUM_ITEM_IDS))(padded, seed)
    eager = mask_items(padded, 0.5, seed, NUM_ITEM_IDS)

    for a, b in zip(graph, eager):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_mask_items_rejects_a_fraction_above_one():
    with pytest.raises(ValueError, match="`fraction` should be in"):
        mask_items(tf.constant([[3, 4]]), 1.5, [0, 0], NUM_ITEM_IDS)


# --- item_prediction_loss ---------------------------------------------------------------------

def toy_loss_inputs(num_positions=12, dim=8, num_item_ids=50):
    rng = np.random.default_rng(0)
    softmax = ItemSoftmax(num_item_ids)
    softmax.build((None, dim))
    softmax.kernel.assign(rng.normal(size=(num_item_ids, dim)).astype("float32"))
    softmax.bias.assign(rng.normal(size=(num_item_ids,)).astype("float32"))
    hidden = tf.constant(rng.normal(size=(num_positions, dim)).astype("float32"))
    targets = tf.constant(rng.integers(3, num_item_ids, size=num_positions).astype("int32"))
    weights = tf.constant((np.arange(num_positions) % 4 != 0).astype("float32"))
    return hidden, targets, weights, softmax


def test_full_softmax_loss_is_sparse_cross_entropy_times_weight():
    hidden, targets, weights, softmax = toy_loss_inputs()

    losses = item_prediction_loss(hidden, targets, weights, softmax)

    expected = keras.losses.sparse_categorical_crossentropy(
        targets, softmax(hidden), from_logits=True).numpy() * weights.numpy()
    np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_sampled_softmax_loss_is_finite_and_trains_the_softmax():
    hidden, targets, weights, softmax = toy_loss_inputs()
    tf.random.set_seed(0)

    with tf.GradientTape() as tape:
        sampled = item_prediction_loss(hidden, targets, weights, softmax, num_sampled=10)
        total = tf.reduce_sum(sampled)
    gradients = tape.gradient(total, [softmax.kernel, softmax.bias])

    assert tuple(sampled.shape) == (12,)
    assert np.all(np.isfinite(sampled.numpy()))
    np.testing.assert_array_equal(sampled.numpy()[weights.numpy() == 0], 0.0)
    assert all(g is not None and np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in gradients)


def test_evaluation_always_uses_the_full_softmax():
    hidden, targets, weights, softmax = toy_loss_inputs()

    evaluated = item_prediction_loss(hidden, targets, weights, softmax, num_sampled=10, training=False)
    full = item_prediction_loss(hidden, targets, weights, softmax)

    np.testing.assert_array_equal(evaluated.numpy(), full.numpy())


def test_loss_rejects_more_samples_than_items():
    hidden, targets, weights, softmax = toy_loss_inputs()
    with pytest.raises(ValueError, match="`num_sampled` should be below the 50 item ids"):
        item_prediction_loss(hidden, targets, weights, softmax, num_sampled=50)
