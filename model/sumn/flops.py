"""An analytic FLOP count of one SUMN training step, for model FLOPs utilisation (MFU)."""

from model.sumn.pooling.registry import pooling_hops


def sumn_training_flops(
    batch_size,
    num_words,
    num_behaviours_padded,
    word_emb_dim,
    model_dim,
    mlp_layers,
    vocabulary_size,
    pooling,
    num_hops,
    num_behaviours=None,
    decoder_columns=None,
):
    """FLOPs of one forward + backward pass of ``SumnModel`` on one batch.

    Counting rule (the usual MFU convention, made explicit):
      * a matmul of [m, k] by [k, n] is ``2 * m * n * k`` FLOPs forward; its
        backward pass (gradients for both operands) is twice that, so every
        matmul counts ``3 * 2 * m * n * k`` for a training step;
      * the embedding gather costs nothing; the segment sum that averages
        word embeddings is one add per gathered element, ``num_words *
        word_emb_dim``, forward, and the backward scatter-add into the
        embedding gradient is as many again (its gather-shaped backward
        counts nothing);
      * element-wise work (ReLU, LayerNorm, tanh, GRU gates' non-linearities,
        softmax, the loss, the optimizer update) is not counted.

    The behaviour projection and the attention run on the present
    behaviours only (``num_behaviours`` rows), not on the padded
    [batch_size, num_behaviours_padded] grid, so that is what is counted.
    The training path's recomputation of the projection and the pooling (for
    memory) is overhead, not model FLOPs, and is not counted either.

    Args:
        batch_size: users in the step (global batch for a global MFU).
        num_words: word ids in the batch (``word_ids`` length).
        num_behaviours_padded: ``max_len`` of the batch's behaviour grid.
        word_emb_dim: word embedding width.
        model_dim: behaviour and user vector width.
        mlp_layers: decoder hidden widths, e.g. ``(512,)``.
        vocabulary_size: number of word ids (decoder output width).
        pooling: ``max``, ``mean``, ``mhop`` or ``gruhop``.
        num_hops: hops of ``mhop`` / ``gruhop`` (``max`` and ``mean`` use 1).
        num_behaviours: present behaviours in the batch; ``None`` means a
            full grid, ``batch_size * num_behaviours_padded``.
        decoder_columns: columns of the vocabulary layer each user's hop is
            scored at; ``None`` means every word (the exact loss). The
            sampled softmax scores a user's target words and the sampled
            ones (``max_targets + num_sampled``).

    Returns:
        The FLOPs as an int.
    """
    hops = pooling_hops(pooling, num_hops)
    slots = batch_size * num_behaviours_padded if num_behaviours is None else int(num_behaviours)

    def matmul(m, k, n):
        return 2 * m * k * n

    forward = matmul(slots, word_emb_dim, model_dim)  # behaviour projection
    if pooling == "mhop":
        forward += 2 * matmul(slots, model_dim, model_dim)  # keys and values
        forward += hops * 2 * matmul(slots, model_dim, 1)  # scores K s and read-out a^T V
    elif pooling == "gruhop":
        forward += matmul(slots, model_dim, model_dim)  # behaviour half of W1
        per_hop = matmul(batch_size, model_dim, model_dim)  # state half of W1
        per_hop += matmul(slots, model_dim, 1)  # w2 scores
        per_hop += matmul(slots, model_dim, 1)  # attention read-out
        per_hop += 2 * matmul(batch_size, model_dim, 3 * model_dim)  # GRU input and recurrent kernels
        forward += hops * per_hop
    width = model_dim
    columns = vocabulary_size if decoder_columns is None else int(decoder_columns)
    for next_width in tuple(mlp_layers) + (columns,):
        forward += matmul(batch_size * hops, width, next_width)
        width = next_width

    segment_adds = num_words * word_emb_dim
    return int(3 * forward + 2 * segment_adds)
