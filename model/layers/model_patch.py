"""PeterRec's model patch: a small bottleneck that adapts a frozen pretrained layer."""

import keras

from model.layers.input_checks import static_shape


@keras.saving.register_keras_serializable(package="uur")
class ModelPatch(keras.layers.Layer):
    """MP(x) = x + W_up GELU(W_down x), both projections 1x1 convolutions.

    A 1x1 convolution over [batch, length, channels] is a Dense layer on the
    channel axis, so the patch is two Dense layers: ``channels -> bottleneck``
    and back. ``W_up`` (kernel and bias) starts at zero, so a freshly inserted
    patch is the identity and the pretrained network it is put into computes
    exactly what it computed before; fine-tuning then moves it away from the
    identity only as far as the task needs. At bottleneck = channels / 8 a
    patch holds under 10% of the parameters of the kernel-3 convolution it
    adapts.

    With ``residual=False`` the layer is the bare bottleneck
    ``W_up GELU(W_down x)`` (zero at initialisation): PeterRec's parallel
    insertion adds it beside a convolution, LN(conv(x) + patch(x)).

    Example:

    ```python
    patch = ModelPatch(bottleneck=8)
    outputs = patch(hidden)  # [batch_size, length, 64] == hidden at initialisation
    ```

    Args:
        bottleneck: channels inside the patch (PeterRec's code: channels / 4;
            the paper: channels / 8).
        residual: add the input to the output (serial patch) or not (parallel).
    """

    def __init__(self, bottleneck, residual=True, **kwargs):
        super().__init__(**kwargs)
        if int(bottleneck) < 1:
            raise ValueError(f"`bottleneck` should be at least 1. Received: bottleneck={bottleneck}.")
        self.bottleneck = int(bottleneck)
        self.residual = bool(residual)
        self.down = keras.layers.Dense(
            self.bottleneck, activation="gelu", dtype=self.dtype_policy, name="down")
        self.up = None  # its width is the input's, known at build

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"The last dimension of the patch's input should be known. "
                             f"Received: input_shape={tuple(input_shape)}.")
        self.up = keras.layers.Dense(
            int(channels), kernel_initializer="zeros", bias_initializer="zeros",
            dtype=self.dtype_policy, name="up")
        self.down.build(tuple(input_shape))
        self.up.build(tuple(input_shape[:-1]) + (self.bottleneck,))

    def call(self, inputs):
        """Applies the patch.

        Args:
            inputs: [batch_size, length, channels] (any leading shape works).

        Returns:
            The same shape as ``inputs``.
        """
        shape = static_shape(inputs)
        if len(shape) < 2:
            raise ValueError(f"`inputs` should have shape [batch_size, length, channels]. "
                             f"Received: `inputs.shape` = {shape}.")
        update = self.up(self.down(inputs))
        return inputs + update if self.residual else update

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"bottleneck": self.bottleneck, "residual": self.residual})
        return config
