"""The optimizer every training job builds: Adam on TensorFlow's fused kernel, loss-scaled under float16."""

import keras

from model.training.fused_adam import FusedAdam


def build_optimizer(learning_rate, mixed_precision, variables, optimizer_class=FusedAdam):
    """Adam (SUMN's optimizer), loss-scaled under float16, with its slots built.

    ``FusedAdam``: Keras Adam's maths and slot variables (checkpoints of
    either load into the other) with TensorFlow's fused update kernel.
    ``optimizer_class`` swaps in another Keras optimizer (the bench compares
    ``keras.optimizers.Adam``).
    """
    optimizer = optimizer_class(learning_rate=learning_rate)
    if mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(variables)
    return optimizer
