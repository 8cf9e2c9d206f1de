"""A downstream model: a family's backbone with a method's adapters, and a task's head.

Everything it is made of is named by the task description (task.json): the
family and its architecture keys (``model/registry.py``), the method and
its entries (``model/methods/registry.py``), the task kind and its entries
(``model/tasks/registry.py``). So a saved task rebuilds from its description
alone, and any method runs with any task.
"""

import keras

from model import registry
from model.methods.registry import get_method
from model.tasks.registry import task_class
from util.errors import UserInputError


@keras.saving.register_keras_serializable(package="uur")
class TaskModel(keras.Model):
    """Backbone + head of one downstream task.

    Args:
        description: the task description, as main/finetune.py writes task.json.

    Call:
        inputs: the backbone's inputs with CLS token(s) in place (``inputs_for``).
        Returns user vectors [batch, dim].
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
        self.dim = backbone.dim
        # The same layer name as in pretraining, so a warm start finds its weights;
        # encoder first, head second: the order task checkpoints are keyed by.
        self.encoder = backbone.encoder
        self.head = task_class(self.description).head_from_description(self.description, self.dim)

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.head.build((None, self.dim))

    def inputs_for(self, items):
        """[batch, (length)] ragged item ids -> the backbone's inputs with the CLS token(s)."""
        return self._backbone.inputs_for(items)

    def call(self, inputs, training=False):
        hidden = self.encoder(inputs, training=training)
        return self._backbone.user_vector(hidden, inputs)

    def build_all(self, items):
        """Creates every variable with one forward pass (``build`` builds the head); returns the model."""
        self(self.inputs_for(items))
        return self

    def get_config(self):
        config = super().get_config()
        config.update(description=self.description)
        return config
