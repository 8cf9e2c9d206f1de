"""Task heads of PeterRec fine-tuning, on top of a user vector [batch, dim]."""

import keras
from keras import ops

from model.layers.input_checks import check_integer
from model.layers.input_checks import check_rank


@keras.saving.register_keras_serializable(package="uur")
class ClassificationHead(keras.layers.Layer):
    """User vector [batch, dim] -> class logits [batch, num_classes] (dropout, then Dense).

    Example:

    ```python
    head = ClassificationHead(num_classes=2, dropout_rate=0.1)
    logits = head(user_vectors, training=True)  # [batch_size, 2]
    ```

    Args:
        num_classes: number of classes.
        dropout_rate: dropout on the user vector, in [0, 1).
    """

    def __init__(self, num_classes, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` should be at least 1. Received: num_classes={num_classes}.")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` should be in [0, 1). Received: dropout_rate={dropout_rate}.")
        self.num_classes = int(num_classes)
        self.dropout_rate = float(dropout_rate)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy, name="dropout")
        self.logits = keras.layers.Dense(self.num_classes, dtype=self.dtype_policy, name="logits")

    def build(self, input_shape):
        self.logits.build(tuple(input_shape))

    def call(self, user_vectors, training=False):
        """Args: user_vectors: [batch_size, dim]. Returns: [batch_size, num_classes] logits."""
        check_rank(user_vectors, 2, "user_vectors", "[batch_size, dim]")
        return self.logits(self.dropout(user_vectors, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dropout_rate": self.dropout_rate})
        return config


@keras.saving.register_keras_serializable(package="uur")
class ItemScoringHead(keras.layers.Layer):
    """Scores of candidate items for a user: u . e_item + b_item, with a new item table.

    The table is the downstream task's own (PeterRec's target-item embedding),
    not the pretrained input embedding, so a task can score items the
    pretraining never saw as targets.

    Example:

    ```python
    head = ItemScoringHead(num_item_ids=1000, dim=64)
    scores = head(user_vectors, candidate_ids)  # [batch_size, num_candidates]
    every_item = head.score_all(user_vectors)   # [batch_size, 1000]
    ```

    Args:
        num_item_ids: number of item ids, the 3 special ids included.
        dim: width of the user vectors.
    """

    def __init__(self, num_item_ids, dim, **kwargs):
        super().__init__(**kwargs)
        if int(num_item_ids) < 1:
            raise ValueError(f"`num_item_ids` should be at least 1. Received: num_item_ids={num_item_ids}.")
        if int(dim) < 1:
            raise ValueError(f"`dim` should be at least 1. Received: dim={dim}.")
        self.num_item_ids = int(num_item_ids)
        self.dim = int(dim)

    def build(self, input_shape=None):
        # "target_item_vectors", not "...embedding": the name tells it apart from
        # the pretrained input embedding in a task's saved variable list.
        self.item_vectors = self.add_weight(
            shape=(self.num_item_ids, self.dim), initializer="uniform", name="target_item_vectors")
        self.item_bias = self.add_weight(
            shape=(self.num_item_ids,), initializer="zeros", name="target_item_bias")

    def _check_users(self, user_vectors):
        shape = check_rank(user_vectors, 2, "user_vectors", f"[batch_size, {self.dim}]")
        if shape[-1] is not None and shape[-1] != self.dim:
            raise ValueError(f"`user_vectors` should have shape [batch_size, {self.dim}]. "
                             f"Received: `user_vectors.shape` = {shape}.")

    def call(self, user_vectors, item_ids):
        """Scores ``item_ids`` for each user.

        Args:
            user_vectors: [batch_size, dim].
            item_ids: int [batch_size, num_candidates].

        Returns:
            [batch_size, num_candidates] scores (logits).
        """
        self._check_users(user_vectors)
        check_rank(item_ids, 2, "item_ids", "[batch_size, num_candidates]")
        check_integer(item_ids, "item_ids")
        vectors = ops.take(self.item_vectors, item_ids, axis=0)  # [batch, candidates, dim]
        scores = ops.einsum("bd,bkd->bk", user_vectors, ops.cast(vectors, user_vectors.dtype))
        return scores + ops.cast(ops.take(self.item_bias, item_ids, axis=0), scores.dtype)

    def score_all(self, user_vectors):
        """Scores of every item id: [batch_size, dim] -> [batch_size, num_item_ids]."""
        self._check_users(user_vectors)
        kernel = ops.cast(self.item_vectors, user_vectors.dtype)
        return ops.matmul(user_vectors, ops.transpose(kernel)) + ops.cast(self.item_bias, user_vectors.dtype)

    def compute_output_shape(self, user_shape, item_shape):
        return (user_shape[0], item_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"num_item_ids": self.num_item_ids, "dim": self.dim})
        return config


@keras.saving.register_keras_serializable(package="uur")
class EmbeddingItemScoringHead(keras.layers.Layer):
    """Scores of candidate items against the encoder's item embedding: (g * u + b) . E[item].

    Stores no item table: it scores against the item embedding the backbone
    already holds (weight tying), through a per-dimension scale ``g`` (ones)
    and shift ``b`` (zeros) of the user vector, 2 * dim weights; ``b . E[item]``
    is a learned item bias within the embedding's span. So a continual folder
    adds a few hundred weights per item task, not a second item table
    (``ItemScoringHead``), and every item the backbone embeds can be scored.

    Example:

    ```python
    head = EmbeddingItemScoringHead(dim=64)
    table = encoder.item_embedding.embeddings            # [num_item_ids, 64]
    scores = head(user_vectors, candidate_ids, table)    # [batch_size, num_candidates]
    every_item = head.score_all(user_vectors, table)     # [batch_size, num_item_ids]
    ```

    Args:
        dim: width of the user vectors and of the item embedding.
    """

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        if int(dim) < 1:
            raise ValueError(f"`dim` should be at least 1. Received: dim={dim}.")
        self.dim = int(dim)

    def build(self, input_shape=None):
        self.scale = self.add_weight(shape=(self.dim,), initializer="ones", name="user_scale")
        self.shift = self.add_weight(shape=(self.dim,), initializer="zeros", name="user_shift")

    def _queries(self, user_vectors, item_table):
        """[batch_size, dim] g * u + b, after checking both inputs' widths."""
        for name, tensor, rows in (("user_vectors", user_vectors, "batch_size"),
                                   ("item_table", item_table, "num_item_ids")):
            expected = f"[{rows}, {self.dim}]"
            shape = check_rank(tensor, 2, name, expected)
            if shape[-1] is not None and shape[-1] != self.dim:
                raise ValueError(f"`{name}` should have shape {expected}. "
                                 f"Received: `{name}.shape` = {shape}.")
        dtype = user_vectors.dtype
        return user_vectors * ops.cast(self.scale, dtype) + ops.cast(self.shift, dtype)

    def call(self, user_vectors, item_ids, item_table):
        """Scores ``item_ids`` for each user.

        Args:
            user_vectors: [batch_size, dim].
            item_ids: int [batch_size, num_candidates].
            item_table: [num_item_ids, dim], the encoder's item embedding.

        Returns:
            [batch_size, num_candidates] scores (logits).
        """
        queries = self._queries(user_vectors, item_table)
        check_rank(item_ids, 2, "item_ids", "[batch_size, num_candidates]")
        check_integer(item_ids, "item_ids")
        vectors = ops.take(ops.cast(item_table, queries.dtype), item_ids, axis=0)
        return ops.einsum("bd,bkd->bk", queries, vectors)

    def score_all(self, user_vectors, item_table):
        """Scores of every item id: [batch_size, dim] -> [batch_size, num_item_ids]."""
        queries = self._queries(user_vectors, item_table)
        return ops.matmul(queries, ops.transpose(ops.cast(item_table, queries.dtype)))

    def compute_output_shape(self, user_shape, item_shape, table_shape):
        return (user_shape[0], item_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim})
        return config
