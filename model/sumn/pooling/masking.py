"""Masked reductions shared by the pooling strategies, safe in half precision.

SUMN masks attention scores by adding ``-1e8 * (1 - mask)``; in float16 that
constant overflows to -inf, and a user with no behaviour at all then gets
``softmax([-inf, ...]) = NaN``. Here scores are masked with ``where`` and
normalised in float32, and weights of absent behaviours are set to exactly 0,
so an all-absent row yields all-zero weights instead of NaN.

``present_rows``, ``present_softmax`` and ``sum_by_user`` let attention
pooling work on the present behaviours only, so its cost follows the real
histories rather than the batch's longest one.
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


def present_rows(behaviours, mask):
    """The present behaviours as compact rows, with where each one sits in the grid.

    Attention pooling projects and reads every behaviour; doing that on the
    [batch_size, max_len] grid would spend most of the work on padding when
    histories differ in length, so the strategies gather the present rows once
    and work on those.

    Args:
        behaviours: [batch_size, max_len, model_dim] behaviour vectors.
        mask: [batch_size, max_len] bool, True where a behaviour is present.

    Returns:
        A tuple ``(rows, slots, users)``: ``rows`` [num_present, model_dim]
        the present behaviour vectors in grid order (user by user, oldest
        first); ``slots`` [num_present] int32 their index in the flattened
        grid; ``users`` [num_present] int32 the user each belongs to (sorted).
    """
    max_len = ops.shape(mask)[1]
    slots = ops.nonzero(ops.reshape(mask, (-1,)))[0]
    rows = ops.take(ops.reshape(behaviours, (-1, ops.shape(behaviours)[-1])), slots, axis=0)
    users = ops.floor_divide(slots, ops.cast(max_len, slots.dtype))
    return rows, slots, users


def present_softmax(scores, slots, mask):
    """``masked_softmax`` of one score per present row, per user.

    Args:
        scores: [num_present] scores of the rows from ``present_rows``.
        slots: [num_present] their grid slots (from ``present_rows``).
        mask: [batch_size, max_len] bool, the grid's mask.

    Returns:
        [num_present] float32 weights; each user's weights sum to 1.
    """
    shape = ops.shape(mask)
    # Scores are scalars, so the softmax itself can run on the grid cheaply,
    # sharing masked_softmax's semantics (empty users get no weight).
    grid_scores = ops.scatter(
        ops.expand_dims(slots, -1), ops.cast(scores, "float32"), (shape[0] * shape[1],)
    )
    weights = masked_softmax(ops.reshape(grid_scores, shape), mask)
    return ops.take(ops.reshape(weights, (-1,)), slots)


def sum_by_user(rows, users, batch_size):
    """Sums the rows of each user: [num_present, dim] -> [batch_size, dim] (zeros for none).

    ``users`` is sorted (``present_rows`` yields rows user by user), so the
    sorted segment-sum kernel serves; it is faster than the unsorted one on
    CPU and its gradient is a plain gather.
    """
    sums = ops.segment_sum(rows, users, sorted=True)  # rows up to the last user with behaviours
    return ops.pad(sums, [[0, batch_size - ops.shape(sums)[0]], [0, 0]])
