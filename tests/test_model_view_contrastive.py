"""The two-view contrastive objective (``--contrastive_weight``): views and loss.

Its training through main/train.py is in test_model_history_target.py (every term at once).
"""

import numpy as np
import pytest
import tensorflow as tf

from model.sumn.view_contrastive_loss import disjoint_views, view_contrastive_loss


def random_history(seed, users=6):
    rng = np.random.default_rng(seed)
    return tf.ragged.constant(
        [[list(rng.integers(2, 50, size=rng.integers(1, 4))) for _ in range(rng.integers(0, 7))]
         for _ in range(users)], dtype=tf.int32, ragged_rank=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_views_split_each_users_behaviours_between_them_in_order(seed):
    history = random_history(seed)
    first, second = disjoint_views(history, seed=seed)

    for user, behaviours in enumerate(history.to_list()):
        a, b = first[user].to_list(), second[user].to_list()
        assert sorted(map(tuple, a + b)) == sorted(map(tuple, behaviours))
        # Each view keeps the history's order.
        positions = {tuple(behaviour): index for index, behaviour in enumerate(behaviours)}
        for view in (a, b):
            assert [positions[tuple(behaviour)] for behaviour in view] == sorted(
                positions[tuple(behaviour)] for behaviour in view)


def test_views_are_random_halves():
    history = tf.ragged.constant([[[index + 2]] for index in range(2000)], ragged_rank=2)
    history = tf.RaggedTensor.from_row_lengths(history.values, [2000])  # one user, 2,000 behaviours
    first, _ = disjoint_views(history, seed=5)
    assert 900 < int(first.row_lengths(axis=1)[0]) < 1100


def numpy_info_nce(first, second, temperature):
    first = first / np.linalg.norm(first, axis=1, keepdims=True)
    second = second / np.linalg.norm(second, axis=1, keepdims=True)
    logits = first @ second.T / temperature

    def cross_entropy(rows):
        return np.log(np.exp(rows).sum(axis=1)) - np.diag(rows)

    return 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))


def test_loss_is_the_symmetric_info_nce_of_cosine_similarities():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    losses = view_contrastive_loss(first.astype("float32"), second.astype("float32"),
                                   np.ones(5, bool), temperature=0.5)
    np.testing.assert_allclose(losses.numpy(), numpy_info_nce(first, second, 0.5), rtol=1e-5)


def test_users_without_a_pair_add_nothing_and_are_nobodys_negative():
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    valid = np.array([True, True, False, True, False])
    losses = view_contrastive_loss(first.astype("float32"), second.astype("float32"), valid, 0.2)

    assert losses.numpy()[~valid].tolist() == [0.0, 0.0]
    expected = numpy_info_nce(first[valid], second[valid], 0.2)
    np.testing.assert_allclose(losses.numpy()[valid], expected, rtol=1e-5)


def test_matching_views_cost_less_than_mismatched_ones():
    vectors = np.eye(4, dtype="float32")
    matched = view_contrastive_loss(vectors, vectors, np.ones(4, bool), 0.1)
    shuffled = view_contrastive_loss(vectors, vectors[[1, 2, 3, 0]], np.ones(4, bool), 0.1)
    assert float(tf.reduce_sum(matched)) < 1e-3 < float(tf.reduce_sum(shuffled))


def test_rejects_a_non_positive_temperature():
    with pytest.raises(ValueError, match="`temperature` should be positive"):
        view_contrastive_loss(np.ones((2, 3), "float32"), np.ones((2, 3), "float32"),
                              np.ones(2, bool), 0.0)
