"""Which task owns each convolution weight: Conure's pruning, and owners packed as bits.

An owner array (int, a kernel's shape) holds 0 where a weight is free and t
where task t owns it (``model/layers/kernel_mask_adapter.py``). These functions are the
numpy side: choosing what a task keeps, and storing each task's mask as one
bit per weight (``numpy.packbits``), so a folder of n tasks stores n bits per
convolution weight, not a float mask per task.
"""

import numpy as np


def keep_largest_free(owner, kernel, task, keep_share):
    """Gives task ``task`` the largest-|w| ``keep_share`` of the free weights of one kernel.

    Conure's pruning: after training a task on the free weights, it keeps the
    largest of them by magnitude (per layer, as the official code does) and
    frees the rest for later tasks. Ties at the threshold are broken by
    position, so exactly ``round(keep_share * free)`` weights are kept.

    Args:
        owner: int [...] owners of the kernel's weights, 0 = free.
        kernel: float [...] the kernel's trained values, same shape.
        task: the owner id to give (>= 1).
        keep_share: in [0, 1], the share of the free weights kept.

    Returns:
        A new owner array.
    """
    owner = np.asarray(owner)
    free = np.flatnonzero(owner.ravel() == 0)
    keep = int(round(keep_share * len(free)))
    result = owner.copy()
    if keep == 0:
        return result
    magnitude = np.abs(np.asarray(kernel, dtype=np.float64).ravel()[free])
    # Stable sort of -|w|: equal magnitudes keep their order of position.
    chosen = free[np.argsort(-magnitude, kind="stable")[:keep]]
    result.ravel()[chosen] = task
    return result


def pack_owner(owner, num_tasks):
    """Owner array -> uint8 [num_tasks, ceil(size / 8)]: row t-1 is task t's mask, one bit per weight."""
    flat = np.asarray(owner).ravel()
    return np.stack([np.packbits(flat == task) for task in range(1, num_tasks + 1)]) \
        if num_tasks else np.zeros((0, (flat.size + 7) // 8), dtype=np.uint8)


def unpack_owner(packed, shape):
    """The inverse of ``pack_owner``: uint8 [num_tasks, bytes] -> int32 owner array of ``shape``.

    Raises:
        ValueError: two tasks claim the same weight, or the bits do not fit ``shape``.
    """
    size = int(np.prod(shape))
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 2 or packed.shape[1] != (size + 7) // 8:
        raise ValueError(f"packed masks of shape {packed.shape} do not fit a kernel of shape "
                         f"{tuple(shape)}")
    owner = np.zeros(size, dtype=np.int32)
    claimed = np.zeros(size, dtype=bool)
    for row, bits in enumerate(packed):
        mask = np.unpackbits(bits, count=size).astype(bool)
        if (mask & claimed).any():
            raise ValueError(f"the masks of task {row + 1} and an earlier task overlap")
        owner[mask] = row + 1
        claimed |= mask
    return owner.reshape(shape)


def owner_shares(owner, num_tasks):
    """Share of one kernel's weights owned by each task 1..num_tasks, and the free share."""
    flat = np.asarray(owner).ravel()
    size = max(flat.size, 1)
    owned = [float(np.count_nonzero(flat == task)) / size for task in range(1, num_tasks + 1)]
    return owned, float(np.count_nonzero(flat == 0)) / size
