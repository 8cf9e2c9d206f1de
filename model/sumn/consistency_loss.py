"""SUMN's behavioural-consistency objective: softmax cross-entropy against the target words.

The target of a user is a distribution q over the words of its target window
(uniform 1/len, or log(1 + count) weighted), stored sparsely: ``target_words``
and ``target_weights`` [batch_size, max_targets], padded with word 0 and
weight 0. The cross-entropy -sum_j q_j log_softmax(logits)[word_j] is read off
the logits with ``take_along_axis``: no dense [batch_size, vocabulary_size]
target is built. Nothing is reduced over the batch: the training loop divides
by the GLOBAL batch size (``tf.distribute`` convention).

``projected_consistency_loss`` is the training form: the decoder's last
(vocabulary) layer fused with this loss, one hop at a time, so the
[batch_size, num_hops, vocabulary_size] logits and their gradient never exist
at once (457 MB each at SUMN's paper shapes). It is TensorFlow, not
``keras.ops``: it needs a hand-written gradient and a loop whose iterations do
not overlap (``tf.while_loop(parallel_iterations=1)``), which ``keras.ops``
cannot promise.
"""

import tensorflow as tf
from keras import ops

from model.layers.input_checks import check_dim
from model.layers.input_checks import check_integer
from model.layers.input_checks import check_rank


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


def check_vocabulary_layer_inputs(hidden, kernel, target_words, loss_weights):
    """Ranks, dtype and batch sizes of a fused vocabulary-layer loss's inputs (shapes as below)."""
    hidden_shape = check_rank(hidden, 3, "hidden", "[batch_size, num_hops, width]")
    words_shape = check_rank(target_words, 2, "target_words", "[batch_size, max_targets]")
    check_rank(kernel, 2, "kernel", "[width, vocabulary_size]")
    check_rank(loss_weights, 2, "loss_weights", "[batch_size, num_hops]")
    check_integer(target_words, "target_words")
    check_dim(
        words_shape[0],
        hidden_shape[0],
        "`target_words` and `hidden` should have the same batch size. Received: "
        f"`target_words.shape` = {words_shape}, `hidden.shape` = {hidden_shape}.",
    )


def projected_consistency_loss(
    hidden, kernel, bias, target_words, target_weights, loss_weights, matmul_dtype="float32"
):
    """The weighted SUMN loss of ``hidden @ kernel + bias``, without all the logits at once.

    Equals ``sum(loss_weights * per_hop_consistency_loss(hidden @ kernel +
    bias, target_words, target_weights))`` and its gradient, computed hop by
    hop: each hop's [batch_size, vocabulary_size] logits live only inside
    their iteration, and the gradients for ``hidden``, ``kernel`` and ``bias``
    are formed there too (softmax minus target, like
    ``tf.nn.softmax_cross_entropy_with_logits``), so the backward pass only
    scales them. Peak memory is one kernel-sized gradient (summed in place,
    a block of rows at a time) plus a few [batch_size, vocabulary_size]
    buffers, instead of several [batch_size, num_hops, vocabulary_size] ones;
    no logit is computed twice.
    The softmax, the losses and the sums of the gradients run in float32;
    the three [.., vocabulary_size] matmuls run in ``matmul_dtype``.

    ``loss_weights`` are constants (the training loop's 1 / (num_hops x
    global batch size)); the per-hop losses are returned for logging and
    carry no gradient.

    Args:
        hidden: [batch_size, num_hops, width] input of the vocabulary layer.
        kernel: [width, vocabulary_size] its kernel.
        bias: [vocabulary_size] its bias.
        target_words: [batch_size, max_targets] integer word ids, padded with 0.
        target_weights: [batch_size, max_targets] target probabilities, padded with 0.
        loss_weights: [batch_size, num_hops] weight of each user's hop in the sum.
        matmul_dtype: ``"float32"`` (exact), or ``"bfloat16"``: faster on
            CPUs with AVX512-BF16 (matmuls 1.7-2.6x on the 2-core bench
            machine) and on GPUs, with bfloat16 rounding of the logits and
            of the gradients' terms (the ``mixed_bfloat16`` policy's choice,
            see the decoder).

    Returns:
        ``(loss, per_hop)``: the float32 scalar weighted sum (differentiable
        with respect to ``hidden``, ``kernel`` and ``bias``) and the
        [batch_size, num_hops] float32 per-hop losses (not differentiable).
    """
    check_vocabulary_layer_inputs(hidden, kernel, target_words, loss_weights)
    hidden = tf.cast(hidden, tf.float32)
    kernel = tf.cast(kernel, tf.float32)
    bias = tf.cast(bias, tf.float32)
    target_words = tf.cast(target_words, tf.int32)
    target_weights = tf.cast(target_weights, tf.float32)
    loss_weights = tf.cast(loss_weights, tf.float32)
    if matmul_dtype not in _PROJECTED_LOSSES:
        raise ValueError(
            f"`matmul_dtype` should be one of {sorted(_PROJECTED_LOSSES)}. Received: matmul_dtype={matmul_dtype}."
        )
    loss, per_hop = _PROJECTED_LOSSES[matmul_dtype](
        hidden, kernel, bias, target_words, target_weights, loss_weights
    )
    return loss, tf.stop_gradient(per_hop)


# Rows of the kernel gradient added at a time (see ``add_kernel_terms``): at
# width 512 and vocabulary 178,422, eight blocks of 46 MB. Halving the block
# from 128 rows took about 0.1 GB off the peak at SUMN's paper shapes, at no
# measurable cost in step time (bench/train.py).
_KERNEL_ROW_BLOCK = 64


def _projected_loss_in(matmul_dtype):
    """``_projected_loss`` with its matmuls in ``matmul_dtype`` (a custom gradient takes tensors only)."""

    @tf.custom_gradient
    def projected_loss(hidden, kernel, bias, target_words, target_weights, loss_weights):
        return _projected_loss(
            tf.as_dtype(matmul_dtype), hidden, kernel, bias, target_words, target_weights, loss_weights
        )

    return projected_loss


def _projected_loss(matmul_dtype, hidden, kernel, bias, target_words, target_weights, loss_weights):
    def matmul(a, b, **kwargs):  # float32 out, whatever the operands' dtype
        return tf.cast(tf.matmul(tf.cast(a, matmul_dtype), tf.cast(b, matmul_dtype), **kwargs), tf.float32)

    batch_size = tf.shape(hidden)[0]
    num_hops = tf.shape(hidden)[1]
    hidden_by_hop = tf.transpose(hidden, [1, 0, 2])  # [hops, batch, width]
    weights_by_hop = tf.transpose(loss_weights)  # [hops, batch]
    target_mass = tf.reduce_sum(target_weights, axis=1)  # [batch], 1 for a real user
    target_distribution = tf.math.divide_no_nan(target_weights, target_mass[:, None])  # q / mass
    matmul_kernel = tf.cast(kernel, matmul_dtype)  # once, not per hop (a no-op in float32)
    # (user, word) pairs where the targets' mass comes off the softmax gradient.
    users = tf.broadcast_to(tf.range(batch_size)[:, None], tf.shape(target_words))
    target_cells = tf.stack([users, target_words], axis=-1)  # [batch, max_targets, 2]

    def hop_terms(index):
        """Hop ``index``'s losses [batch] and its terms of the three gradients."""
        inputs = hidden_by_hop[index]  # [batch, width]
        logits = matmul(inputs, matmul_kernel) + bias  # [batch, vocabulary]
        probabilities = tf.nn.softmax(logits)
        # log-sum-exp read off the softmax at its largest entry (>= 1 / vocabulary).
        log_normaliser = tf.reduce_max(logits, axis=1) - tf.math.log(tf.reduce_max(probabilities, axis=1))
        target_logits = tf.gather(logits, target_words, batch_dims=1)  # [batch, max_targets]
        # -sum_j q_j (logit_j - lse) = mass * lse - sum_j q_j logit_j
        losses = target_mass * log_normaliser - tf.reduce_sum(target_weights * target_logits, axis=1)
        # d loss / d logits, times this hop's weight, = scale * (softmax - q / mass)
        # with scale = weight * mass per user; the scale goes on the small
        # operands of the matmuls below, never on a [batch, vocabulary] one.
        scale = weights_by_hop[index] * target_mass  # [batch]
        with tf.control_dependencies([log_normaliser]):  # then the scatter may reuse the softmax's buffer
            unscaled_gradient = tf.tensor_scatter_nd_sub(probabilities, target_cells, target_distribution)
        bias_term = tf.squeeze(tf.matmul(scale[None, :], unscaled_gradient), 0)
        unscaled_gradient = tf.cast(unscaled_gradient, matmul_kernel.dtype)  # once for both matmuls
        hidden_term = scale[:, None] * matmul(unscaled_gradient, matmul_kernel, transpose_b=True)
        return losses, inputs * scale[:, None], unscaled_gradient, bias_term, hidden_term

    def add_kernel_terms(kernel_gradient, scaled_inputs, unscaled_gradient):
        # Added into the running sum in place, a block of rows at a time, one
        # block after another: the term alive is a block, and there is never
        # a second kernel-sized buffer (measured: -190 MB at SUMN's paper
        # shapes against summing blocks and concatenating them). InplaceAdd
        # writes into its input's buffer; that is safe here because the sum
        # is a fresh matmul output that nothing but this loop reads.
        for start, end in row_blocks:
            with tf.control_dependencies([kernel_gradient]):
                term = matmul(scaled_inputs[:, start:end], unscaled_gradient, transpose_a=True)
            kernel_gradient = tf.raw_ops.InplaceAdd(x=kernel_gradient, i=tf.range(start, end), v=term)
        return kernel_gradient

    def hop(index, kernel_gradient, bias_gradient, hidden_gradients, losses):
        hop_losses, scaled_inputs, unscaled_gradient, bias_term, hidden_term = hop_terms(index)
        return (
            index + 1,
            add_kernel_terms(kernel_gradient, scaled_inputs, unscaled_gradient),
            bias_gradient + bias_term,
            hidden_gradients.write(index, hidden_term),
            losses.write(index, hop_losses),
        )

    width = hidden.shape[-1]
    row_blocks = [(start, min(start + _KERNEL_ROW_BLOCK, width)) for start in range(0, width, _KERNEL_ROW_BLOCK)]
    # The first hop starts the sums: a zeros_like(kernel) start would be
    # constant-folded into a kernel-sized constant that lives as long as the
    # traced function (measured: +366 MB at SUMN's paper shapes).
    first_losses, first_inputs, first_gradient, bias_gradient, first_hidden = hop_terms(0)
    kernel_gradient = matmul(first_inputs, first_gradient, transpose_a=True)
    element_shape = hidden.shape[:1].concatenate(hidden.shape[2:])
    _, kernel_gradient, bias_gradient, hidden_gradients, losses = tf.while_loop(
        lambda index, *_: index < num_hops,
        hop,
        (
            tf.constant(1),
            kernel_gradient,
            bias_gradient,
            tf.TensorArray(tf.float32, size=num_hops, element_shape=element_shape).write(0, first_hidden),
            tf.TensorArray(tf.float32, size=num_hops, element_shape=hidden.shape[:1]).write(0, first_losses),
        ),
        parallel_iterations=1,  # one hop's logits at a time
    )
    per_hop = tf.transpose(losses.stack())  # [batch, hops]
    hidden_gradient = tf.transpose(hidden_gradients.stack(), [1, 0, 2])
    loss = tf.reduce_sum(loss_weights * per_hop)

    def gradient(loss_upstream, per_hop_upstream):
        del per_hop_upstream  # the per-hop losses are stop_gradient'ed by the caller
        return (
            loss_upstream * hidden_gradient,
            loss_upstream * kernel_gradient,
            loss_upstream * bias_gradient,
            None,
            None,
            None,
        )

    return (loss, per_hop), gradient


_PROJECTED_LOSSES = {dtype: _projected_loss_in(dtype) for dtype in ("float32", "bfloat16")}
