"""NextItNet's residual block of two dilated convolutions, with one adapter hook for methods."""

import keras
from keras import ops

from model.layers.block_adapter import BlockAdapter
from model.layers.input_checks import as_bool_mask
from model.layers.input_checks import check_rank


def _zero_padding(values, mask):
    """``values`` [B, L, C] with the positions where ``mask`` [B, L] is False set to exactly 0.

    ``where`` rather than a product: a NaN or Inf at a padding position must
    not survive as NaN (NaN * 0 is NaN).
    """
    return ops.where(ops.expand_dims(mask, -1), values, ops.zeros_like(values))


@keras.saving.register_keras_serializable(package="uur")
class DilatedResidualBlock(keras.layers.Layer):
    """y = x + ReLU(LN2(Conv_{2d}(ReLU(LN1(Conv_d(x)))))), as in NextItNet.

    The first convolution has dilation ``d``, the second ``2d``; both keep the
    channel width. ``causal=True`` (NextItNet) pads (k-1)*dilation zeros on the
    left, so position t reads only positions <= t; ``causal=False`` (GRec)
    pads both sides ("same"). Every convolution's input is zero at padding
    positions, and so is the output: with left padding a user's hidden states
    then do not depend on how many pads its batch put before it.

    ``adapter`` (a ``BlockAdapter``) is the one place a method changes the
    block: on each convolution's kernel, after each convolution, after each
    LayerNorm and after each ReLU (see ``model/layers/block_adapter.py``).
    PeterRec's model patches, Conure's binary kernel masks and TERACON's
    soft masks are adapters; the block knows none of them.

    Example:

    ```python
    block = DilatedResidualBlock(channels=64, dilation=2)
    outputs = block(hidden, mask)  # [batch_size, length, 64], zero where mask is False
    ```

    Args:
        channels: width of the input, of both convolutions and of the output.
        dilation: dilation ``d`` of the first convolution (the second has 2d).
        kernel_size: width of both convolutions (NextItNet: 3).
        causal: look only at the past (NextItNet) or both ways (GRec).
        adapter: a ``BlockAdapter`` the block calls at its hook, or None.
        epsilon: LayerNorm epsilon (NextItNet: 1e-8).
        dropout_rate: dropout on the residual branch, before the addition.
    """

    def __init__(self, channels, dilation, kernel_size=3, causal=True, adapter=None,
                 epsilon=1e-8, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        if int(channels) < 1:
            raise ValueError(f"`channels` should be at least 1. Received: channels={channels}.")
        if int(dilation) < 1:
            raise ValueError(f"`dilation` should be at least 1. Received: dilation={dilation}.")
        if int(kernel_size) < 1:
            raise ValueError(f"`kernel_size` should be at least 1. Received: kernel_size={kernel_size}.")
        if isinstance(adapter, dict):
            adapter = keras.saving.deserialize_keras_object(adapter)
        if adapter is not None and not isinstance(adapter, BlockAdapter):
            raise ValueError(f"`adapter` should be a BlockAdapter or None. "
                             f"Received: adapter={adapter!r}.")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` should be in [0, 1). Received: dropout_rate={dropout_rate}.")
        self.channels = int(channels)
        self.dilation = int(dilation)
        self.kernel_size = int(kernel_size)
        self.causal = bool(causal)
        self.epsilon = float(epsilon)
        self.dropout_rate = float(dropout_rate)
        policy = self.dtype_policy
        padding = "causal" if self.causal else "same"
        self.conv_1 = keras.layers.Conv1D(
            self.channels, self.kernel_size, padding=padding, dilation_rate=self.dilation,
            dtype=policy, name="conv_1")
        self.layer_norm_1 = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=policy, name="layer_norm_1")
        self.conv_2 = keras.layers.Conv1D(
            self.channels, self.kernel_size, padding=padding, dilation_rate=2 * self.dilation,
            dtype=policy, name="conv_2")
        self.layer_norm_2 = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=policy, name="layer_norm_2")
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy, name="dropout")
        # Assigned last, so its variables follow the block's own in ``variables``
        # (the order task checkpoints are keyed by).
        self.adapter = adapter

    @property
    def convolutions(self):
        return [self.conv_1, self.conv_2]

    @property
    def layer_norms(self):
        return [self.layer_norm_1, self.layer_norm_2]

    def backbone_variables(self):
        """Convolution and LayerNorm weights, conv_1 first: the same list with or without an adapter.

        Built from the layers rather than filtered from ``self.variables``,
        which also holds dropout's random-seed state when dropout_rate > 0.
        """
        layers = [self.conv_1, self.layer_norm_1, self.conv_2, self.layer_norm_2]
        return [v for layer in layers for v in layer.variables]

    def build(self, input_shape=None):
        shape = (None, None, self.channels)
        for layer in self.convolutions + self.layer_norms:
            layer.build(shape)
        if self.adapter is not None and not self.adapter.built:
            self.adapter.build_for_block(self.channels, tuple(self.conv_1.kernel.shape))

    def _convolve(self, conv, inputs, kernel):
        """``conv(inputs)`` computed with ``kernel`` in place of ``conv.kernel`` (as Conv1D does)."""
        padding = conv.padding
        if padding == "causal":
            inputs = ops.pad(inputs, [[0, 0], [conv.dilation_rate[0] * (self.kernel_size - 1), 0],
                                      [0, 0]])
            padding = "valid"
        outputs = ops.conv(inputs, kernel, strides=1, padding=padding,
                           dilation_rate=conv.dilation_rate)
        return outputs + ops.reshape(conv.bias, (1, 1, self.channels))

    def _conv_norm_relu(self, unit, inputs, conv, layer_norm):
        """One half of the block: ReLU(LN(conv(x))), calling the adapter at its four places."""
        adapter = self.adapter
        if adapter is None:
            return ops.relu(layer_norm(conv(inputs)))
        hidden = self._convolve(conv, inputs, adapter.adapt_kernel(unit, conv.kernel))
        hidden = adapter.after_convolution(unit, hidden, inputs)
        hidden = adapter.after_norm(unit, layer_norm(hidden))
        return adapter.after_activation(unit, ops.relu(hidden))

    def call(self, inputs, mask=None, training=False):
        """Runs the block.

        Args:
            inputs: [batch_size, length, channels].
            mask: [batch_size, length] bool or 0/1, True at real (non-padding)
                positions; None treats every position as real.
            training: enables dropout.

        Returns:
            [batch_size, length, channels], exactly zero where ``mask`` is False.
        """
        shape = check_rank(inputs, 3, "inputs", "[batch_size, length, channels]")
        if shape[-1] is not None and shape[-1] != self.channels:
            raise ValueError(f"`inputs` should have {self.channels} channels. "
                             f"Received: `inputs.shape` = {shape}.")
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        else:
            check_rank(mask, 2, "mask", "[batch_size, length]")
            mask = as_bool_mask(mask)
        inputs = _zero_padding(inputs, mask)
        hidden = self._conv_norm_relu(0, inputs, self.conv_1, self.layer_norm_1)
        hidden = _zero_padding(hidden, mask)
        hidden = self._conv_norm_relu(1, hidden, self.conv_2, self.layer_norm_2)
        hidden = self.dropout(hidden, training=training)
        return _zero_padding(inputs + hidden, mask)

    def compute_output_shape(self, input_shape, mask_shape=None):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "channels": self.channels, "dilation": self.dilation, "kernel_size": self.kernel_size,
            "causal": self.causal,
            "adapter": (None if self.adapter is None
                        else keras.saving.serialize_keras_object(self.adapter)),
            "epsilon": self.epsilon, "dropout_rate": self.dropout_rate,
        })
        return config
