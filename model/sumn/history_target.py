"""The user's own history as a second target of the consistency decoder.

SUMN's decoder predicts the words of behaviours the encoder did not read (the
target window). With ``--history_target_weight`` it also predicts the words
of the behaviours it did read: the multinomial likelihood of a user's whole
bag of words from its vector, the objective of Mult-DAE / Mult-VAE (Liang et
al., WWW 2018, "Variational Autoencoders for Collaborative Filtering"), here
without corrupting the input. It asks the vector to keep what the user did,
which is what a TF-IDF representation of the history holds; the consistency
target asks it to predict what the user will do.
"""

import tensorflow as tf


def history_targets(history):
    """Every word of each user's history, uniformly weighted, as dense padded targets.

    Args:
        history: ``tf.RaggedTensor`` [batch, (behaviours), (words)] of word ids
            (0 = padding, left out).

    Returns:
        ``(words, weights)``: [batch, max_words] int32 word ids padded with 0
        and float32 weights padded with 0; a user's weights sum to 1 (a word
        that occurs n times has n entries), an empty history's to 0.
    """
    words = history.merge_dims(1, 2)  # [batch, (words)]
    words = tf.ragged.boolean_mask(words, tf.not_equal(words, 0))
    lengths = tf.cast(words.row_lengths(), tf.float32)
    weights = words.with_values(tf.gather(tf.math.divide_no_nan(1.0, lengths), words.value_rowids()))
    return (tf.cast(words.to_tensor(default_value=0), tf.int32),
            weights.to_tensor(default_value=0.0))
