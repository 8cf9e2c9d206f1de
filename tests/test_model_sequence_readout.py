"""SequenceReadout: what each readout pools, that padding never reaches it, and that it serialises."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.layers.sequence_readout import READOUTS, SequenceReadout

# Two users, left-padded: the first has 3 real positions, the second 5.
ITEM_IDS = tf.constant([[0, 0, 5, 6, 2], [7, 8, 9, 10, 2]], dtype=tf.int32)


def _states(seed=0, dim=4):
    return tf.random.stateless_normal((2, 5, dim), seed=(seed, 1))


def _cls(hidden):
    return hidden[:, -1, :]


def test_mean_is_the_mean_over_the_real_positions():
    hidden = _states()
    users = SequenceReadout("mean")(hidden, ITEM_IDS, _cls(hidden)).numpy()
    np.testing.assert_allclose(users[0], hidden[0, 2:].numpy().mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(users[1], hidden[1].numpy().mean(axis=0), rtol=1e-6)


def test_cls_returns_the_family_reading_and_cls_mean_puts_both_side_by_side():
    hidden = _states()
    cls = _cls(hidden)
    np.testing.assert_array_equal(SequenceReadout("cls")(hidden, ITEM_IDS, cls).numpy(), cls.numpy())
    both = SequenceReadout("cls_mean")(hidden, ITEM_IDS, cls).numpy()
    mean = SequenceReadout("mean")(hidden, ITEM_IDS, cls).numpy()
    assert both.shape == (2, 8)
    np.testing.assert_allclose(both, np.concatenate([cls.numpy(), mean], axis=1), rtol=1e-6)


@pytest.mark.parametrize("readout", ["mean", "attention", "cls_mean"])
def test_states_at_padding_never_change_the_user_vector(readout):
    hidden = _states()
    layer = SequenceReadout(readout)
    before = layer(hidden, ITEM_IDS, _cls(hidden)).numpy()
    # Garbage at the first user's two padded positions only.
    noise = np.zeros((2, 5, 4), dtype=np.float32)
    noise[0, :2] = 1e3
    after = layer(hidden + noise, ITEM_IDS, _cls(hidden)).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_attention_is_a_convex_combination_that_learns_where_to_look():
    hidden = _states()
    layer = SequenceReadout("attention")
    users = layer(hidden, ITEM_IDS, _cls(hidden)).numpy()
    # A weighted mean of the real states: inside their per-dimension range.
    real = hidden[0, 2:].numpy()
    assert np.all(users[0] >= real.min(axis=0) - 1e-6) and np.all(users[0] <= real.max(axis=0) + 1e-6)
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(4, 4), (4,), (4, 1)]
    # Its weights train: gradient steps towards the second real state move the vector there.
    target = hidden[:, 3, :]
    optimizer = keras.optimizers.SGD(1.0)
    losses = []
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(hidden, ITEM_IDS, _cls(hidden)) - target))
        optimizer.apply(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("readout", READOUTS)
def test_every_readout_survives_a_keras_round_trip(readout, tmp_path):
    hidden_in = keras.Input((5, 4))
    ids_in = keras.Input((5,), dtype="int32")
    cls_in = keras.Input((4,))
    outputs = SequenceReadout(readout)(hidden_in, ids_in, cls_in)
    model = keras.Model([hidden_in, ids_in, cls_in], outputs)
    hidden = _states()
    expected = model([hidden, ITEM_IDS, _cls(hidden)]).numpy()
    path = str(tmp_path / "readout.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored([hidden, ITEM_IDS, _cls(hidden)]).numpy(), expected,
                               rtol=1e-6)
    assert SequenceReadout.from_config(model.layers[-1].get_config()).readout == readout


def test_an_unknown_readout_is_refused():
    with pytest.raises(ValueError, match="readout"):
        SequenceReadout("max")
