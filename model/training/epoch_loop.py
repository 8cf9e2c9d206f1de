"""Epochs of fine-tuning with the best epoch chosen on validation users.

Methods differ in how fast they fit (FineCLS needs many epochs, FineAll
overfits a small task in a few), so a fixed epoch count would favour one of
them; each method keeps the weights of its best validation epoch instead.
"""

import time

import numpy as np

from util.errors import UserInputError


def train_epochs(trainer, distributed_dataset, steps_per_epoch, epochs, validate, log=print):
    """Trains ``epochs`` epochs, validating after each; leaves the best epoch's weights in place.

    Args:
        trainer: a ``DistributedTrainer`` (its ``variables`` are what is kept).
        distributed_dataset: an endless distributed dataset of training batches.
        steps_per_epoch: steps per epoch.
        epochs: epochs to run.
        validate: ``() -> float``, higher is better (the task's headline metric).
        log: called with one progress line per epoch.

    Returns:
        dict: ``best_epoch``, ``best_validation``, ``history`` (per-epoch loss,
        validation, seconds) and ``seconds``.
    """
    started = time.perf_counter()
    iterator = iter(distributed_dataset)
    best_value, best_epoch, best_weights = -np.inf, 0, None
    history = []
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        losses = [float(trainer.train_step(next(iterator))["loss"]) for _ in range(steps_per_epoch)]
        loss = float(np.mean(losses))
        if not np.isfinite(loss):
            raise UserInputError(f"the loss became {loss} in epoch {epoch}; lower --learning_rate")
        value = float(validate())
        seconds = time.perf_counter() - epoch_started
        improved = value > best_value
        if improved:
            best_value, best_epoch = value, epoch
            best_weights = [variable.numpy() for variable in trainer.variables]
        history.append({"epoch": epoch, "loss": loss, "validation": value, "seconds": seconds})
        log(f"epoch {epoch}/{epochs}  loss {loss:.4f}  validation {value:.4f}"
            f"{'  (best)' if improved else ''}  {seconds:.1f} s")
    if best_weights is not None:
        for variable, value in zip(trainer.variables, best_weights):
            variable.assign(value)
    return {"best_epoch": best_epoch, "best_validation": best_value, "history": history,
            "seconds": time.perf_counter() - started}
