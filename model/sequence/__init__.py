"""Item-sequence models of PeterRec: the NextItNet / GRec encoder, model patches, heads and inputs.

Importing this package registers every custom layer with Keras, so a saved
``.keras`` file holding them loads back.
"""

from model.sequence.dilated_residual_block import PATCH_KINDS
from model.sequence.dilated_residual_block import DilatedResidualBlock
from model.sequence.finetune_heads import ClassificationHead
from model.sequence.finetune_heads import ItemScoringHead
from model.sequence.item_prediction_loss import item_prediction_loss
from model.sequence.item_softmax import ItemSoftmax
from model.sequence.model_patch import ModelPatch
from model.sequence.nextitnet import DEFAULT_DILATIONS
from model.sequence.nextitnet import NextItNetEncoder
from model.sequence.sequence_inputs import append_cls
from model.sequence.sequence_inputs import left_pad
from model.sequence.sequence_inputs import mask_items
from model.sequence.sequence_inputs import next_item_targets
from model.sequence.user_vector import cls_user_vector

__all__ = [
    "ClassificationHead",
    "DEFAULT_DILATIONS",
    "DilatedResidualBlock",
    "ItemScoringHead",
    "ItemSoftmax",
    "ModelPatch",
    "NextItNetEncoder",
    "PATCH_KINDS",
    "append_cls",
    "cls_user_vector",
    "item_prediction_loss",
    "left_pad",
    "mask_items",
    "next_item_targets",
]
