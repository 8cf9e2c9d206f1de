"""Masked reductions shared by the pooling strategies, safe in half precision.

SUMN masks attention scores by adding ``-1e8 * (1 - mask)``; in float16 that
constant overflows to -inf, and a user with no behaviour at all then gets
``softmax([-inf, ...]) = NaN``. Here scores are masked with ``where`` and
normalised in float32, and weights of absent behaviours are set to exactly 0,
so an all-absent row yields all-zero weights instead of NaN.
"""

import ml_dtypes
from keras import backend
from keras import ops

# Far below any real float32 score, far above float32's -inf.
_MASKED_SCORE = -1e9


def lowest_value(dtype):
    """The most negative finite number of ``dtype`` (float16, bfloat16, float32, ...)."""
    return float(ml_dtypes.finfo(backend.standardize_dtype(dtype)).min)


def masked_softmax(scores, mask):
    """Softmax over the last axis that ignores masked positions.

    Args:
        scores: [batch_size, max_len] attention scores, any float dtype.
        mask: [batch_size, max_len] bool, True where a position is present.

    Returns:
        [batch_size, max_len] float32 weights: zero where ``mask`` is False;
        summing to 1 over present positions, or all zero when a row has none.
    """
    scores = ops.where(mask, ops.cast(scores, "float32"), _MASKED_SCORE)
    # Written out rather than ops.softmax, which warns on every call when a
    # batch's longest history is one behaviour (a softmax over one position).
    exponentials = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
    weights = exponentials / ops.sum(exponentials, axis=-1, keepdims=True)
    return ops.where(mask, weights, 0.0)
