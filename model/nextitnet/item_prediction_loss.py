"""The item-prediction loss of NextItNet / GRec pretraining: full or sampled softmax.

This module uses TensorFlow directly: ``keras.ops`` has no sampled softmax,
and ``tf.nn.sampled_softmax_loss`` with its log-uniform sampler is what the
PeterRec code trains with.
"""

import tensorflow as tf

from model.layers.input_checks import check_rank


def _full_softmax_logits(hidden, softmax_layer):
    # float32 whatever the layer's policy: a softmax over many items in float16
    # loses the small probabilities the loss is made of.
    kernel = tf.cast(softmax_layer.kernel, tf.float32)
    bias = tf.cast(softmax_layer.bias, tf.float32)
    return tf.matmul(tf.cast(hidden, tf.float32), kernel, transpose_b=True) + bias


def item_prediction_loss(hidden, targets, weights, softmax_layer, num_sampled=0, training=True):
    """Cross-entropy of the target item at each position, times its weight.

    Training with ``num_sampled > 0`` uses ``tf.nn.sampled_softmax_loss``:
    ``num_sampled`` negatives from the log-uniform (Zipfian) sampler, which
    fits because real items are indexed by descending frequency
    (``schema.FIRST_ITEM_ID`` onwards), with accidental hits removed.
    Evaluation (``training=False``) and ``num_sampled == 0`` use the full
    softmax over every item id.

    The special ids (pad, mask, CLS) are never positives: positions whose
    target is one of them must carry weight 0 (``next_item_targets`` and
    ``mask_items`` do that). They are left among the classes rather than
    masked out of the logits: training pushes their scores down at once and
    keeping them costs three columns.

    Args:
        hidden: float [num_positions, dim] hidden states.
        targets: int [num_positions] item ids to predict.
        weights: float [num_positions] weight of each position (0 ignores it).
        softmax_layer: a built ``ItemSoftmax``.
        num_sampled: negatives per batch for the sampled softmax; 0 for the full softmax.
        training: False always uses the full softmax.

    Returns:
        float32 [num_positions] weighted losses.
    """
    check_rank(hidden, 2, "hidden", "[num_positions, dim]")
    check_rank(targets, 1, "targets", "[num_positions]")
    check_rank(weights, 1, "weights", "[num_positions]")
    num_sampled = int(num_sampled)
    if num_sampled < 0:
        raise ValueError(f"`num_sampled` should be 0 (full softmax) or positive. "
                         f"Received: num_sampled={num_sampled}.")
    num_classes = softmax_layer.num_item_ids
    if num_sampled >= num_classes:
        raise ValueError(f"`num_sampled` should be below the {num_classes} item ids. "
                         f"Received: num_sampled={num_sampled}.")
    weights = tf.cast(weights, tf.float32)
    if training and num_sampled > 0:
        losses = tf.nn.sampled_softmax_loss(
            weights=tf.cast(softmax_layer.kernel, tf.float32),
            biases=tf.cast(softmax_layer.bias, tf.float32),
            labels=tf.cast(tf.reshape(targets, [-1, 1]), tf.int64),
            inputs=tf.cast(hidden, tf.float32),
            num_sampled=num_sampled,
            num_classes=num_classes,
            remove_accidental_hits=True)  # default sampler: log-uniform, unique
    else:
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(targets, tf.int32), logits=_full_softmax_logits(hidden, softmax_layer))
    return losses * weights
