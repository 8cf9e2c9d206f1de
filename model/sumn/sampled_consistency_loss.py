"""SUMN's behavioural-consistency loss over sampled words: a sampled softmax for big vocabularies.

The exact loss (``consistency_loss.py``) normalises every hop's prediction
over the whole vocabulary: at SUMN's paper shapes (178,422 words, 5 hops) the
[batch_size, vocabulary_size] logits of each hop are most of a training step,
whatever the history's length. This loss normalises over a candidate set
instead: each user's own target words plus ``num_sampled`` words drawn once
per step for the whole batch from the log-uniform (Zipfian) distribution,
which fits because word ids are given by descending frequency
(``data_dumper/vocabulary.py``). As in the sampled softmax of Jean et al.
(2015, "On Using Very Large Target Vocabulary for Neural Machine
Translation") and ``tf.nn.sampled_softmax_loss``, every candidate's logit is
corrected by minus the log of its expected count under the sampler, and a
sampled word that is one of the user's targets is removed from that user's
candidates (an "accidental hit"). Unlike ``tf.nn.sampled_softmax_loss``, the
true classes are many, of unequal weight (SUMN's target distribution q) and
padded, so the loss is written out here:

    loss(user, hop) = mass * logsumexp_{c in candidates} z_c - sum_j q_j z_{w_j},
    z_c = u . k_c + b_c - log E[count of c],

with ``mass`` = sum_j q_j (1 for a user with targets, 0 for padding). It
estimates the full loss; the expected gradient matches it as
``num_sampled`` grows. Evaluation keeps the exact loss.

Cost per hop: [batch_size, max_targets + num_sampled] logits instead of
[batch_size, vocabulary_size]. Gradients come from TensorFlow's autodiff; the
gathered target rows, [batch_size, max_targets, width], are the largest
buffer (131 MB at SUMN's paper shapes: width 512, batch 128, 500 targets)
besides the kernel-sized transpose and gradient.
"""

import tensorflow as tf

from model.sumn.consistency_loss import check_vocabulary_layer_inputs


def sampled_consistency_loss(hidden, kernel, bias, target_words, target_weights, loss_weights,
                             num_sampled, seed=None):
    """The weighted SUMN loss of ``hidden @ kernel + bias`` over sampled candidate words.

    Args:
        hidden: [batch_size, num_hops, width] input of the vocabulary layer.
        kernel: [width, vocabulary_size] its kernel.
        bias: [vocabulary_size] its bias.
        target_words: [batch_size, max_targets] integer word ids, padded with 0.
        target_weights: [batch_size, max_targets] target probabilities, padded with 0.
        loss_weights: [batch_size, num_hops] constant weight of each user's hop.
        num_sampled: distinct negative words drawn for the batch, in
            [1, vocabulary_size).
        seed: op seed of the sampler (with the global seed, fixes the draws).

    Returns:
        ``(loss, per_hop)``: the float32 scalar weighted sum (differentiable
        with respect to ``hidden``, ``kernel`` and ``bias``) and the
        [batch_size, num_hops] float32 per-hop losses (not differentiable).
    """
    check_vocabulary_layer_inputs(hidden, kernel, target_words, loss_weights)
    vocabulary_size = int(kernel.shape[-1])
    num_sampled = int(num_sampled)
    if not 0 < num_sampled < vocabulary_size:
        raise ValueError(f"`num_sampled` should be in [1, {vocabulary_size}) (the vocabulary's "
                         f"size). Received: num_sampled={num_sampled}.")
    hidden = tf.cast(hidden, tf.float32)
    kernel = tf.cast(kernel, tf.float32)
    bias = tf.cast(bias, tf.float32)
    target_words = tf.cast(target_words, tf.int64)
    target_weights = tf.cast(target_weights, tf.float32)
    loss_weights = tf.cast(loss_weights, tf.float32)

    # One draw for the whole batch; the targets' expected counts come with it
    # (num_true must be static, so the [batch, max_targets] targets go in as
    # one column of batch * max_targets rows).
    sampled, target_expected, sampled_expected = tf.random.log_uniform_candidate_sampler(
        true_classes=tf.reshape(target_words, [-1, 1]), num_true=1, num_sampled=num_sampled,
        unique=True, range_max=vocabulary_size, seed=seed)
    # Sorted, so each target finds its accidental hit by binary search below.
    order = tf.argsort(sampled)
    sampled = tf.stop_gradient(tf.gather(sampled, order))  # [num_sampled]
    sampled_correction = tf.math.log(tf.gather(sampled_expected, order))  # [num_sampled]
    target_correction = tf.math.log(tf.reshape(target_expected, tf.shape(target_words)))

    # Rows of the transposed kernel are contiguous: gathering [batch, max_targets, width]
    # rows from it, then a batched matmul, took half the time of gathering kernel
    # columns and an einsum at SUMN's paper shapes (0.36 s against 0.77 s forward and
    # backward on 2 CPU cores).
    word_rows = tf.transpose(kernel)  # [vocabulary, width]
    target_logits = (tf.matmul(hidden, tf.gather(word_rows, target_words), transpose_b=True)
                     + (tf.gather(bias, target_words) - target_correction)[:, None, :])  # [b, h, t]
    sampled_logits = (tf.einsum("bhw,sw->bhs", hidden, tf.gather(word_rows, sampled))
                      + (tf.gather(bias, sampled) - sampled_correction)[None, None, :])  # [b, h, s]

    present = target_weights > 0  # [batch, max_targets]; padding has weight 0
    hits = _accidental_hits(sampled, target_words, present)  # [batch, num_sampled]
    candidates = tf.concat([tf.where(present[:, None, :], target_logits, -float("inf")),
                            tf.where(hits[:, None, :], -float("inf"), sampled_logits)], axis=-1)
    log_normaliser = tf.reduce_logsumexp(candidates, axis=-1)  # [batch, hops]
    target_mass = tf.reduce_sum(target_weights, axis=1)  # [batch]
    per_hop = (target_mass[:, None] * log_normaliser
               - tf.reduce_sum(target_weights[:, None, :] * target_logits, axis=-1))
    loss = tf.reduce_sum(loss_weights * per_hop)
    return loss, tf.stop_gradient(per_hop)


def _accidental_hits(sorted_sampled, target_words, present):
    """[batch, num_sampled] bool: the sampled word is one of the user's present targets.

    A binary search of each target among the sorted, distinct samples, then a
    scatter of the found ones: [batch, max_targets] work, never
    [batch, max_targets, num_sampled].
    """
    batch_size = tf.shape(target_words)[0]
    num_sampled = tf.shape(sorted_sampled)[0]
    position = tf.searchsorted(tf.broadcast_to(sorted_sampled[None, :], [batch_size, num_sampled]),
                               target_words)  # [batch, max_targets], in [0, num_sampled]
    position = tf.minimum(position, num_sampled - 1)
    found = present & tf.equal(tf.gather(sorted_sampled, position), target_words)
    users = tf.broadcast_to(tf.range(batch_size)[:, None], tf.shape(target_words))
    cells = tf.boolean_mask(tf.stack([users, tf.cast(position, tf.int32)], axis=-1), found)
    counts = tf.scatter_nd(cells, tf.ones(tf.shape(cells)[:1], tf.int32), [batch_size, num_sampled])
    return counts > 0
