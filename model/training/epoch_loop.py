"""Epochs of fine-tuning with the best epoch chosen on validation users.

Methods differ in how fast they fit (FineCLS needs many epochs, FineAll
overfits a small task in a few), so a fixed epoch count would favour one of
them; each method keeps the weights of its best validation epoch instead.
"""

import time

import numpy as np

from model.training.training_log import DEFAULT_PROGRESS_SECONDS, format_eta
from util.errors import UserInputError


def train_epochs(trainer, distributed_dataset, steps_per_epoch, epochs, validate, log=print,
                 progress_seconds=DEFAULT_PROGRESS_SECONDS):
    """Trains ``epochs`` epochs, validating after each; leaves the best epoch's weights in place.

    Args:
        trainer: a ``DistributedTrainer`` (its ``variables`` are what is kept).
        distributed_dataset: an endless distributed dataset of training batches.
        steps_per_epoch: steps per epoch.
        epochs: epochs to run.
        validate: ``() -> float``, higher is better (the task's headline metric).
        log: called with one progress line per epoch, and within an epoch at
            least every ``progress_seconds`` (steps/s and the time left).
        progress_seconds: seconds between progress lines within an epoch.

    Returns:
        dict: ``best_epoch``, ``best_validation``, ``history`` (per-epoch loss,
        validation, seconds) and ``seconds``.

    Raises:
        UserInputError: the loss or the trained weights became non-finite
            (nothing is kept from that epoch on).
    """
    started = time.perf_counter()
    iterator = iter(distributed_dataset)
    best_value, best_epoch, best_weights = -np.inf, 0, None
    history = []
    total_steps = steps_per_epoch * epochs
    last_line = started
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        losses = []
        for step in range(1, steps_per_epoch + 1):
            losses.append(float(trainer.train_step(next(iterator))["loss"]))
            now = time.perf_counter()
            if now - last_line >= progress_seconds and step < steps_per_epoch:
                last_line = now
                done = (epoch - 1) * steps_per_epoch + step
                rate = done / max(now - started, 1e-9)
                log(f"  epoch {epoch}/{epochs}: step {step}/{steps_per_epoch}  loss "
                    f"{np.mean(losses):.4f}  {rate:,.2f} steps/s  ETA "
                    f"{format_eta((total_steps - done) / rate)} to the last epoch's end "
                    f"(validation not counted)")
        loss = float(np.mean(losses))
        if not np.isfinite(loss):
            raise UserInputError(f"the loss became {loss} in epoch {epoch}; lower --learning_rate")
        weights = [variable.numpy() for variable in trainer.variables]
        if not all(np.isfinite(value).all() for value in weights
                   if np.issubdtype(value.dtype, np.floating)):
            raise UserInputError(
                f"the trained weights became non-finite in epoch {epoch}; nothing was saved; "
                f"lower --learning_rate or set --max_grad_norm")
        value = float(validate())
        seconds = time.perf_counter() - epoch_started
        improved = value > best_value
        if improved:
            best_value, best_epoch, best_weights = value, epoch, weights
        history.append({"epoch": epoch, "loss": loss, "validation": value, "seconds": seconds})
        last_line = time.perf_counter()
        done = epoch * steps_per_epoch
        left = (last_line - started) / epoch * (epochs - epoch)
        log(f"epoch {epoch}/{epochs}  loss {loss:.4f}  validation {value:.4f}"
            f"{'  (best)' if improved else ''}  {seconds:.1f} s  "
            f"{done / max(last_line - started, 1e-9):,.2f} steps/s  ETA {format_eta(left)}")
    if best_weights is not None:
        for variable, value in zip(trainer.variables, best_weights):
            variable.assign(value)
    return {"best_epoch": best_epoch, "best_validation": best_value, "history": history,
            "seconds": time.perf_counter() - started}
