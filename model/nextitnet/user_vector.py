"""The user vector of a fine-tuning task, read at the CLS token(s) of the encoded sequence."""

from keras import ops

from contracts import schema
from model.layers.input_checks import check_integer
from model.layers.input_checks import check_rank


def cls_user_vector(hidden, item_ids, causal):
    """PeterRec's user vector from hidden states of a sequence that carries CLS tokens.

    With left padding (``append_cls``) a causal sequence ``[items..., CLS]``
    ends with its CLS, whose state has read the whole sequence: u = h_last.
    A non-causal sequence ``[CLS, items..., CLS]`` has one CLS at its first
    real position and one at the last: u = h_first + h_last.

    Args:
        hidden: [batch_size, length, dim] encoder states.
        item_ids: int [batch_size, length] the encoder's input, 0 at padding.
        causal: whether the encoder is causal (NextItNet) or not (GRec).

    Returns:
        [batch_size, dim] user vectors.
    """
    check_rank(hidden, 3, "hidden", "[batch_size, length, dim]")
    check_rank(item_ids, 2, "item_ids", "[batch_size, length]")
    check_integer(item_ids, "item_ids")
    hidden = ops.convert_to_tensor(hidden)
    last = hidden[:, -1, :]
    if causal:
        return last
    # argmax returns the first maximum: the first non-padding position.
    first_position = ops.argmax(ops.cast(ops.not_equal(item_ids, schema.ITEM_PAD_ID), "int32"), axis=1)
    first = ops.take_along_axis(hidden, ops.reshape(first_position, (-1, 1, 1)), axis=1)[:, 0, :]
    return first + last
