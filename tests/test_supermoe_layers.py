"""SUPERMOE's sparse mixture of experts: routing, capacity, padding, dense equivalence, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.supermoe import MoeTransformerBlock, SparseMixtureOfExperts, SupermoeEncoder, route_tokens

DIM = 6
HIDDEN = 10


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def tokens_and_mask(batch_size=3, length=5, seed=0):
    """Random tokens; row 1 ends in two padding positions."""
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(batch_size, length, DIM)).astype("float32")
    mask = np.ones((batch_size, length), bool)
    mask[1, -2:] = False
    return tokens, mask


def test_top1_routes_each_token_to_its_most_probable_expert_with_that_probability():
    logits = tf.constant([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])

    routing = route_tokens(logits, tf.constant([True, True]), experts_per_token=1)

    probabilities = tf.nn.softmax(logits).numpy()
    capacity = int(routing.capacity)
    assert sorted(zip(routing.tokens.numpy(), routing.slots.numpy() // capacity)) == [(0, 1), (1, 0)]
    np.testing.assert_allclose(sorted(routing.gates.numpy()),
                               sorted([probabilities[0, 1], probabilities[1, 0]]), rtol=1e-6)


def test_top2_gates_are_renormalised_over_the_two_chosen_experts():
    logits = tf.constant(np.random.default_rng(0).normal(size=(7, 4)), tf.float32)

    routing = route_tokens(logits, tf.ones([7], tf.bool), experts_per_token=2)

    totals = tf.math.unsorted_segment_sum(routing.gates, routing.tokens, 7).numpy()
    np.testing.assert_allclose(totals, np.ones(7), rtol=1e-6)


def test_first_choices_fill_capacity_before_any_second_choice():
    # Every token prefers expert 0, then expert 1; capacity 2 per expert.
    logits = tf.constant([[3.0, 2.0, 0.0, 0.0]] * 4)

    routing = route_tokens(logits, tf.ones([4], tf.bool), experts_per_token=2,
                           capacity_factor=1.0)

    capacity = int(routing.capacity)
    assert capacity == 2  # 1.0 * 2 choices * 4 tokens / 4 experts
    kept = sorted(zip(routing.slots.numpy() // capacity, routing.tokens.numpy()))
    # Tokens 0 and 1 win expert 0 and, as second choices, expert 1.
    assert kept == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert float(routing.dropped_fraction) == pytest.approx(0.5)
    np.testing.assert_allclose(routing.expert_load.numpy(), [0.5, 0.5, 0.0, 0.0])


def test_without_a_capacity_factor_nothing_is_dropped():
    logits = tf.constant([[5.0, 0.0, 0.0]] * 6)

    routing = route_tokens(logits, tf.ones([6], tf.bool), experts_per_token=1)

    assert int(routing.capacity) == 6
    assert sorted(routing.tokens.numpy()) == list(range(6))
    assert float(routing.dropped_fraction) == 0.0


def test_padding_is_routed_nowhere_and_counts_in_no_statistic():
    logits = tf.constant([[0.0, 9.0], [9.0, 0.0], [9.0, 0.0]])
    valid = tf.constant([True, False, False])

    routing = route_tokens(logits, valid, experts_per_token=1, capacity_factor=1.0)

    assert routing.tokens.numpy().tolist() == [0]
    np.testing.assert_allclose(routing.expert_load.numpy(), [0.0, 1.0])
    assert float(routing.dropped_fraction) == 0.0
    empty = route_tokens(logits, tf.zeros([3], tf.bool), experts_per_token=1, capacity_factor=1.0)
    assert int(tf.size(empty.tokens)) == 0
    assert float(empty.load_balancing_loss) == 0.0 and float(empty.dropped_fraction) == 0.0


def test_load_balancing_loss_is_one_when_balanced_and_num_experts_when_collapsed():
    experts = 4
    balanced = tf.constant(10.0 * np.eye(experts), tf.float32)
    collapsed = tf.constant([[20.0, 0.0, 0.0, 0.0]] * experts)
    valid = tf.ones([experts], tf.bool)

    assert float(route_tokens(balanced, valid, 1).load_balancing_loss) == pytest.approx(1.0, abs=1e-3)
    assert float(route_tokens(collapsed, valid, 1).load_balancing_loss) == pytest.approx(experts, abs=1e-3)


def test_router_z_loss_is_the_mean_squared_logsumexp_of_real_tokens():
    logits = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    valid = np.array([True, True, False, True, True])

    routing = route_tokens(tf.constant(logits), tf.constant(valid), 1)

    normalizers = np.log(np.exp(logits).sum(axis=-1))
    assert float(routing.router_z_loss) == pytest.approx(np.mean(normalizers[valid] ** 2), rel=1e-5)


@pytest.mark.parametrize("experts_per_token", [1, 2])
def test_sparse_dispatch_equals_every_expert_on_every_token_when_nothing_is_dropped(experts_per_token):
    tokens, mask = tokens_and_mask()
    sparse = SparseMixtureOfExperts(4, experts_per_token, HIDDEN, dispatch="sparse")
    dense = SparseMixtureOfExperts(4, experts_per_token, HIDDEN, dispatch="dense")
    sparse(tokens, token_mask=mask)
    dense(tokens, token_mask=mask)
    dense.set_weights(sparse.get_weights())

    sparse_outputs, _ = sparse(tokens, token_mask=mask)
    dense_outputs, _ = dense(tokens, token_mask=mask)

    np.testing.assert_allclose(sparse_outputs.numpy(), dense_outputs.numpy(), rtol=1e-5, atol=1e-6)


def test_one_expert_is_a_plain_feed_forward_layer():
    tokens, _ = tokens_and_mask()
    moe = SparseMixtureOfExperts(1, 1, HIDDEN, activation="relu")

    outputs, statistics = moe(tokens, training=True)

    inner, inner_bias, outer, outer_bias = (moe.inner_kernel.numpy()[0], moe.inner_bias.numpy()[0],
                                            moe.outer_kernel.numpy()[0], moe.outer_bias.numpy()[0])
    expected = np.maximum(tokens @ inner + inner_bias, 0.0) @ outer + outer_bias
    np.testing.assert_allclose(outputs.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert float(statistics["dropped_fraction"]) == 0.0


def test_padding_outputs_zero_and_inference_does_not_depend_on_batch_mates():
    tokens, mask = tokens_and_mask()
    moe = SparseMixtureOfExperts(3, 2, HIDDEN, capacity_factor=0.5)

    outputs, _ = moe(tokens, token_mask=mask)
    alone, _ = moe(tokens[1:2], token_mask=mask[1:2])

    assert not outputs.numpy()[1, -2:].any()
    np.testing.assert_allclose(alone.numpy()[0], outputs.numpy()[1], rtol=1e-5, atol=1e-6)


def test_training_capacity_drops_tokens_whose_output_is_then_zero():
    tokens, _ = tokens_and_mask(batch_size=4, length=8)
    moe = SparseMixtureOfExperts(4, 1, HIDDEN, capacity_factor=0.25)

    outputs, statistics = moe(tokens, training=True)

    served = np.abs(outputs.numpy()).reshape(-1, DIM).sum(axis=-1) > 0
    # 0.25 * 32 tokens / 4 experts = 2 slots each: at most 8 tokens served.
    assert served.sum() <= 8
    assert float(statistics["dropped_fraction"]) == pytest.approx(1.0 - served.sum() / 32)


def test_the_context_moves_the_routing():
    tokens, _ = tokens_and_mask()
    moe = SparseMixtureOfExperts(4, 1, HIDDEN, context_dim=2, router_stddev=1.0)
    first, _ = moe(tokens, context=np.tile([[1.0, 0.0]], (3, 1)).astype("float32"))
    moe.context_kernel.assign(10.0 * np.array([[1, 0, 0, 0], [0, 0, 0, 1]], "float32"))

    to_first, statistics_first = moe(tokens, context=np.tile([[1.0, 0.0]], (3, 1)).astype("float32"))
    to_last, statistics_last = moe(tokens, context=np.tile([[0.0, 1.0]], (3, 1)).astype("float32"))

    assert statistics_first["expert_load"].numpy()[0] == pytest.approx(1.0)
    assert statistics_last["expert_load"].numpy()[3] == pytest.approx(1.0)
    assert not np.allclose(to_first.numpy(), to_last.numpy())


def test_gradients_reach_the_router_and_the_chosen_experts():
    tokens, mask = tokens_and_mask()
    moe = SparseMixtureOfExperts(4, 2, HIDDEN)

    with tf.GradientTape() as tape:
        outputs, statistics = moe(tokens, token_mask=mask, training=True)
        loss = tf.reduce_sum(tf.square(outputs)) + statistics["load_balancing_loss"]
    gradients = dict(zip([v.path for v in moe.trainable_weights],
                         tape.gradient(loss, moe.trainable_weights)))

    assert all(gradient is not None and np.abs(gradient.numpy()).sum() > 0
               for gradient in gradients.values())


@pytest.mark.parametrize("arguments, message", [
    ({"num_experts": 0}, "num_experts"),
    ({"experts_per_token": 5}, "experts_per_token"),
    ({"hidden_dim": 0}, "hidden_dim"),
    ({"capacity_factor": 0.0}, "capacity_factor"),
    ({"dispatch": "einsum"}, "dispatch"),
    ({"context_dim": -1}, "context_dim"),
])
def test_bad_arguments_name_themselves(arguments, message):
    settings = {"num_experts": 4, "experts_per_token": 2, "hidden_dim": HIDDEN, **arguments}
    with pytest.raises(ValueError, match=message):
        SparseMixtureOfExperts(**settings)


def test_bad_inputs_name_the_argument():
    tokens, mask = tokens_and_mask()
    moe = SparseMixtureOfExperts(4, 2, HIDDEN)
    with pytest.raises(ValueError, match="`inputs` should have shape"):
        moe(tokens[0])
    with pytest.raises(ValueError, match="`token_mask` should have the length"):
        moe(tokens, token_mask=mask[:, :3])
    with pytest.raises(ValueError, match="`context` should be given exactly when"):
        moe(tokens, context=np.zeros((3, 2), "float32"))


def test_get_config_round_trip_and_save_load_give_identical_outputs(tmp_path):
    tokens, mask = tokens_and_mask()
    moe = SparseMixtureOfExperts(4, 2, HIDDEN, capacity_factor=1.5, context_dim=2, name="moe")
    context = np.random.default_rng(2).normal(size=(3, 2)).astype("float32")
    before, _ = moe(tokens, token_mask=mask, context=context)

    restored_config = keras.layers.deserialize(keras.layers.serialize(moe)).get_config()
    path = str(tmp_path / "moe.keras")
    keras.saving.save_model(moe, path)
    restored = keras.saving.load_model(path)

    assert restored_config == moe.get_config()
    after, _ = restored(tokens, token_mask=mask, context=context)
    np.testing.assert_array_equal(after.numpy(), before.numpy())


def encoder(**overrides):
    settings = {"num_item_ids": 20, "dim": 8, "num_blocks": 2, "num_heads": 2, "num_experts": 4,
                "experts_per_token": 2, "max_length": 6, **overrides}
    return SupermoeEncoder(**settings)


ITEMS = np.array([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7], [0, 0, 0, 0, 9]], "int32")


def test_encoder_states_do_not_depend_on_the_batchs_padding():
    model = encoder()

    hidden, _ = model(ITEMS)
    more_padding, _ = model(np.pad(ITEMS, ((0, 0), (3, 0))))

    np.testing.assert_allclose(more_padding.numpy()[:, 3:], hidden.numpy(), rtol=1e-5, atol=1e-5)
    assert not hidden.numpy()[0, :2].any() and not hidden.numpy()[2, :4].any()


def test_a_causal_encoder_reads_no_later_item_and_a_bidirectional_one_does():
    changed = ITEMS.copy()
    changed[1, -1] = 11
    for causal, reads_later in ((True, False), (False, True)):
        model = encoder(causal=causal)
        before, _ = model(ITEMS)
        after, _ = model(changed)
        assert np.allclose(before.numpy()[1, :-1], after.numpy()[1, :-1], atol=1e-6) != reads_later


def test_encoder_statistics_hold_each_blocks_expert_load():
    model = encoder()

    _, statistics = model(ITEMS, training=True)

    load = statistics["expert_load"].numpy()
    assert load.shape == (2, 4)
    np.testing.assert_allclose(load.sum(axis=-1), [1.0, 1.0], rtol=1e-6)
    assert float(statistics["load_balancing_loss"]) >= 1.0 - 1e-6  # 1 only at perfect balance


def test_encoder_save_and_load_give_identical_outputs(tmp_path):
    model = encoder(context_dim=3, dispatch="dense", causal=False)
    context = np.eye(3, dtype="float32")
    before, _ = model(ITEMS, context=context)

    path = str(tmp_path / "encoder.keras")
    keras.saving.save_model(model, path)
    restored = keras.saving.load_model(path)

    assert restored.get_config() == model.get_config()
    after, _ = restored(ITEMS, context=context)
    np.testing.assert_array_equal(after.numpy(), before.numpy())


def test_block_rejects_a_width_its_heads_do_not_divide():
    with pytest.raises(ValueError, match="multiple of `num_heads`"):
        MoeTransformerBlock(dim=6, num_heads=4, num_experts=2, experts_per_token=1, hidden_dim=8)


def test_each_router_routes_by_its_own_kernel():
    tokens, _ = tokens_and_mask()
    moe = SparseMixtureOfExperts(4, 1, HIDDEN, num_routers=2)
    moe(tokens)
    kernel = np.zeros((2, DIM, 4), "float32")
    kernel[0, :, 0] = 50.0
    kernel[1, :, 3] = 50.0
    moe.router_kernel.assign(kernel)
    positive = np.abs(tokens)  # every token's sum is positive: the marked expert wins

    _, first = moe(positive, router=0)
    _, second = moe(positive, router=1)

    assert first["expert_load"].numpy()[0] == pytest.approx(1.0)
    assert second["expert_load"].numpy()[3] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="`router` should be in"):
        moe(tokens, router=2)


def test_each_thread_of_a_task_view_keeps_its_own_routing_statistics():
    # MirroredStrategy runs each replica's step in its own thread: a shared list would hand one
    # replica's router losses to the other, whose tape cannot differentiate them.
    import threading

    from model.supermoe.multi_task_model import SupermoeModel

    model = SupermoeModel(num_item_ids=20, dim=8, num_blocks=1, num_heads=2, num_experts=2,
                          experts_per_token=1, tasks=[{"name": "next_item",
                                                       "task_kind": "next_item"}])
    model.build()
    view = model.task_view(0)
    items = tf.constant([[0, 3, 4], [5, 6, 7]])
    seen = {}

    def replica(name, calls):
        view.statistics.clear()
        for _ in range(calls):
            view.encoder(items, training=True)
        seen[name] = len(view.statistics)

    threads = [threading.Thread(target=replica, args=(name, calls))
               for name, calls in (("first", 1), ("second", 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    view.encoder(items, training=False)

    assert seen == {"first": 1, "second": 3}
    assert view.statistics == []  # this thread trained nothing; inference keeps none
