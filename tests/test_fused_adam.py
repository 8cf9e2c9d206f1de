"""FusedAdam: Keras Adam's maths and slots with TensorFlow's fused kernel."""

import keras
import numpy as np
import tensorflow as tf

from model.training.fused_adam import FusedAdam


def adam_steps(optimizer_class, gradients_per_step):
    variables = [keras.Variable(np.linspace(-1, 1, 21, dtype="float32").reshape(7, 3)), keras.Variable(np.ones(5, "float32"))]
    optimizer = optimizer_class(learning_rate=0.1)
    optimizer.build(variables)
    step = tf.function(lambda gradients: optimizer.apply(gradients, variables))
    for gradients in gradients_per_step:
        step(gradients)
    return [v.numpy() for v in variables] + [o.numpy() for o in optimizer.variables]


def test_fused_adam_follows_keras_adam():
    rng = np.random.default_rng(0)
    steps = [[tf.IndexedSlices(tf.constant(rng.normal(size=(2, 3)), tf.float32), tf.constant([1, 4]), tf.constant([7, 3])),
              tf.constant(rng.normal(size=5), tf.float32)] for _ in range(3)]

    fused, keras_adam = adam_steps(FusedAdam, steps), adam_steps(keras.optimizers.Adam, steps)

    assert len(fused) == len(keras_adam)  # same slots (and iterations): interchangeable checkpoints
    for ours, theirs in zip(fused, keras_adam):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_fused_adam_sums_repeated_rows_of_a_sparse_gradient():
    # What an all-reduce of IndexedSlices across replicas hands the optimizer.
    repeated = tf.IndexedSlices(tf.ones([2, 3]), tf.constant([1, 1]), tf.constant([7, 3]))
    summed = tf.convert_to_tensor(repeated)
    other = tf.zeros(5)

    np.testing.assert_allclose(
        adam_steps(FusedAdam, [[repeated, other]] * 2)[0], adam_steps(FusedAdam, [[summed, other]] * 2)[0], rtol=1e-6
    )


def test_fused_adam_serializes():
    optimizer = FusedAdam(learning_rate=0.01, beta_2=0.98)

    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))

    assert isinstance(restored, FusedAdam)
    assert restored.get_config() == optimizer.get_config()
