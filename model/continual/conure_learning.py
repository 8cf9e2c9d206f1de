"""How Conure learns one task into a shared backbone: train the free weights, prune, retrain the kept ones.

Following the official code (``../shared/SYSTEMS.md``, Conure):

1. **train** (tasks 2, 3, ...): the free weights of every kernel and the
   task's head train, the weights of earlier tasks run frozen
   (stop-gradient); free weights start from their current values. Task 1
   skips this phase: the pretraining run trained it on every weight.
2. **prune**: in each kernel, the largest-|w| share ``1 - prune_ratio`` of
   the free weights becomes the task's (``kernel_ownership.keep_largest_free``);
   the rest stays free for later tasks. With the paper's 0.7 the kept shares
   are 30%, 21%, 14.7%, 10.3%, ... of each kernel.
3. **retrain**: only the task's kept weights (and its head; for task 1 also
   the embeddings, LayerNorms and biases) train, the pruned ones are out of
   the forward pass.

Each phase keeps its best epoch by the task's validation headline. After
the phases the weights of earlier tasks are checked bit for bit against
their values before the task: they receive no gradient, so a difference
would be a bug, and it is reported rather than saved.
"""

import time

import numpy as np

from model.continual.continual_state import activate, get_owners, set_owners
from model.continual.kernel_ownership import keep_largest_free
from model.continual.task_phases import train_phase
from model.methods.conure import kernel_names, kernel_variables
from util.errors import UserInputError


def check_free_capacity(owners, names, prune_ratio, task_name):
    """Refuses a task for which some kernel has no free weight left to keep.

    Raises:
        UserInputError: naming every such layer and how many weights are free.
    """
    keep_share = 1.0 - prune_ratio
    full = []
    for name, owner in zip(names, owners):
        free = int(np.count_nonzero(owner == 0))
        if int(round(keep_share * free)) < 1:
            full.append(f"{name} ({free} of {owner.size} weights free)")
    if full:
        raise UserInputError(
            f"--task={task_name}: no free capacity left in {len(full)} layer(s): "
            f"{', '.join(full[:4])}{', ...' if len(full) > 4 else ''}; a continual folder "
            f"holds a bounded number of tasks (--prune_ratio sets how much each one takes)")


def learn_task(model, state, task, method, description, strategy, settings, log=print):
    """Learns task ``description["task_index"]`` into ``model``'s free weights.

    Args:
        model: the task's ``TaskModel`` (built in ``strategy.scope()``), carrying the
            backbone and the owners of the tasks before it (``continual_state.task_model``).
        state: the folder's ``ContinualState`` before the task (unused: earlier
            tasks' heads do not change).
        task: the ``Task`` (its users).
        method: the ``Conure`` method.
        description: the task description (``task_index``, ``prune_ratio``).
        strategy: the ``tf.distribute.Strategy``.
        settings: ``epochs`` (phase 1), ``retrain_epochs``, ``learning_rate``,
            ``batch_size``, ``seed``, ``max_grad_norm``, ``progress_seconds``,
            and what the task reads.
        log: called with progress lines.

    Returns:
        (report, {}): each phase's best epoch, validation and seconds, and the
        total seconds; no earlier task's head changes.
    """
    started = time.perf_counter()
    index = description["task_index"]
    prune_ratio = description["prune_ratio"]
    kernels = kernel_variables(model.encoder)
    names = kernel_names(model.encoder)
    owners = get_owners(model.encoder)
    check_free_capacity(owners, names, prune_ratio, task.name)
    frozen = [(owner > 0) & (owner < index) for owner in owners]
    before = [kernel.numpy()[mask] for kernel, mask in zip(kernels, frozen)]

    report = {}
    if index > 1:
        activate(model.encoder, index, include_free=True)
        report["train"] = train_phase(model, task, method, description, strategy, settings,
                                       settings.epochs, log, "train the free weights")
    owners = [keep_largest_free(owner, kernel.numpy(), index, 1.0 - prune_ratio)
              for owner, kernel in zip(owners, kernels)]
    set_owners(model.encoder, owners)
    activate(model.encoder, index, include_free=False)
    kept = sum(int(np.count_nonzero(owner == index)) for owner in owners)
    log(f"pruned: task {index} keeps {kept:,} of {sum(o.size for o in owners):,} kernel weights")
    report["retrain"] = train_phase(model, task, method, description, strategy, settings,
                                     settings.retrain_epochs, log, "retrain the kept weights")

    for name, kernel, mask, values in zip(names, kernels, frozen, before):
        if not np.array_equal(kernel.numpy()[mask], values):
            raise RuntimeError(f"{name}: weights of earlier tasks changed while task {index} "
                               f"trained; nothing was saved")
    report["seconds"] = time.perf_counter() - started
    return report, {}
