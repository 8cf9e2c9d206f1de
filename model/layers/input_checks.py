"""Early checks of tensor arguments, so a wrong input fails before any maths.

Every layer in ``model/`` checks what it receives with these helpers; the error
names the argument, the shape it expected and the shape it got. Only static
shapes are checked (under ``tf.function`` a dimension may be unknown, and then
it is left to the ops themselves).
"""

from keras import backend
from keras import ops


def static_shape(tensor):
    """The static shape of ``tensor`` as a tuple (``None`` for unknown dimensions)."""
    return tuple(None if dim is None else int(dim) for dim in tensor.shape)


def check_rank(tensor, rank, argument, expected):
    """Raise ``ValueError`` unless ``tensor`` has ``rank`` dimensions.

    Args:
        tensor: the tensor to check.
        rank: the number of dimensions it must have.
        argument: the caller's name for it, e.g. ``"word_ids"``.
        expected: the expected shape in words, e.g. ``"[num_words]"``.
    """
    shape = static_shape(tensor)
    if len(shape) != rank:
        raise ValueError(
            f"`{argument}` should have shape {expected} ({rank}-D). "
            f"Received: `{argument}.shape` = {shape}."
        )
    return shape


def check_dim(actual, expected_value, message):
    """Raise ``ValueError(message)`` when two known dimensions differ."""
    if actual is not None and expected_value is not None and actual != expected_value:
        raise ValueError(message)


def check_integer(tensor, argument):
    """Raise ``TypeError`` unless ``tensor`` holds integers (word ids, indices)."""
    dtype = backend.standardize_dtype(tensor.dtype)
    if "int" not in dtype:
        raise TypeError(
            f"`{argument}` should hold integer ids. Received: `{argument}.dtype` = {dtype}."
        )


def as_bool_mask(mask):
    """``mask`` as a boolean tensor (accepts bool, 0/1 integers or 0/1 floats)."""
    if backend.standardize_dtype(mask.dtype) == "bool":
        return mask
    return ops.not_equal(mask, 0)


def check_pooling_inputs(behaviours, behaviour_mask, model_dim):
    """The checks every pooling strategy runs on its two inputs.

    Args:
        behaviours: must be [batch_size, max_len, model_dim].
        behaviour_mask: must be [batch_size, max_len].
        model_dim: the width the pooling layer was built for.
    """
    shape = check_rank(behaviours, 3, "behaviours", "[batch_size, max_len, model_dim]")
    mask_shape = check_rank(behaviour_mask, 2, "behaviour_mask", "[batch_size, max_len]")
    check_dim(
        shape[2],
        model_dim,
        f"`behaviours` should have model_dim={model_dim} as its last dimension. "
        f"Received: `behaviours.shape` = {shape}.",
    )
    for axis in (0, 1):
        check_dim(
            mask_shape[axis],
            shape[axis],
            "`behaviour_mask` should be [batch_size, max_len] like the first two dimensions of "
            f"`behaviours`. Received: `behaviour_mask.shape` = {mask_shape}, "
            f"`behaviours.shape` = {shape}.",
        )
