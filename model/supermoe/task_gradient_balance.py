"""Balancing the tasks' gradients on the weights they share (``--task_balance``).

Why: a multi-task step sums the tasks' gradients on the shared encoder, and
Adam divides each weight's step by the root of its gradients' running second
moment. On MovieLens-1M a profile task's gradient (a cross-entropy of 64
users read at one CLS position) is several times larger and noisier than
next-item prediction's (a mean over ~6,000 predicted positions), so it fills
that second moment and next-item's share of every shared step shrinks:
with next_item + gender at weight 1 each, next-item NDCG@10 after 300 steps
fell from 0.089 (alone) to 0.022; with gender's weight at 0, 0.088.

``loss_weights``: the plain weighted sum of losses, ``sum_t w_t L_t``.

``equal_gradient_norm``: task t's gradient g_t on the shared weights (those
more than one task's loss reaches) is rescaled to

    w_t * mean_s ||g_s|| / ||g_t|| * g_t

so every task (at w_t = 1) moves the shared weights with the same norm per
step, and ``--task_weights`` become each task's share of that update. This
is GradNorm's balance point (Chen et al., ICML 2018: equal gradient norms
on the shared layer when its asymmetry alpha is 0), computed exactly every
step instead of learned through loss weights; MetaBalance (He et al.,
WWW 2022) rescales recommendation tasks' gradient magnitudes in the same
way, per step, against one target task. A task's own weights (its head, its
router under per-task gates) keep their gradient: Adam is invariant to its
scale there.
"""

import tensorflow as tf

TASK_BALANCES = ("loss_weights", "equal_gradient_norm")


def add_gradients(parts):
    """The sum of one variable's gradients from several losses (None: that loss does not reach it).

    Returns None when no loss reaches the variable. ``IndexedSlices`` (an
    embedding's rows) stay sparse: their rows are concatenated, which is
    their sum.
    """
    parts = [part for part in parts if part is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, tf.IndexedSlices) for part in parts):
        return tf.IndexedSlices(tf.concat([part.values for part in parts], 0),
                                tf.concat([part.indices for part in parts], 0),
                                parts[0].dense_shape)
    return tf.add_n([tf.convert_to_tensor(part) for part in parts])


def shared_positions(per_task_gradients):
    """Indices of the variables that more than one task's gradient reaches (a static fact of the graph)."""
    counts = [sum(gradients[index] is not None for gradients in per_task_gradients)
              for index in range(len(per_task_gradients[0]))]
    return [index for index, count in enumerate(counts) if count > 1]


def equal_norm_factors(shared_norms, task_weights):
    """float32 [tasks]: ``w_t * mean(norms) / norm_t`` (0 for a task whose gradient is 0).

    Args:
        shared_norms: float32 [tasks], each task's gradient norm on the shared weights.
        task_weights: [tasks] floats, w_t.
    """
    norms = tf.convert_to_tensor(shared_norms, tf.float32)
    target = tf.reduce_mean(norms)
    weights = tf.constant(task_weights, tf.float32)
    return tf.where(norms > 0.0, weights * target / tf.maximum(norms, 1e-30), 0.0)
