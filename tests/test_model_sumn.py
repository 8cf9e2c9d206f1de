"""SumnModel end to end: shapes, padding invariance, empty users, gradients, saving, mixed precision."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from model.sumn import SumnModel
from model.sumn import behavioural_consistency_loss
from model.sumn import history_to_model_inputs
from model.sumn import sumn_model as sumn
from model.sumn.consistency_loss import per_hop_consistency_loss
from model.sumn.pooling import POOLING_STRATEGIES
from util.errors import UserInputError
from keras_helpers import global_policy

VOCABULARY_SIZE = 40
SMALL = {"word_emb_dim": 8, "model_dim": 6, "num_hops": 3, "mlp_layers": (10,), "dropout_rate": 0.1}
STRATEGIES = sorted(POOLING_STRATEGIES)
EXPECTED_HOPS = {"max": 1, "mean": 1, "mhop": 3, "gruhop": 3}

USERS = [
    [[5, 6, 7], [8], [9, 10]],
    [[11, 12]],
    [[13], [14, 15, 16, 17]],
]
LONG_USER = [[20 + (i % 15)] for i in range(9)]


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def inputs_for(users):
    return history_to_model_inputs(tf.ragged.constant(users, dtype=tf.int32, ragged_rank=2, inner_shape=()))


def targets_for(batch_size):
    words = np.tile(np.array([[5, 8, 0]], "int32"), (batch_size, 1))
    weights = np.tile(np.array([[0.5, 0.5, 0.0]], "float32"), (batch_size, 1))
    return words, weights


def small_model(pooling="mhop", **overrides):
    return SumnModel(VOCABULARY_SIZE, pooling=pooling, **{**SMALL, **overrides})


@pytest.mark.parametrize("pooling", STRATEGIES)
def test_outputs_have_one_vector_and_one_logit_row_per_hop(pooling):
    model = small_model(pooling)
    inputs = inputs_for(USERS)

    outputs = model(inputs, training=True)

    hops = EXPECTED_HOPS[pooling]
    assert tuple(outputs["user_vectors"].shape) == (3, hops, SMALL["model_dim"])
    assert tuple(outputs["logits"].shape) == (3, hops, VOCABULARY_SIZE)
    assert model.num_hops == hops
    np.testing.assert_array_equal(model.encode(inputs).numpy(), model(inputs)["user_vectors"].numpy())


@pytest.mark.parametrize("pooling", STRATEGIES)
def test_user_vectors_do_not_depend_on_the_rest_of_the_batch(pooling):
    model = small_model(pooling)

    alone = model.encode(inputs_for(USERS)).numpy()
    # A longer user widens everyone's behaviour grid with padded slots.
    padded = model.encode(inputs_for(USERS + [LONG_USER])).numpy()

    np.testing.assert_allclose(padded[: len(USERS)], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", STRATEGIES)
def test_absent_behaviours_do_not_change_user_vectors(pooling):
    model = small_model(pooling)
    with_gaps = [[[5, 6, 7], [], [8], [0, 0], [9, 10]], [[11, 12], []], [[13], [14, 15, 16, 17]]]

    np.testing.assert_allclose(
        model.encode(inputs_for(with_gaps)).numpy(), model.encode(inputs_for(USERS)).numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("pooling", STRATEGIES)
def test_user_with_empty_history_gives_finite_vectors_and_loss(pooling):
    model = small_model(pooling)
    users = [USERS[0], [], [[]]]
    words, weights = targets_for(3)

    outputs = model(inputs_for(users), training=True)
    loss = behavioural_consistency_loss(outputs["logits"], words, weights)

    assert np.isfinite(outputs["user_vectors"].numpy()).all()
    assert np.isfinite(loss.numpy()).all()
    all_empty = model.encode(inputs_for([[], []])).numpy()
    assert np.isfinite(all_empty).all()


def test_every_trainable_weight_of_the_mhop_model_gets_a_gradient():
    model = small_model("mhop")
    inputs = inputs_for(USERS)
    words, weights = targets_for(3)

    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        loss = tf.reduce_sum(behavioural_consistency_loss(outputs["logits"], words, weights)) / 3
    gradients = tape.gradient(loss, model.trainable_variables)

    # Embedding, behaviour Dense (2), keys, values, three LayerNorms (6), s0, decoder (4).
    assert len(model.trainable_variables) == 16
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert np.abs(tf.convert_to_tensor(gradient).numpy()).sum() > 0, variable.path


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("pooling", STRATEGIES)
def test_mixed_precision_forward_gives_finite_float32_outputs(pooling, policy):
    with global_policy(policy):
        model = small_model(pooling)
        outputs = model(inputs_for(USERS + [[], LONG_USER]), training=True)

    for name in ("logits", "user_vectors"):
        assert keras.backend.standardize_dtype(outputs[name].dtype) == "float32", name
        assert np.isfinite(outputs[name].numpy()).all(), name
    assert model.pooling.compute_dtype == policy.split("_")[1]


def test_runs_in_a_tf_function_with_unknown_shapes():
    model = small_model("gruhop")
    spec = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)

    @tf.function(input_signature=[spec])
    def encode(history):
        return model.encode(history_to_model_inputs(history))

    eager = model.encode(inputs_for(USERS)).numpy()
    np.testing.assert_allclose(encode(tf.ragged.constant(USERS, ragged_rank=2)).numpy(), eager, rtol=1e-6)


def test_encoder_and_decoder_weights_are_separable():
    model = small_model("mhop")
    model(inputs_for(USERS))

    encoder_paths = {v.path for layer in model.encoder_layers.values() for v in layer.weights}
    decoder_paths = {v.path for v in model.decoder.weights}

    assert set(model.encoder_layers) == {"behaviour_encoder", "pooling"}
    assert encoder_paths.isdisjoint(decoder_paths)
    assert encoder_paths | decoder_paths == {v.path for v in model.weights}


def test_encoder_only_checkpoint_restores_user_vectors(tmp_path):
    trained = small_model("mhop")
    inputs = inputs_for(USERS)
    expected = trained.encode(inputs).numpy()
    path = tf.train.Checkpoint(**trained.encoder_layers).write(str(tmp_path / "encoder"))

    fresh = small_model("mhop", mlp_layers=(7,))
    fresh.build()
    tf.train.Checkpoint(**fresh.encoder_layers).read(path).assert_consumed()

    np.testing.assert_array_equal(fresh.encode(inputs).numpy(), expected)


def test_unknown_pooling_is_a_user_error_naming_the_flag():
    with pytest.raises(UserInputError, match="--pooling"):
        small_model("attention")


def test_inputs_must_come_from_history_to_model_inputs():
    model = small_model()

    with pytest.raises(ValueError, match=r"history_to_model_inputs.*Received: \['word_ids'\]"):
        model({"word_ids": np.array([5], "int32")})


def test_get_config_round_trip():
    model = small_model("gruhop")

    restored = SumnModel.from_config(model.get_config())
    deserialized = keras.layers.deserialize(keras.layers.serialize(model))

    assert restored.get_config() == model.get_config()
    assert isinstance(deserialized, SumnModel)
    assert deserialized.get_config() == model.get_config()


@pytest.mark.parametrize("pooling", STRATEGIES)
def test_save_and_load_give_identical_outputs(pooling, tmp_path):
    model = small_model(pooling)
    inputs = inputs_for(USERS)
    before = model(inputs)

    path = str(tmp_path / f"sumn_{pooling}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    after = restored(inputs)

    assert isinstance(restored, SumnModel)
    for name in ("user_vectors", "logits"):
        np.testing.assert_array_equal(after[name].numpy(), before[name].numpy())


def test_encode_before_call_still_saves(tmp_path):
    model = small_model("max")
    inputs = inputs_for(USERS)
    before = model.encode(inputs).numpy()

    path = str(tmp_path / "encoded_only.keras")
    model.save(path)

    np.testing.assert_array_equal(keras.saving.load_model(path).encode(inputs).numpy(), before)


# ---- training path ---------------------------------------------------------------------------


def reference_loss_and_gradients(model, inputs, words, weights, loss_weights):
    with tf.GradientTape() as tape:
        per_hop = per_hop_consistency_loss(model(inputs, training=True)["logits"], words, weights)
        loss = tf.reduce_sum(loss_weights * per_hop)
    return loss, per_hop, tape.gradient(loss, model.trainable_variables)


def training_loss_and_gradients(model, inputs, words, weights, loss_weights):
    with tf.GradientTape() as tape:
        loss, per_hop = model.consistency_loss(inputs, words, weights, loss_weights, training=True)
    return loss, per_hop, tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("chunk_rows", [4096, 3, 1], ids=["one_chunk", "chunks_of_users", "one_user_per_chunk"])
@pytest.mark.parametrize("pooling", STRATEGIES)
def test_training_path_has_the_loss_and_gradients_of_the_logits(pooling, chunk_rows, monkeypatch):
    monkeypatch.setattr(sumn, "RECOMPUTE_CHUNK_ROWS", chunk_rows)
    model = small_model(pooling, dropout_rate=0.0)
    users = USERS + [[], LONG_USER]
    inputs = inputs_for(users)
    words, weights = targets_for(len(users))
    loss_weights = np.full((len(users), model.num_hops), 1.0 / (len(users) * model.num_hops), "float32")
    model(inputs)

    expected = reference_loss_and_gradients(model, inputs, words, weights, loss_weights)
    for run in (training_loss_and_gradients, tf.function(training_loss_and_gradients)):
        loss, per_hop, gradients = run(model, inputs, words, weights, loss_weights)

        np.testing.assert_allclose(loss.numpy(), expected[0].numpy(), rtol=1e-5)
        np.testing.assert_allclose(per_hop.numpy(), expected[1].numpy(), rtol=1e-5)
        for variable, gradient, reference in zip(model.trainable_variables, gradients, expected[2]):
            assert isinstance(gradient, tf.IndexedSlices) == ("embedding" in variable.path), variable.path
            np.testing.assert_allclose(
                tf.convert_to_tensor(gradient).numpy(), tf.convert_to_tensor(reference).numpy(),
                rtol=1e-4, atol=1e-6, err_msg=variable.path,
            )


@pytest.mark.parametrize("pooling", STRATEGIES)
def test_training_user_vectors_are_the_encoded_ones(pooling, monkeypatch):
    monkeypatch.setattr(sumn, "RECOMPUTE_CHUNK_ROWS", 2)
    model = small_model(pooling)
    inputs = inputs_for(USERS + [[], LONG_USER])

    np.testing.assert_allclose(
        model.training_user_vectors(inputs).numpy(), model.encode(inputs).numpy(), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_training_path_under_mixed_precision_gives_a_finite_float32_loss_and_gradients(policy, monkeypatch):
    monkeypatch.setattr(sumn, "RECOMPUTE_CHUNK_ROWS", 3)
    users = USERS + [[], LONG_USER]
    words, weights = targets_for(len(users))
    with global_policy(policy):
        model = small_model("mhop")
        loss, per_hop, gradients = training_loss_and_gradients(
            model, inputs_for(users), words, weights, np.full((len(users), 3), 0.1, "float32"))

    assert loss.dtype == tf.float32 and per_hop.dtype == tf.float32
    assert np.isfinite(per_hop.numpy()).all()
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient.dtype == tf.float32, variable.path
        assert np.isfinite(tf.convert_to_tensor(gradient).numpy()).all(), variable.path
