"""PeterRec's layers: model patches (as block adapters), dilated residual blocks, the NextItNet encoder, heads."""

import keras
import numpy as np
import pytest

from model.tasks.heads import ClassificationHead
from model.nextitnet import DEFAULT_DILATIONS
from model.nextitnet import DilatedResidualBlock
from model.tasks.heads import EmbeddingItemScoringHead, ItemScoringHead
from model.nextitnet import ItemSoftmax
from model.layers.model_patch import ModelPatch
from model.methods.peterrec import ModelPatchAdapter
from model.nextitnet import NextItNetEncoder
from model.nextitnet import cls_user_vector
from keras_helpers import global_policy

CHANNELS = 16
NUM_ITEM_IDS = 40
DILATIONS = (1, 2)
PATCHES = ("none", "serial", "serial_after_norm", "parallel")


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def random_sequence(length, seed=0):
    """One user's real item ids (never a special id)."""
    return np.random.default_rng(seed).integers(3, NUM_ITEM_IDS, size=length).astype("int32")


def left_padded(sequences, length):
    """Rows of item ids left-padded with 0 to ``length``."""
    batch = np.zeros((len(sequences), length), "int32")
    for row, items in enumerate(sequences):
        batch[row, length - len(items):] = items
    return batch


def perturbed(layer):
    """Moves every weight off its initial value, so zero biases cannot hide a bug."""
    rng = np.random.default_rng(5)
    for variable in layer.weights:
        variable.assign(variable.numpy() + rng.normal(scale=0.1, size=variable.shape).astype("float32"))


def adapter(patch, bottleneck=0):
    """PeterRec's adapter of one block at placement ``patch``; None for "none"."""
    return None if patch == "none" else ModelPatchAdapter(patch, bottleneck)


def encoder(causal=True, patch="none", patch_bottleneck=0, **kwargs):
    adapters = (None if patch == "none"
                else [adapter(patch, patch_bottleneck) for _ in DILATIONS])
    return NextItNetEncoder(NUM_ITEM_IDS, CHANNELS, dilations=DILATIONS, causal=causal,
                            block_adapters=adapters, **kwargs)


def patch_layers(block):
    return [] if block.adapter is None else [block.adapter.patch_1, block.adapter.patch_2]


def hidden_and_mask(batch_size=3, length=7, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(batch_size, length, CHANNELS)).astype("float32")
    mask = np.ones((batch_size, length), bool)
    mask[1, :3] = False
    return hidden, mask


# --- ModelPatch -------------------------------------------------------------------------------

def test_fresh_patch_is_the_identity():
    hidden, _ = hidden_and_mask()
    patch = ModelPatch(bottleneck=4)

    np.testing.assert_array_equal(patch(hidden).numpy(), hidden)


def test_fresh_parallel_patch_adds_nothing():
    hidden, _ = hidden_and_mask()
    patch = ModelPatch(bottleneck=4, residual=False)

    np.testing.assert_array_equal(patch(hidden).numpy(), np.zeros_like(hidden))


def test_patch_holds_under_a_tenth_of_a_convolution():
    channels = 64
    patch = ModelPatch(bottleneck=channels // 8)
    patch.build((None, None, channels))
    conv = keras.layers.Conv1D(channels, 3)
    conv.build((None, None, channels))

    assert patch.count_params() < 0.1 * conv.count_params()


def test_patch_rejects_a_zero_bottleneck():
    with pytest.raises(ValueError, match="`bottleneck` should be at least 1"):
        ModelPatch(bottleneck=0)


# --- DilatedResidualBlock ---------------------------------------------------------------------

@pytest.mark.parametrize("patch", PATCHES)
def test_block_exposes_its_parts(patch):
    block = DilatedResidualBlock(CHANNELS, dilation=2, adapter=adapter(patch, 3))
    block.build((None, None, CHANNELS))

    assert [c.dilation_rate for c in block.convolutions] == [(2,), (4,)]
    assert len(block.layer_norms) == 2
    assert all(norm.epsilon == 1e-8 for norm in block.layer_norms)
    assert len(patch_layers(block)) == (0 if patch == "none" else 2)
    assert all(p.bottleneck == 3 for p in patch_layers(block))


@pytest.mark.parametrize("patch", PATCHES)
def test_block_is_zero_at_padding(patch):
    hidden, mask = hidden_and_mask()
    block = DilatedResidualBlock(CHANNELS, dilation=1, adapter=adapter(patch))

    outputs = block(hidden, mask).numpy()

    assert outputs.shape == hidden.shape
    np.testing.assert_array_equal(outputs[~mask], 0.0)
    assert np.all(np.abs(outputs[mask]).sum(-1) > 0)


def test_block_rejects_an_unknown_patch():
    with pytest.raises(ValueError, match="`placement` should be one of"):
        DilatedResidualBlock(CHANNELS, dilation=1, adapter=adapter("sideways"))


def test_block_rejects_the_wrong_width():
    block = DilatedResidualBlock(CHANNELS, dilation=1)
    with pytest.raises(ValueError, match=f"`inputs` should have {CHANNELS} channels"):
        block(np.zeros((2, 5, CHANNELS + 1), "float32"))


# --- NextItNetEncoder -------------------------------------------------------------------------

def test_encoder_defaults_follow_the_paper():
    model = NextItNetEncoder(NUM_ITEM_IDS, 64)

    assert model.dilations == DEFAULT_DILATIONS == (1, 2, 4, 8, 1, 2, 4, 8)
    assert model.kernel_size == 3 and model.causal
    assert all(block.adapter is None for block in model.blocks)
    patched = NextItNetEncoder(NUM_ITEM_IDS, 64, block_adapters=[adapter("serial") for _ in range(8)])
    patched.build((None, None))
    assert all(p.bottleneck == 8 for block in patched.blocks for p in patch_layers(block))
    assert len(model.blocks) == 8


def test_encoder_output_is_zero_at_padding():
    items = left_padded([random_sequence(5), random_sequence(2, seed=1)], 6)
    model = encoder()

    hidden = model(items).numpy()

    assert hidden.shape == (2, 6, CHANNELS)
    np.testing.assert_array_equal(hidden[items == 0], 0.0)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "non_causal"])
def test_later_items_reach_earlier_states_only_without_causality(causal):
    model = encoder(causal=causal)
    items = random_sequence(8)[None]
    changed = items.copy()
    changed[0, 5:] = random_sequence(3, seed=7)
    assert np.all(changed[0, 5:] != items[0, 5:])

    before, after = model(items).numpy(), model(changed).numpy()

    if causal:
        np.testing.assert_array_equal(after[0, :5], before[0, :5])
    else:
        assert np.abs(after[0, :5] - before[0, :5]).max() > 1e-4
    assert np.abs(after[0, 5:] - before[0, 5:]).max() > 1e-4


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "non_causal"])
def test_left_padding_does_not_change_hidden_states(causal):
    model = encoder(causal=causal, patch="serial")
    model.build((None, None))
    perturbed(model)  # non-zero biases and LayerNorm betas: padding would not stay zero by chance
    items = random_sequence(6)
    reference = model(items[None]).numpy()[0]

    for extra in (3, 10):
        padded = left_padded([items, random_sequence(6 + extra, seed=2)], 6 + extra)
        hidden = model(padded).numpy()[0]

        np.testing.assert_allclose(hidden[extra:], reference, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(hidden[:extra], 0.0)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "non_causal"])
@pytest.mark.parametrize("patch", ["serial", "serial_after_norm", "parallel"])
def test_fresh_patches_leave_the_pretrained_encoder_unchanged(patch, causal):
    items = left_padded([random_sequence(6), random_sequence(3, seed=1)], 6)
    pretrained = encoder(causal=causal)
    pretrained.build((None, None))
    perturbed(pretrained)  # stands in for pretrained weights
    reference = pretrained(items).numpy()
    patched = encoder(causal=causal, patch=patch)
    patched.build((None, None))

    for source, target in zip(pretrained.backbone_variables(), patched.backbone_variables(),
                              strict=True):
        target.assign(source)

    np.testing.assert_allclose(patched(items).numpy(), reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("patch", PATCHES)
def test_variable_groups_split_the_encoder(patch):
    model = encoder(patch=patch)
    model.build((None, None))
    plain = encoder()
    plain.build((None, None))

    patches = model.adapter_variables()
    backbone = model.backbone_variables()

    assert len(patches) == (0 if patch == "none" else 4 * 2 * len(DILATIONS))
    assert len(model.layer_norm_variables()) == 2 * 2 * len(DILATIONS)
    assert len(patches) + len(backbone) == len(model.trainable_variables)
    assert [tuple(v.shape) for v in backbone] == [tuple(v.shape) for v in plain.backbone_variables()]
    assert backbone[0] is model.item_embedding.embeddings


def test_backbone_variables_do_not_depend_on_dropout():
    with_dropout = encoder(dropout_rate=0.2)
    with_dropout.build((None, None))
    without = encoder(patch="parallel")
    without.build((None, None))

    assert len(with_dropout.variables) > len(with_dropout.trainable_variables)  # seed states
    assert ([v.path.split("/", 1)[1] for v in with_dropout.backbone_variables()]
            == [v.path.split("/", 1)[1] for v in without.backbone_variables()])


def test_encoder_rejects_float_ids():
    with pytest.raises(TypeError, match="`item_ids` should hold integer ids"):
        encoder()(np.zeros((2, 4), "float32"))


def test_encoder_rejects_missing_item_ids():
    with pytest.raises(ValueError, match="`num_item_ids` should exceed the 3 special ids"):
        NextItNetEncoder(3, CHANNELS)


def test_encoder_runs_under_mixed_precision():
    items = left_padded([random_sequence(5)], 6)
    with global_policy("mixed_float16"):
        model = encoder(patch="serial")
        hidden = model(items)

    assert hidden.dtype == "float16"
    assert np.all(np.isfinite(hidden.numpy()))


# --- user vector and heads --------------------------------------------------------------------

def test_cls_user_vector_reads_the_cls_positions():
    items = left_padded([[3, 4, 5, 6], [7, 8]], 4)
    hidden = np.random.default_rng(0).normal(size=(2, 4, CHANNELS)).astype("float32")

    causal = cls_user_vector(hidden, items, causal=True).numpy()
    non_causal = cls_user_vector(hidden, items, causal=False).numpy()

    np.testing.assert_allclose(causal, hidden[:, -1])
    np.testing.assert_allclose(non_causal[0], hidden[0, 0] + hidden[0, -1], rtol=1e-6)
    np.testing.assert_allclose(non_causal[1], hidden[1, 2] + hidden[1, -1], rtol=1e-6)


def test_item_scoring_head_scores_match_score_all():
    users = np.random.default_rng(0).normal(size=(2, CHANNELS)).astype("float32")
    candidates = np.array([[3, 9, 11], [39, 3, 4]], "int32")
    head = ItemScoringHead(NUM_ITEM_IDS, CHANNELS)

    scores = head(users, candidates).numpy()
    every_item = head.score_all(users).numpy()

    assert every_item.shape == (2, NUM_ITEM_IDS)
    np.testing.assert_allclose(scores, np.take_along_axis(every_item, candidates, axis=1),
                               rtol=1e-5, atol=1e-6)


def test_item_scoring_head_rejects_the_wrong_user_width():
    head = ItemScoringHead(NUM_ITEM_IDS, CHANNELS)
    with pytest.raises(ValueError, match=r"`user_vectors` should have shape \[batch_size, 16\]"):
        head(np.zeros((2, CHANNELS + 1), "float32"), np.zeros((2, 3), "int32"))


def _item_table():
    return np.random.default_rng(1).normal(size=(NUM_ITEM_IDS, CHANNELS)).astype("float32")


def test_embedding_item_scoring_head_starts_as_the_dot_product_with_the_embedding():
    users = np.random.default_rng(0).normal(size=(2, CHANNELS)).astype("float32")
    candidates = np.array([[3, 9, 11], [39, 3, 4]], "int32")
    table = _item_table()
    head = EmbeddingItemScoringHead(CHANNELS)

    scores = head(users, candidates, table).numpy()
    every_item = head.score_all(users, table).numpy()

    # Scale 1, shift 0: a new head ranks items as the embedding does; it owns 2 x dim weights.
    np.testing.assert_allclose(every_item, users @ table.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, np.take_along_axis(every_item, candidates, axis=1),
                               rtol=1e-5, atol=1e-6)
    assert sum(int(np.prod(w.shape)) for w in head.weights) == 2 * CHANNELS


def test_embedding_item_scoring_head_shift_is_an_item_bias_in_the_embeddings_span():
    table = _item_table()
    head = EmbeddingItemScoringHead(CHANNELS)
    head.build()
    shift = np.random.default_rng(2).normal(size=CHANNELS).astype("float32")
    head.shift.assign(shift)

    every_item = head.score_all(np.zeros((1, CHANNELS), "float32"), table).numpy()

    np.testing.assert_allclose(every_item[0], table @ shift, rtol=1e-5, atol=1e-5)


def test_embedding_item_scoring_head_rejects_a_table_of_another_width():
    head = EmbeddingItemScoringHead(CHANNELS)
    with pytest.raises(ValueError, match=r"`item_table` should have shape \[num_item_ids, 16\]"):
        head.score_all(np.zeros((2, CHANNELS), "float32"),
                       np.zeros((NUM_ITEM_IDS, CHANNELS + 1), "float32"))


def test_item_softmax_kernel_has_one_row_per_item():
    softmax = ItemSoftmax(NUM_ITEM_IDS)
    logits = softmax(np.zeros((2, 5, CHANNELS), "float32"))

    assert tuple(softmax.kernel.shape) == (NUM_ITEM_IDS, CHANNELS)
    assert tuple(softmax.bias.shape) == (NUM_ITEM_IDS,)
    assert tuple(logits.shape) == (2, 5, NUM_ITEM_IDS)


def test_classification_head_gives_class_logits():
    head = ClassificationHead(num_classes=3, dropout_rate=0.5)

    assert tuple(head(np.ones((4, CHANNELS), "float32"), training=True).shape) == (4, 3)


# --- serialization ----------------------------------------------------------------------------

def _items():
    return left_padded([random_sequence(5), random_sequence(2, seed=1)], 6)


SERIALIZATION_CASES = {
    "model_patch": (lambda: ModelPatch(4), lambda: (hidden_and_mask()[0],)),
    "parallel_model_patch": (lambda: ModelPatch(4, residual=False), lambda: (hidden_and_mask()[0],)),
    "block_none": (lambda: DilatedResidualBlock(CHANNELS, 2), hidden_and_mask),
    "block_serial": (lambda: DilatedResidualBlock(CHANNELS, 2, adapter=adapter("serial")),
                     hidden_and_mask),
    "block_parallel": (lambda: DilatedResidualBlock(CHANNELS, 2, causal=False,
                                                    adapter=adapter("parallel")),
                       hidden_and_mask),
    "encoder_none": (lambda: encoder(), lambda: (_items(),)),
    "encoder_serial": (lambda: encoder(patch="serial", patch_bottleneck=3), lambda: (_items(),)),
    "encoder_parallel_non_causal": (lambda: encoder(causal=False, patch="parallel"),
                                    lambda: (_items(),)),
    "item_softmax": (lambda: ItemSoftmax(NUM_ITEM_IDS), lambda: (hidden_and_mask()[0],)),
    "classification_head": (lambda: ClassificationHead(3, dropout_rate=0.1),
                            lambda: (hidden_and_mask()[0][:, 0],)),
    "item_scoring_head": (lambda: ItemScoringHead(NUM_ITEM_IDS, CHANNELS),
                          lambda: (hidden_and_mask()[0][:, 0], np.array([[3, 4], [5, 6], [7, 39]], "int32"))),
    "embedding_item_scoring_head": (
        lambda: EmbeddingItemScoringHead(CHANNELS),
        lambda: (hidden_and_mask()[0][:, 0], np.array([[3, 4], [5, 6], [7, 39]], "int32"),
                 _item_table())),
}


@pytest.mark.parametrize("case", sorted(SERIALIZATION_CASES))
def test_get_config_round_trip(case):
    make_layer, _ = SERIALIZATION_CASES[case]
    layer = make_layer()

    restored = keras.layers.deserialize(keras.layers.serialize(layer))

    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize("case", sorted(SERIALIZATION_CASES))
def test_save_and_load_give_identical_outputs(case, tmp_path):
    make_layer, make_inputs = SERIALIZATION_CASES[case]
    layer = make_layer()
    inputs = make_inputs()
    layer(*inputs)
    perturbed(layer)
    before = layer(*inputs).numpy()

    path = str(tmp_path / f"{case}.keras")
    keras.saving.save_model(layer, path)
    restored = keras.saving.load_model(path)

    np.testing.assert_array_equal(restored(*inputs).numpy(), before)
