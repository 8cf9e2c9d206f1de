"""SUMN's behavioural-consistency objective: softmax cross-entropy against the target words.

The target of a user is a distribution q over the words of its target window
(uniform 1/len, or log(1 + count) weighted), stored sparsely: ``target_words``
and ``target_weights`` [batch_size, max_targets], padded with word 0 and
weight 0. The cross-entropy -sum_j q_j log_softmax(logits)[word_j] is read off
the logits with ``take_along_axis``: no dense [batch_size, vocabulary_size]
target is built. Nothing is reduced over the batch: the training loop divides
by the GLOBAL batch size (``tf.distribute`` convention).
"""

from keras import ops

from model.input_checks import check_dim
from model.input_checks import check_integer
from model.input_checks import check_rank


def per_hop_consistency_loss(logits, target_words, target_weights):
    """Cross-entropy of every hop's prediction against the user's target words.

    Args:
        logits: [batch_size, num_hops, vocabulary_size] decoder logits.
        target_words: [batch_size, max_targets] integer word ids of the target
            window, padded with 0.
        target_weights: [batch_size, max_targets] target probabilities q,
            padded with 0; each row sums to 1.

    Returns:
        [batch_size, num_hops] float32 losses, one per user and hop.
    """
    logits_shape = check_rank(logits, 3, "logits", "[batch_size, num_hops, vocabulary_size]")
    words_shape = check_rank(target_words, 2, "target_words", "[batch_size, max_targets]")
    weights_shape = check_rank(target_weights, 2, "target_weights", "[batch_size, max_targets]")
    check_integer(target_words, "target_words")
    for axis in (0, 1):
        check_dim(
            weights_shape[axis],
            words_shape[axis],
            "`target_weights` should have the shape of `target_words`. Received: "
            f"`target_weights.shape` = {weights_shape}, `target_words.shape` = {words_shape}.",
        )
    check_dim(
        words_shape[0],
        logits_shape[0],
        "`target_words` and `logits` should have the same batch size. Received: "
        f"`target_words.shape` = {words_shape}, `logits.shape` = {logits_shape}.",
    )

    logits = ops.cast(logits, "float32")
    target_weights = ops.cast(target_weights, "float32")
    shape = ops.shape(logits)
    num_targets = ops.shape(target_words)[1]
    indices = ops.broadcast_to(ops.expand_dims(ops.cast(target_words, "int32"), 1), (shape[0], shape[1], num_targets))
    # log_softmax(logits)[w] = logits[w] - logsumexp(logits): gather first, so
    # the full [batch, hops, vocabulary] log-softmax is never materialised.
    target_logits = ops.take_along_axis(logits, indices, axis=-1)  # [batch, hops, max_targets]
    log_normaliser = ops.logsumexp(logits, axis=-1, keepdims=True)  # [batch, hops, 1]
    weights = ops.expand_dims(target_weights, 1)  # [batch, 1, max_targets]
    # Padded targets have weight 0 and drop out of the sum.
    return -ops.sum(weights * (target_logits - log_normaliser), axis=-1)


def behavioural_consistency_loss(logits, target_words, target_weights):
    """Per-user SUMN loss: the mean over hops of ``per_hop_consistency_loss``.

    Args:
        logits: [batch_size, num_hops, vocabulary_size] decoder logits.
        target_words: [batch_size, max_targets] integer word ids, padded with 0.
        target_weights: [batch_size, max_targets] target probabilities, padded with 0.

    Returns:
        [batch_size] float32 losses (not reduced over the batch).
    """
    return ops.mean(per_hop_consistency_loss(logits, target_words, target_weights), axis=-1)
