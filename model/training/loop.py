"""The outer training loop: steps, progress, snapshots, the final checkpoint."""

import time

import numpy as np

from util.errors import UserInputError


def train_until(trainer, distributed_dataset, checkpoints, log, step, max_steps, snapshot,
                learning_rate):
    """Trains from ``step`` to ``max_steps``, saving ``ckpt-<step>`` every ``snapshot`` steps.

    Args:
        trainer: a ``SumnTrainer``.
        distributed_dataset: from ``strategy.distribute_datasets_from_function``.
        checkpoints: a ``RunCheckpoints``.
        log: a ``TrainingLog``.
        step: the int64 ``tf.Variable`` holding the global step (checkpointed).
        max_steps, snapshot: SUMN's ``--max_steps`` and ``--snapshot``.
        learning_rate: logged to TensorBoard.

    Returns:
        dict with the last metrics, steps run and seconds taken.
    """
    started = time.perf_counter()
    first = int(step.numpy())
    metrics = None
    last_saved = first
    iterator = iter(distributed_dataset)
    while int(step.numpy()) < max_steps:
        metrics = trainer.train_step(next(iterator))
        current = int(step.assign_add(1).numpy())
        if log.due(current) or current == max_steps:
            loss = float(metrics["loss"])
            if not np.isfinite(loss):
                raise UserInputError(
                    f"the loss became {loss} at step {current}; lower --learning_rate or set "
                    f"--max_grad_norm (the last checkpoint, step {last_saved}, is intact)")
            log.write(current, metrics, learning_rate)
        if current % snapshot == 0 or current == max_steps:
            path = checkpoints.save(current)
            last_saved = current
            print(f"saved {path}", flush=True)
    return {
        "metrics": metrics,
        "steps": int(step.numpy()) - first,
        "seconds": time.perf_counter() - started,
    }
