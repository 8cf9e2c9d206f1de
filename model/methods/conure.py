"""Conure (Yuan et al., SIGIR 2021) as a method: binary kernel masks in one shared backbone.

Each block gets a ``KernelMaskAdapter`` (``model/layers/kernel_mask_adapter.py``); which weights
train depends on the task's place in the sequence, as in the official code:

* task 1 (next-item prediction, the pretraining objective): everything
  trains, the kernels through their task-1 mask;
* every later task: only the convolution kernels (through the adapter, which
  lets gradients reach the free or task-owned weights only) and the task's
  head; embeddings, LayerNorms and convolution biases stay as task 1 left them.

Pruning and the two training phases of each task are in
``model/continual/conure_learning.py``; this class is what a ``TaskModel``
needs to build and train one Conure task.
"""

from model.layers.kernel_mask_adapter import KernelMaskAdapter
from model.methods.method import Method

DEFAULT_PRUNE_RATIO = 0.7


class Conure(Method):
    name = "conure"
    summary = ("one backbone for every task: each task keeps a binary mask of the free "
               "convolution weights, earlier tasks' weights are frozen")
    continual = True
    kernel_masks = True

    def block_adapter(self, block_index, description):
        return KernelMaskAdapter(name="adapter")

    def trainable_variables(self, task_model, description):
        head = list(task_model.head.trainable_variables)
        if description["task_index"] == 1:
            return list(task_model.encoder.backbone_variables()) + head
        return kernel_variables(task_model.encoder) + head

    def description_entries(self, settings):
        return {"patch": "none", "prune_ratio": float(settings.prune_ratio)}


def kernel_variables(encoder):
    """The convolution kernels of every block, block by block, conv_1 before conv_2."""
    return [conv.kernel for block in encoder.blocks for conv in block.convolutions]


def kernel_names(encoder):
    """``block_<i>/conv_<u>`` of each kernel, in ``kernel_variables`` order (for messages)."""
    return [f"block_{index}/conv_{unit + 1}" for index, block in enumerate(encoder.blocks)
            for unit in range(len(block.convolutions))]
