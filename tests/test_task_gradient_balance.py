"""model/supermoe/task_gradient_balance.py: equal-norm factors, summing gradients, shared weights."""

import numpy as np
import pytest
import tensorflow as tf

from model.supermoe.task_gradient_balance import (add_gradients, equal_norm_factors,
                                                  shared_positions)


def test_factors_give_every_task_the_mean_norm_times_its_weight():
    norms = [0.5, 2.0, 3.5]  # mean 2.0
    factors = equal_norm_factors(norms, [1.0, 1.0, 0.5]).numpy()

    np.testing.assert_allclose(factors * np.array(norms), [2.0, 2.0, 1.0], rtol=1e-6)


def test_a_task_without_gradient_gets_factor_zero_not_infinity():
    factors = equal_norm_factors([0.0, 4.0], [1.0, 1.0]).numpy()

    assert factors.tolist() == [0.0, 0.5]


def test_embedding_rows_from_two_losses_add_up_like_dense_gradients():
    first = tf.IndexedSlices(tf.constant([[1.0, 1.0], [2.0, 2.0]]), tf.constant([0, 3]),
                             tf.constant([4, 2]))
    second = tf.IndexedSlices(tf.constant([[5.0, 5.0]]), tf.constant([3]), tf.constant([4, 2]))

    total = add_gradients([first, None, second])

    assert isinstance(total, tf.IndexedSlices)
    np.testing.assert_allclose(tf.convert_to_tensor(total).numpy(),
                               [[1, 1], [0, 0], [0, 0], [7, 7]])
    assert add_gradients([None, None]) is None
    mixed = add_gradients([first, tf.ones([4, 2])])
    np.testing.assert_allclose(mixed.numpy(), [[2, 2], [1, 1], [1, 1], [3, 3]])


def test_shared_weights_are_those_more_than_one_task_reaches():
    grad = tf.constant(1.0)
    per_task = [[grad, grad, None], [grad, None, grad], [grad, None, None]]

    assert shared_positions(per_task) == [0]


@pytest.mark.parametrize("weights", [[1.0, 1.0], [1.0, 0.25]])
def test_a_balanced_step_gives_each_task_its_share_of_the_shared_update(weights):
    # Two losses on one shared weight, gradients 10x apart: the balanced sum weighs them equally.
    shared = tf.Variable([1.0, -2.0])
    with tf.GradientTape(persistent=True) as tape:
        losses = [10.0 * tf.reduce_sum(shared), 0.5 * tf.reduce_sum(shared ** 2)]
    grads = [tape.gradient(loss, shared) for loss in losses]
    norms = [tf.norm(grad) for grad in grads]
    factors = equal_norm_factors(norms, weights)
    scaled_norms = [float(tf.norm(factor * grad)) for factor, grad in zip(factors, grads)]

    assert scaled_norms[1] / scaled_norms[0] == pytest.approx(weights[1] / weights[0], rel=1e-5)
