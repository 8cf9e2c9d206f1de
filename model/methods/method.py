"""What a downstream method is: what it starts from, inserts, trains and stores per task.

A ``Method`` is used with any ``Task`` (``model/tasks``) on any family that
has a task backbone (``model/model_family.py``):

* ``starts_from_pretrained``: whether the backbone's pretrained weights are
  copied in before training (``scratch`` does not);
* ``block_adapter(block_index, description)``: the module it inserts at a
  backbone block's hook (``model/layers/block_adapter.py``), or None;
* ``trainable_variables(task_model, description)``: what trains, which is
  also what a task folder stores (everything else is the shared backbone);
* ``auxiliary_loss(task_model, batch)``: a term added to the task's loss
  (None: none), for methods that regularise towards earlier tasks;
* ``description_entries(settings)``: what the method records in task.json;
* ``continual``: True for methods that learn task after task into one
  folder (main/continual.py) rather than one task per folder (main/finetune.py);
* ``folder_entries(settings)``: what a continual method records once per
  folder (continual.json), settings every task of the folder shares;
* ``default_item_head``: what an item-recommendation head scores users
  against when ``--item_head`` is left out.

``description`` is the task description (``task.json``): the method reads
its own entries back from it, so a saved task rebuilds exactly.
"""

from model.tasks.item_recommendation import OWN_ITEM_TABLE


class Method:
    """The base method: trains the whole task model, inserts nothing, records nothing."""

    name = ""
    summary = ""
    starts_from_pretrained = True
    # Continual methods (main/continual.py) learn task after task into one folder.
    continual = False
    # Whether the method keeps binary kernel masks (Conure) in its continual folder.
    kernel_masks = False
    # Whether its blocks hold per-task tables (TERACON's task embeddings) in its continual folder.
    task_tables = False
    # A head of its own item table: a method that freezes the item embedding (PeterRec, Conure
    # after task 1) would leave a head tied to it only a scale and a shift to learn.
    default_item_head = OWN_ITEM_TABLE

    def block_adapter(self, block_index, description):
        """The ``BlockAdapter`` of backbone block ``block_index``, or None to leave it as it is."""
        return None

    def trainable_variables(self, task_model, description):
        """The variables this method trains (and a task folder stores)."""
        return list(task_model.trainable_variables)

    def auxiliary_loss(self, task_model, batch):
        """A scalar added to the task's loss on this replica's batch, or None."""
        return None

    def folder_entries(self, settings):
        """continual.json entries shared by every task of a folder (``settings``: the flags)."""
        return {}

    def description_entries(self, settings):
        """task.json entries of this method (``settings``: the fine-tuning flags).

        task.json has always recorded a patch placement; methods without
        patches record none.
        """
        return {"patch": "none"}


def parameter_count(variables):
    """Number of numbers in ``variables``."""
    total = 0
    for variable in variables:
        size = 1
        for dimension in variable.shape:
            size *= int(dimension)
        total += size
    return total
