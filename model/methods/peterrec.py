"""PeterRec (Yuan et al., SIGIR 2020): model patches in a frozen backbone, trained with the head.

``ModelPatchAdapter`` puts one ``ModelPatch`` per convolution at the block's
hook, in one of the paper's placements:

- ``serial``: conv -> MP -> LN -> ReLU;
- ``serial_after_norm``: conv -> LN -> MP -> ReLU (the paper's other serial place);
- ``parallel``: LN(conv(x) + P(x)) -> ReLU, with P the bottleneck without
  its own residual; before the LayerNorm, where the paper found parallel
  insertion to work (after the activation it works badly).

Patches start as exact no-ops, so a patched block computes what the
pretrained block computes until the patches train. PeterRec trains the
patches, the head and (as the authors' code did) the LayerNorms; the
backbone stays bit-identical and is shared by every task.
"""

import keras

from model.layers.block_adapter import BlockAdapter
from model.layers.model_patch import ModelPatch
from model.methods.method import Method

SERIAL = "serial"
SERIAL_AFTER_NORM = "serial_after_norm"
PARALLEL = "parallel"
PATCH_PLACEMENTS = (SERIAL, SERIAL_AFTER_NORM, PARALLEL)


@keras.saving.register_keras_serializable(package="uur")
class ModelPatchAdapter(BlockAdapter):
    """PeterRec's two model patches of one residual block, at ``placement``.

    Example:

    ```python
    adapter = ModelPatchAdapter("serial", bottleneck=8)
    block = DilatedResidualBlock(channels=64, dilation=2, adapter=adapter)
    ```

    Args:
        placement: ``"serial"``, ``"serial_after_norm"`` or ``"parallel"``.
        bottleneck: channels inside each patch; 0 takes channels // 8.
    """

    def __init__(self, placement=SERIAL, bottleneck=0, **kwargs):
        super().__init__(**kwargs)
        if placement not in PATCH_PLACEMENTS:
            raise ValueError(f"`placement` should be one of {PATCH_PLACEMENTS}. "
                             f"Received: placement={placement!r}.")
        if int(bottleneck) < 0:
            raise ValueError(f"`bottleneck` should be 0 (channels // 8) or positive. "
                             f"Received: bottleneck={bottleneck}.")
        self.placement = placement
        self.bottleneck = int(bottleneck)
        self.patch_1 = self.patch_2 = None

    def build_for_block(self, channels, kernel_shape):
        bottleneck = self.bottleneck or max(1, channels // 8)
        residual = self.placement != PARALLEL
        policy = self.dtype_policy
        self.patch_1 = ModelPatch(bottleneck, residual=residual, dtype=policy, name="patch_1")
        self.patch_2 = ModelPatch(bottleneck, residual=residual, dtype=policy, name="patch_2")
        for patch in (self.patch_1, self.patch_2):
            patch.build((None, None, channels))
        self.built = True

    def build(self, input_shape=None):
        # Built by the block (``build_for_block``), which knows the channels.
        pass

    def _patch(self, unit):
        return self.patch_1 if unit == 0 else self.patch_2

    def after_convolution(self, unit, hidden, inputs):
        if self.placement == SERIAL:
            return self._patch(unit)(hidden)
        if self.placement == PARALLEL:
            return hidden + self._patch(unit)(inputs)
        return hidden

    def after_norm(self, unit, hidden):
        if self.placement == SERIAL_AFTER_NORM:
            return self._patch(unit)(hidden)
        return hidden

    def get_config(self):
        config = super().get_config()
        config.update({"placement": self.placement, "bottleneck": self.bottleneck})
        return config


class PeterRec(Method):
    """Model patches + head (+ the LayerNorms) train; the pretrained backbone stays frozen."""

    name = "peterrec"
    summary = ("model patches + head (+ an attention readout, + LayerNorms) train, the backbone is frozen")

    def block_adapter(self, block_index, description):
        return ModelPatchAdapter(description["patch"], description["patch_bottleneck"],
                                 name="adapter")

    def trainable_variables(self, task_model, description):
        encoder = task_model.encoder
        chosen = list(encoder.adapter_variables()) + task_model.output_variables()
        if description.get("train_layer_norms", True):
            chosen += list(encoder.layer_norm_variables())
        return chosen

    def description_entries(self, settings):
        return {"patch": settings.patch, "train_layer_norms": bool(settings.train_layer_norms)}
