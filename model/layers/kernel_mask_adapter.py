"""Conure's binary masks on a residual block's convolution kernels, one owner per weight.

Conure (Yuan et al., SIGIR 2021) gives each task a binary mask of every
dilated-convolution kernel; the masks of different tasks are disjoint, and
task j runs with the union of the masks of tasks 1..j. Rather than one 0/1
tensor per task, each kernel carries one integer tensor ``owner`` of the
kernel's shape: 0 where the weight is free, t where task t owns it. Then for
the active task t

    frozen    F = 0 < owner < t              (earlier tasks' weights)
    trainable T = owner == t  [or owner == 0 while the free weights train]
    kernel_eff  = stop_gradient(W) * F + W * T

which is the official code's ``stop_grad(W * F) + W * (1 - F)`` before
pruning and ``sum_{j<t} stop_grad(W * M_j) + W * M_t`` after it. Serving task
j is the same expression with t = j and nothing free: ``W * (0 < owner <= j)``.
Gradients reach W only through ``T``, so weights of earlier tasks never
receive one: their outputs cannot change while later tasks train.

Until ``activate`` is called the active task is 0, which owns every free
weight: a fresh adapter runs the block with its whole kernel.

The active task and whether free weights take part are variables, not
Python attributes, so a traced ``tf.function`` follows them when a job
switches tasks.
"""

import keras
from keras import ops

from model.layers.block_adapter import BlockAdapter

UNITS = (0, 1)


@keras.saving.register_keras_serializable(package="uur")
class KernelMaskAdapter(BlockAdapter):
    """The owner tensors of one block's two kernels and which task runs.

    Example:

    ```python
    adapter = KernelMaskAdapter(name="adapter")
    block = DilatedResidualBlock(channels=64, dilation=2, adapter=adapter)
    block(hidden)                       # builds owner tensors, all 0 (free)
    adapter.set_owner(0, owner_of_conv_1)
    adapter.activate(task=2, include_free=False)   # serve task 2: masks of tasks 1 and 2
    ```
    """

    def build_for_block(self, channels, kernel_shape):
        self.owners = [
            self.add_weight(shape=kernel_shape, dtype="int32", initializer="zeros",
                            trainable=False, name=f"owner_{unit}")
            for unit in UNITS]
        self.task = self.add_weight(shape=(), dtype="int32", initializer="zeros",
                                    trainable=False, name="task")
        self.include_free = self.add_weight(shape=(), dtype="bool", initializer="zeros",
                                            trainable=False, name="include_free")
        self.built = True

    def build(self, input_shape=None):
        # Built by the block (``build_for_block``), which knows the kernel shape.
        pass

    def activate(self, task, include_free):
        """Runs the block as task ``task`` (>= 1); ``include_free``: free weights train too."""
        self.task.assign(int(task))
        self.include_free.assign(bool(include_free))

    def set_owner(self, unit, owner):
        """Sets convolution ``unit``'s owners: int [kernel_size, channels, channels], 0 = free."""
        self.owners[unit].assign(owner)

    def owner(self, unit):
        """The owner tensor of convolution ``unit`` (int32, the kernel's shape)."""
        return self.owners[unit]

    def adapt_kernel(self, unit, kernel):
        owner = ops.convert_to_tensor(self.owners[unit])
        task = ops.convert_to_tensor(self.task)
        frozen = ops.logical_and(ops.greater(owner, 0), ops.less(owner, task))
        trainable = ops.logical_or(
            ops.equal(owner, task),
            ops.logical_and(ops.convert_to_tensor(self.include_free), ops.equal(owner, 0)))
        frozen = ops.cast(frozen, kernel.dtype)
        trainable = ops.cast(trainable, kernel.dtype)
        return ops.stop_gradient(kernel) * frozen + kernel * trainable
