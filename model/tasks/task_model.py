"""A downstream model: a family's backbone with a method's adapters, a readout, and a task's head.

Everything it is made of is named by the task description (task.json): the
family and its architecture keys (``model/registry.py``), the method and
its entries (``model/methods/registry.py``), the task kind and its entries
(``model/tasks/registry.py``), and the readout that pools the encoder's
states into the user vector (``model/layers/sequence_readout.py``; a
description without one reads the CLS token(s), as PeterRec does). So a saved
task rebuilds from its description alone, and any method runs with any task.
"""

import keras

from model import registry
from model.layers.sequence_readout import CLS, SequenceReadout, readout_width
from model.methods.registry import get_method
from model.tasks.heads import EmbeddingItemScoringHead
from model.tasks.registry import task_class
from util.errors import UserInputError


@keras.saving.register_keras_serializable(package="uur")
class TaskModel(keras.Model):
    """Backbone + readout + head of one downstream task.

    Args:
        description: the task description, as main/finetune.py writes task.json.

    Call:
        inputs: the backbone's inputs with CLS token(s) in place (``inputs_for``).
        Returns user vectors [batch, dim] (``dim``: the readout's width).
    """

    def __init__(self, description, **kwargs):
        super().__init__(**kwargs)
        self.description = dict(description)
        family = registry.family_of(self.description, "task.json")
        if family.build_backbone is None:
            raise UserInputError(f"task.json: a {family.name} model has no backbone to fine-tune")
        method = get_method(self.description["method"], "task.json: method")
        config = family.config_from(self.description, "task.json")
        backbone = family.build_backbone(
            config, lambda index: method.block_adapter(index, self.description))
        self._backbone = backbone
        readout = self.description.get("readout", CLS)
        self.dim = readout_width(readout, backbone.dim)
        # The same layer name as in pretraining, so a warm start finds its weights;
        # encoder first, head second, readout third: the order task checkpoints are
        # keyed by (a task saved before readouts existed has a CLS readout, no variables).
        self.encoder = backbone.encoder
        self.head = task_class(self.description).head_from_description(self.description, self.dim)
        if isinstance(self.head, EmbeddingItemScoringHead) and self.dim != backbone.dim:
            raise UserInputError(
                f"task.json: item_head {self.description['item_head']} scores {self.dim}-wide user "
                f"vectors (readout {readout}) against the {backbone.dim}-wide item embedding; "
                f"use a readout as wide as the backbone, or item_head own")
        self.readout = SequenceReadout(readout, name="readout")

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.head.build((None, self.dim))
        self.readout.build((None, None, self._backbone.dim))

    def inputs_for(self, items):
        """[batch, (length)] ragged item ids -> the backbone's inputs with the CLS token(s)."""
        return self._backbone.inputs_for(items)

    def call(self, inputs, training=False):
        hidden = self.encoder(inputs, training=training)
        return self.readout(hidden, inputs, self._backbone.user_vector(hidden, inputs))

    def item_table(self):
        """[num_item_ids, dim] variable: the encoder's item embedding (what a tied item head scores against)."""
        return self.encoder.item_embedding.embeddings

    def output_variables(self):
        """The readout's and the head's trainable variables: what even a head-only method trains."""
        return list(self.head.trainable_variables) + list(self.readout.trainable_variables)

    def build_all(self, items):
        """Creates every variable with one forward pass (``build`` builds the head); returns the model."""
        self(self.inputs_for(items))
        return self

    def get_config(self):
        config = super().get_config()
        config.update(description=self.description)
        return config
