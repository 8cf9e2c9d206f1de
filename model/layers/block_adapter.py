"""The one hook of a residual block where a method inserts its module.

A ``BlockAdapter`` is a Keras layer that a block calls at four fixed places of
each of its convolution units (``unit`` 0 and 1: the two convolutions of a
NextItNet block), in this order:

    kernel = adapter.adapt_kernel(unit, conv.kernel)        # e.g. a task's binary kernel mask
    hidden = convolution(inputs, kernel) + bias
    hidden = adapter.after_convolution(unit, hidden, inputs) # e.g. a serial or parallel patch
    hidden = LayerNorm(hidden)
    hidden = adapter.after_norm(unit, hidden)                # e.g. a patch after the LayerNorm
    hidden = ReLU(hidden)
    hidden = adapter.after_activation(unit, hidden)         # e.g. a task's soft mask

Every place defaults to the identity, so an adapter overrides only where its
method acts. Which task the adapter serves is the adapter's own state (a
per-task adapter, or one that holds a row per task and an active task): the
block knows nothing of tasks or methods. A block without an adapter skips the
hook entirely, so plain pretraining pays nothing for it.

Example:

```python
class ScaleAfterActivation(BlockAdapter):
    def after_activation(self, unit, hidden):
        return 0.5 * hidden

block = DilatedResidualBlock(channels=64, dilation=2, adapter=ScaleAfterActivation())
```
"""

import keras


@keras.saving.register_keras_serializable(package="uur")
class BlockAdapter(keras.layers.Layer):
    """The identity at every place of the hook; methods subclass it and override some."""

    def build_for_block(self, channels, kernel_shape):
        """Creates the adapter's weights for a block of ``channels`` and kernels of ``kernel_shape``.

        Called once by the block's ``build``; ``kernel_shape`` is
        ``(kernel_size, channels, channels)``.
        """
        self.built = True

    def adapt_kernel(self, unit, kernel):
        """The kernel convolution ``unit`` runs with: [kernel_size, channels, channels]."""
        return kernel

    def after_convolution(self, unit, hidden, inputs):
        """[batch, length, channels] after convolution ``unit``; ``inputs`` is what it read."""
        return hidden

    def after_norm(self, unit, hidden):
        """[batch, length, channels] after the LayerNorm of ``unit``."""
        return hidden

    def after_activation(self, unit, hidden):
        """[batch, length, channels] after the ReLU of ``unit``."""
        return hidden
