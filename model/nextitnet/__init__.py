"""NextItNet / GRec (PeterRec's backbone): dilated residual blocks, item softmax, sequence inputs.

Importing this package registers every layer with Keras, so a saved
``.keras`` file holding them loads back.
"""

from model.nextitnet.dilated_residual_block import DilatedResidualBlock
from model.nextitnet.encoder import DEFAULT_DILATIONS
from model.nextitnet.encoder import NextItNetEncoder
from model.nextitnet.item_prediction_loss import item_prediction_loss
from model.nextitnet.item_softmax import ItemSoftmax
from model.nextitnet.sequence_inputs import append_cls
from model.nextitnet.sequence_inputs import left_pad
from model.nextitnet.sequence_inputs import mask_items
from model.nextitnet.sequence_inputs import next_item_targets
from model.nextitnet.user_vector import cls_user_vector

__all__ = [
    "DEFAULT_DILATIONS",
    "DilatedResidualBlock",
    "ItemSoftmax",
    "NextItNetEncoder",
    "append_cls",
    "cls_user_vector",
    "item_prediction_loss",
    "left_pad",
    "mask_items",
    "next_item_targets",
]
