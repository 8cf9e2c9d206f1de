"""A downstream model: the pretrained item-sequence encoder (optionally patched) and a task head.

The user is read through a classification token: ``[items..., CLS]`` for the
causal NextItNet (its last hidden state has seen the whole sequence),
``[CLS, items..., CLS]`` for the non-causal GRec (first + last hidden state),
as PeterRec does.
"""

import keras

from model.tasks.heads import ClassificationHead, ItemScoringHead
from model.nextitnet.encoder import NextItNetEncoder
from model.nextitnet.sequence_inputs import append_cls
from model.nextitnet.user_vector import cls_user_vector

CLASSIFICATION = "classification"
RECOMMENDATION = "recommendation"
TASK_KINDS = (CLASSIFICATION, RECOMMENDATION)


@keras.saving.register_keras_serializable(package="uur")
class TaskModel(keras.Model):
    """Encoder + head of one downstream task.

    Args:
        num_item_ids: size of the item index (the 3 special ids included).
        model_dim, dilations, kernel_size, causal: the pretrained encoder's architecture.
        patch: ``"none"``, ``"serial"`` or ``"parallel"`` (PeterRec's model patches).
        patch_bottleneck: channels inside a patch; 0 takes model_dim // 8.
        task_kind: ``"classification"`` or ``"recommendation"``.
        num_classes: classes of a classification task.
        dropout_rate: dropout inside the encoder and before the classification head.

    Call:
        inputs: int32 [batch, length], CLS token(s) in place (see ``inputs_for``).
        Returns user vectors [batch, model_dim].
    """

    def __init__(self, num_item_ids, model_dim, dilations, kernel_size, causal, patch="none",
                 patch_bottleneck=0, task_kind=CLASSIFICATION, num_classes=0, dropout_rate=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_item_ids = int(num_item_ids)
        self.model_dim = int(model_dim)
        self.dilations = tuple(int(d) for d in dilations)
        self.kernel_size = int(kernel_size)
        self.causal = bool(causal)
        self.patch = patch
        self.patch_bottleneck = int(patch_bottleneck)
        self.task_kind = task_kind
        self.num_classes = int(num_classes)
        self.dropout_rate = float(dropout_rate)
        # The same layer name as in pretraining, so a warm start finds its weights.
        self.encoder = NextItNetEncoder(
            num_item_ids=self.num_item_ids, embedding_dim=self.model_dim,
            dilations=self.dilations, kernel_size=self.kernel_size, causal=self.causal,
            patch=patch, patch_bottleneck=self.patch_bottleneck,
            dropout_rate=self.dropout_rate, name="encoder")
        if task_kind == CLASSIFICATION:
            self.head = ClassificationHead(self.num_classes, dropout_rate=self.dropout_rate,
                                           name="head")
        else:
            self.head = ItemScoringHead(self.num_item_ids, self.model_dim, name="head")

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.head.build((None, self.model_dim))

    def inputs_for(self, items):
        """[batch, (length)] ragged item ids -> int32 [batch, length'] with the CLS token(s)."""
        return append_cls(items, self.causal)

    def call(self, inputs, training=False):
        hidden = self.encoder(inputs, training=training)
        return cls_user_vector(hidden, inputs, self.causal)

    def class_logits(self, user_vectors, training=False):
        """[batch, model_dim] -> [batch, num_classes]."""
        return self.head(user_vectors, training=training)

    def build_all(self, items):
        """Creates every variable with one forward pass (head included); returns the model."""
        users = self(self.inputs_for(items))
        if self.task_kind == CLASSIFICATION:
            self.class_logits(users)
        return self

    def get_config(self):
        config = super().get_config()
        config.update(
            num_item_ids=self.num_item_ids, model_dim=self.model_dim,
            dilations=list(self.dilations), kernel_size=self.kernel_size, causal=self.causal,
            patch=self.patch, patch_bottleneck=self.patch_bottleneck, task_kind=self.task_kind,
            num_classes=self.num_classes, dropout_rate=self.dropout_rate)
        return config
