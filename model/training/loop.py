"""The outer training loop: steps, progress, snapshots, the final checkpoint.

No non-finite number is ever saved: before each checkpoint the loss and every
variable of the model and the optimizer are checked (one pass over the
weights per snapshot, small beside writing them), so the newest checkpoint of
a run that diverged is still a model one can resume or encode with.
"""

import time

import numpy as np

from util.errors import UserInputError

_MAX_LISTED_VARIABLES = 3


def _diverged(reason, step, last_saved):
    intact = (f"the last intact checkpoint is step {last_saved}" if last_saved
              else "no checkpoint has been saved")
    return UserInputError(
        f"{reason} at step {step}; nothing non-finite was saved: {intact}; lower "
        f"--learning_rate or set --max_grad_norm")


def train_until(trainer, distributed_dataset, checkpoints, log, step, max_steps, snapshot,
                learning_rate):
    """Trains from ``step`` to ``max_steps``, saving ``ckpt-<step>`` every ``snapshot`` steps.

    Args:
        trainer: a ``DistributedTrainer``.
        distributed_dataset: from ``strategy.distribute_datasets_from_function``.
        checkpoints: a ``RunCheckpoints``.
        log: a ``TrainingLog``.
        step: the int64 ``tf.Variable`` holding the global step (checkpointed).
        max_steps, snapshot: SUMN's ``--max_steps`` and ``--snapshot``.
        learning_rate: logged to TensorBoard.

    Returns:
        dict with the last metrics, steps run and seconds taken.

    Raises:
        UserInputError: the loss or a variable became non-finite (nothing
            non-finite is saved; the message names the last intact checkpoint).
    """
    started = time.perf_counter()
    first = int(step.numpy())
    metrics = None
    last_saved = first
    iterator = iter(distributed_dataset)
    while int(step.numpy()) < max_steps:
        metrics = trainer.train_step(next(iterator))
        current = int(step.assign_add(1).numpy())
        saving = current % snapshot == 0 or current == max_steps
        logging = log.due(current) or current == max_steps
        if logging or saving:
            loss = float(metrics["loss"])
            if not np.isfinite(loss):
                raise _diverged(f"the loss became {loss}", current, last_saved)
            if logging:
                log.write(current, metrics, learning_rate)
        if saving:
            bad = checkpoints.non_finite_variables()
            if bad:
                listed = ", ".join(bad[:_MAX_LISTED_VARIABLES])
                if len(bad) > _MAX_LISTED_VARIABLES:
                    listed += ", ..."
                raise _diverged(f"{len(bad)} variable(s) became non-finite ({listed})", current,
                                last_saved)
            path = checkpoints.save(current)
            last_saved = current
            print(f"saved {path}", flush=True)
    return {
        "metrics": metrics,
        "steps": int(step.numpy()) - first,
        "seconds": time.perf_counter() - started,
    }
