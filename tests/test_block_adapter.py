"""The residual block's one adapter hook: a binary kernel mask, a per-task soft mask, and PeterRec's patches.

The two mask adapters here are small test adapters of the kinds Conure
(a binary mask on each convolution kernel) and TERACON (a per-task soft
mask after each activation) need; they prove the hook can take them. The
patch test computes PeterRec's serial placement by hand from the block's own
layers.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from model.layers.block_adapter import BlockAdapter
from model.methods.peterrec import ModelPatchAdapter
from model.nextitnet import DilatedResidualBlock, NextItNetEncoder

CHANNELS = 8
KERNEL = 3


@keras.saving.register_keras_serializable(package="uur_tests")
class BinaryKernelMask(BlockAdapter):
    """Each convolution runs with ``kernel * mask`` (one fixed 0/1 mask per unit)."""

    def __init__(self, keep=0.5, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.keep, self.seed = float(keep), int(seed)

    def build_for_block(self, channels, kernel_shape):
        rng = np.random.default_rng(self.seed)
        self.masks = [self.add_weight(shape=kernel_shape, trainable=False, name=f"mask_{unit}",
                                      initializer=keras.initializers.Constant(
                                          (rng.random(kernel_shape) < self.keep).astype("float32")))
                      for unit in (0, 1)]
        self.built = True

    def adapt_kernel(self, unit, kernel):
        return kernel * ops.cast(self.masks[unit], kernel.dtype)

    def get_config(self):
        return dict(super().get_config(), keep=self.keep, seed=self.seed)


@keras.saving.register_keras_serializable(package="uur_tests")
class TaskSoftMask(BlockAdapter):
    """After each ReLU, channels scaled by sigmoid(scale * e[task]): one embedding row per task."""

    def __init__(self, num_tasks=2, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks, self.scale = int(num_tasks), float(scale)
        self.active_task = 0

    def build_for_block(self, channels, kernel_shape):
        self.task_embeddings = [self.add_weight(shape=(self.num_tasks, channels), name=f"e_{unit}",
                                                initializer="random_normal") for unit in (0, 1)]
        self.built = True

    def mask(self, unit):
        return ops.sigmoid(self.scale * self.task_embeddings[unit][self.active_task])

    def after_activation(self, unit, hidden):
        return hidden * ops.cast(self.mask(unit), hidden.dtype)

    def get_config(self):
        return dict(super().get_config(), num_tasks=self.num_tasks, scale=self.scale)


def _perturbed(layer, seed=5):
    rng = np.random.default_rng(seed)
    for variable in layer.trainable_weights:
        variable.assign(variable.numpy() + rng.normal(scale=0.2, size=variable.shape).astype("float32"))


def _hidden(seed=0, batch=3, length=7):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(batch, length, CHANNELS)).astype("float32")
    mask = np.ones((batch, length), bool)
    mask[1, :3] = False
    return hidden, mask


def _pair(adapter, causal=True):
    """A block with ``adapter`` and a plain block holding the same weights."""
    plain = DilatedResidualBlock(CHANNELS, 2, KERNEL, causal=causal)
    adapted = DilatedResidualBlock(CHANNELS, 2, KERNEL, causal=causal, adapter=adapter)
    for block in (plain, adapted):
        block.build((None, None, CHANNELS))
    _perturbed(plain)
    for source, target in zip(plain.backbone_variables(), adapted.backbone_variables(), strict=True):
        target.assign(source)
    return plain, adapted


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "non_causal"])
def test_an_identity_adapter_changes_nothing(causal):
    hidden, mask = _hidden()
    plain, adapted = _pair(BlockAdapter(), causal)
    np.testing.assert_array_equal(adapted(hidden, mask).numpy(), plain(hidden, mask).numpy())


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "non_causal"])
def test_a_binary_kernel_mask_runs_the_block_on_the_masked_kernels(causal):
    hidden, mask = _hidden()
    adapter = BinaryKernelMask(keep=0.5, seed=1)
    plain, adapted = _pair(adapter, causal)
    outputs = adapted(hidden, mask).numpy()
    # Reference: the plain block with its kernels multiplied by the masks.
    for conv, unit_mask in zip(plain.convolutions, adapter.masks):
        conv.kernel.assign(conv.kernel.numpy() * unit_mask.numpy())
    np.testing.assert_allclose(outputs, plain(hidden, mask).numpy(), rtol=0, atol=1e-6)
    assert 0.2 < float(np.mean(adapter.masks[0].numpy())) < 0.8


def test_a_binary_kernel_mask_stops_the_gradient_of_the_masked_weights():
    hidden, mask = _hidden()
    adapter = BinaryKernelMask(keep=0.5, seed=2)
    _, adapted = _pair(adapter)
    kernel = adapted.conv_1.kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(adapted(hidden, mask) ** 2)
    gradient = tape.gradient(loss, kernel).numpy()
    dropped = adapter.masks[0].numpy() == 0
    np.testing.assert_array_equal(gradient[dropped], 0.0)
    assert np.abs(gradient[~dropped]).max() > 0


def test_a_soft_mask_scales_the_residual_branch_by_hand():
    hidden, mask = _hidden()
    adapter = TaskSoftMask(num_tasks=2)
    plain, adapted = _pair(adapter)
    # Unit 0 fully open (a huge embedding), unit 1 at sigmoid(e): output = x + m * (plain - x).
    adapter.task_embeddings[0].assign(np.full((2, CHANNELS), 50.0, "float32"))
    outputs = adapted(hidden, mask).numpy()
    m = 1.0 / (1.0 + np.exp(-adapter.task_embeddings[1].numpy()[0]))
    x = np.where(mask[..., None], hidden, 0.0)
    expected = np.where(mask[..., None], x + m * (plain(hidden, mask).numpy() - x), 0.0)
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)


def test_a_soft_mask_serves_each_task_with_its_own_row():
    hidden, mask = _hidden()
    adapter = TaskSoftMask(num_tasks=2)
    _, adapted = _pair(adapter)
    first = adapted(hidden, mask).numpy()
    adapter.active_task = 1
    second = adapted(hidden, mask).numpy()
    adapter.active_task = 0
    np.testing.assert_array_equal(adapted(hidden, mask).numpy(), first)
    assert np.abs(first - second).max() > 1e-4


def test_peterrec_serial_patches_compute_what_the_paper_says():
    hidden, mask = _hidden()
    adapter = ModelPatchAdapter("serial", bottleneck=2)
    _, block = _pair(adapter)
    _perturbed(adapter, seed=9)
    # conv -> MP -> LN -> ReLU, twice, with the residual, zero at padding (by hand).
    x = np.where(mask[..., None], hidden, 0.0)
    h = ops.relu(block.layer_norm_1(adapter.patch_1(block.conv_1(x)))).numpy()
    h = np.where(mask[..., None], h, 0.0)
    h = ops.relu(block.layer_norm_2(adapter.patch_2(block.conv_2(h)))).numpy()
    expected = np.where(mask[..., None], x + h, 0.0)
    np.testing.assert_allclose(block(hidden, mask).numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("make_adapter", [lambda: BinaryKernelMask(0.3, 4), lambda: TaskSoftMask(3, 2.0)],
                         ids=["binary_kernel_mask", "soft_mask"])
def test_an_encoder_with_mask_adapters_saves_and_loads(make_adapter, tmp_path):
    items = np.array([[0, 3, 4, 5], [6, 7, 8, 9]], "int32")
    encoder = NextItNetEncoder(20, CHANNELS, dilations=(1, 2),
                               block_adapters=[make_adapter(), make_adapter()])
    encoder(items)
    _perturbed(encoder)
    before = encoder(items).numpy()
    path = str(tmp_path / "encoder.keras")
    keras.saving.save_model(encoder, path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored(items).numpy(), before)
    assert len(restored.adapter_variables()) == len(encoder.adapter_variables()) > 0
