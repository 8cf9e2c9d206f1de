"""Pooling strategies: shapes, mask invariance, empty users, registry, serialization."""


import keras
import numpy as np
import pytest

from model.sumn.pooling import POOLING_STRATEGIES
from model.sumn.pooling import GruHopPooling
from model.sumn.pooling import MaxPooling
from model.sumn.pooling import MeanPooling
from model.sumn.pooling import MultiHopPooling
from model.sumn.pooling import make_pooling
from util.errors import UserInputError
from keras_helpers import global_policy

MODEL_DIM = 6
NUM_HOPS = 3
STRATEGIES = sorted(POOLING_STRATEGIES)
EXPECTED_HOPS = {"max": 1, "mean": 1, "mhop": NUM_HOPS, "gruhop": NUM_HOPS}


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def behaviours_and_mask(batch_size=4, max_len=5, seed=0):
    """Random behaviours; user 0 has every behaviour, user 1 none, the others some."""
    rng = np.random.default_rng(seed)
    behaviours = rng.normal(size=(batch_size, max_len, MODEL_DIM)).astype("float32")
    mask = rng.random((batch_size, max_len)) < 0.6
    mask[:, 0] = True
    mask[0] = True
    mask[1] = False
    return behaviours, mask


def with_masked_junk(behaviours, mask, extra, seed=1, scale=100.0):
    """Interleave ``extra`` masked columns of large random junk, and fill masked slots with junk."""
    rng = np.random.default_rng(seed)
    behaviours = np.where(mask[..., None], behaviours, scale * rng.normal(size=behaviours.shape)).astype("float32")
    batch_size, max_len, _ = behaviours.shape
    junk = (scale * rng.normal(size=(batch_size, extra, MODEL_DIM))).astype("float32")
    positions = np.linspace(0, max_len, extra).astype(int)
    padded = np.insert(behaviours, positions, junk, axis=1)
    padded_mask = np.insert(mask, positions, np.zeros((batch_size, extra), bool), axis=1)
    return padded, padded_mask


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_returns_batch_hops_model_dim(name):
    pooling = make_pooling(name, MODEL_DIM, NUM_HOPS)
    behaviours, mask = behaviours_and_mask()

    user_vectors = pooling(behaviours, mask)

    assert tuple(user_vectors.shape) == (4, EXPECTED_HOPS[name], MODEL_DIM)
    assert pooling.num_hops == EXPECTED_HOPS[name]


@pytest.mark.parametrize("name", STRATEGIES)
def test_masked_behaviours_do_not_change_user_vectors(name):
    pooling = make_pooling(name, MODEL_DIM, NUM_HOPS)
    behaviours, mask = behaviours_and_mask()
    reference = pooling(behaviours, mask).numpy()

    padded, padded_mask = with_masked_junk(behaviours, mask, extra=4)
    padded_vectors = pooling(padded, padded_mask).numpy()

    np.testing.assert_allclose(padded_vectors, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", STRATEGIES)
def test_user_without_behaviours_gets_finite_vectors(name):
    pooling = make_pooling(name, MODEL_DIM, NUM_HOPS)
    behaviours, mask = with_masked_junk(*behaviours_and_mask(), extra=2)
    mask[:] = False

    user_vectors = pooling(behaviours, mask).numpy()

    assert np.isfinite(user_vectors).all()
    # Nothing present: every user gets the same, junk-free vector.
    np.testing.assert_allclose(user_vectors, np.broadcast_to(user_vectors[:1], user_vectors.shape), atol=1e-6)


def test_empty_user_under_max_pooling_gets_the_cls_vector():
    pooling = MaxPooling(MODEL_DIM)
    behaviours, mask = behaviours_and_mask()

    user_vectors = pooling(behaviours, mask).numpy()

    np.testing.assert_allclose(user_vectors[1, 0], pooling.cls_vector.numpy())


def test_max_pooling_is_elementwise_max_over_present_behaviours_and_cls():
    pooling = MaxPooling(MODEL_DIM)
    behaviours, mask = behaviours_and_mask()

    user_vectors = pooling(behaviours, mask).numpy()

    cls = pooling.cls_vector.numpy()
    for user in range(len(mask)):
        expected = np.max(np.concatenate([cls[None], behaviours[user][mask[user]]]), axis=0)
        np.testing.assert_allclose(user_vectors[user, 0], expected)


def test_mean_pooling_is_mean_over_present_behaviours():
    behaviours, mask = behaviours_and_mask()

    user_vectors = MeanPooling(MODEL_DIM)(behaviours, mask).numpy()

    np.testing.assert_allclose(user_vectors[1, 0], 0.0)
    for user in (0, 2, 3):
        np.testing.assert_allclose(user_vectors[user, 0], behaviours[user][mask[user]].mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("scale_scores", [True, False], ids=["scaled", "sumn_unscaled"])
def test_multi_hop_pooling_matches_the_sumn_recurrence(scale_scores):
    pooling = MultiHopPooling(MODEL_DIM, num_hops=NUM_HOPS, scale_scores=scale_scores)
    scale = MODEL_DIM ** -0.5 if scale_scores else 1.0
    behaviours, mask = behaviours_and_mask()
    user_vectors = pooling(behaviours, mask).numpy()

    def layer_norm(x, norm):
        mean = x.mean(-1, keepdims=True)
        variance = x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + norm.epsilon) * norm.gamma.numpy() + norm.beta.numpy()

    keys = layer_norm(behaviours @ pooling.key_projection.kernel.numpy(), pooling.key_norm)
    values = layer_norm(behaviours @ pooling.value_projection.kernel.numpy(), pooling.value_norm) * mask[..., None]
    state_sum = np.broadcast_to(pooling.initial_state.numpy(), (len(mask), MODEL_DIM))
    query = state_sum
    for hop in range(NUM_HOPS):
        scores = scale * np.einsum("bld,bd->bl", keys, query) - 1e8 * (1 - mask)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights = weights / weights.sum(-1, keepdims=True) * mask  # an empty user reads nothing
        state_sum = state_sum + np.einsum("bl,bld->bd", weights, values)
        query = layer_norm(state_sum, pooling.state_norm)
        np.testing.assert_allclose(user_vectors[:, hop], query, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_half_precision_with_junk_and_empty_users_stays_finite(name, policy):
    with global_policy(policy):
        pooling = make_pooling(name, MODEL_DIM, NUM_HOPS)
    behaviours, mask = behaviours_and_mask()
    padded, padded_mask = with_masked_junk(behaviours, mask, extra=3, scale=1e4)

    user_vectors = pooling(padded, padded_mask)

    assert keras.backend.standardize_dtype(user_vectors.dtype) == policy.split("_")[1]
    user_vectors = keras.ops.convert_to_numpy(keras.ops.cast(user_vectors, "float32"))
    assert np.isfinite(user_vectors).all()
    reference = keras.ops.convert_to_numpy(keras.ops.cast(pooling(behaviours, mask), "float32"))
    np.testing.assert_allclose(user_vectors, reference, rtol=0.05, atol=0.05)


def test_unknown_strategy_names_the_flag_and_the_choices():
    with pytest.raises(UserInputError, match=r"--pooling='attention'.*max, mean, mhop, gruhop"):
        make_pooling("attention", MODEL_DIM, NUM_HOPS)


@pytest.mark.parametrize(
    "behaviours_shape, mask_shape, message",
    [
        pytest.param((4, 5), (4, 5), r"`behaviours` should have shape \[batch_size, max_len, model_dim\]", id="rank_2"),
        pytest.param((4, 5, 7), (4, 5), r"model_dim=6 as its last dimension.*\(4, 5, 7\)", id="wrong_model_dim"),
        pytest.param((4, 5, 6), (4, 4), r"`behaviour_mask` should be \[batch_size, max_len\]", id="mask_mismatch"),
    ],
)
@pytest.mark.parametrize("name", STRATEGIES)
def test_bad_inputs_are_rejected_with_argument_and_shape(name, behaviours_shape, mask_shape, message):
    pooling = make_pooling(name, MODEL_DIM, NUM_HOPS)

    with pytest.raises(ValueError, match=message):
        pooling(np.zeros(behaviours_shape, "float32"), np.ones(mask_shape, bool))


@pytest.mark.parametrize("name", STRATEGIES)
def test_get_config_round_trip(name):
    pooling = make_pooling(name, MODEL_DIM, NUM_HOPS)

    restored = keras.layers.deserialize(keras.layers.serialize(pooling))

    assert type(restored) is POOLING_STRATEGIES[name]
    assert restored.get_config() == pooling.get_config()


@pytest.mark.parametrize("name", STRATEGIES)
def test_save_and_load_give_identical_outputs(name, tmp_path):
    pooling = make_pooling(name, MODEL_DIM, NUM_HOPS)
    behaviours, mask = behaviours_and_mask()
    before = pooling(behaviours, mask).numpy()

    path = str(tmp_path / f"{name}.keras")
    keras.saving.save_model(pooling, path)
    restored = keras.saving.load_model(path)

    np.testing.assert_array_equal(restored(behaviours, mask).numpy(), before)


def test_registry_holds_the_sumn_strategies():
    assert POOLING_STRATEGIES == {
        "max": MaxPooling,
        "mean": MeanPooling,
        "mhop": MultiHopPooling,
        "gruhop": GruHopPooling,
    }
