"""Sampled negatives for PeterRec's ranking protocol: items a user never met, drawn uniformly.

The positive is ranked among ``SAMPLED_NEGATIVES`` (99) such items for HR@5 and
MRR@5 (Yuan et al., SIGIR 2020); the authors note that sampled metrics behave
like AUC, which is why the item task also reports full-ranking figures.
"""

import numpy as np

from contracts import schema

SAMPLED_NEGATIVES = 99


def _seen_keys(items, targets, num_item_ids):
    """Sorted int64 keys ``row * num_item_ids + item`` of every item each user met."""
    rows = np.concatenate([items.value_rowids().numpy(), targets.value_rowids().numpy()])
    values = np.concatenate([items.values.numpy(), targets.values.numpy()]).astype(np.int64)
    return np.unique(rows * num_item_ids + values)


def sample_unseen_items(items, targets, num_item_ids, count=SAMPLED_NEGATIVES, seed=0):
    """``count`` distinct-from-history uniform items per user: int32 [num_users, count].

    Vectorised rejection sampling: draws, drops the user's own items, redraws
    where too few remain.
    """
    rng = np.random.default_rng(seed)
    num_users = int(items.nrows())
    seen = _seen_keys(items, targets, num_item_ids)
    result = np.zeros((num_users, count), dtype=np.int32)
    missing = np.arange(num_users)
    filled = np.zeros(num_users, dtype=np.int64)
    while len(missing):
        draws = rng.integers(schema.FIRST_ITEM_ID, num_item_ids, size=(len(missing), 2 * count))
        keys = missing[:, None].astype(np.int64) * num_item_ids + draws
        position = np.searchsorted(seen, keys).clip(max=max(len(seen) - 1, 0))
        unseen = seen[position] != keys if len(seen) else np.ones_like(keys, dtype=bool)
        still = []
        for row, user in enumerate(missing):
            fresh = draws[row][unseen[row]][: count - filled[user]]
            result[user, filled[user]:filled[user] + len(fresh)] = fresh
            filled[user] += len(fresh)
            if filled[user] < count:
                still.append(user)
        missing = np.asarray(still, dtype=np.int64)
    return result
