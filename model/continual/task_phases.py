"""One training phase of a continual task: the method's variables, fresh Adam, the best epoch kept."""

from model.finetune.task_trainer import TaskTrainer, task_training_dataset
from model.training.epoch_loop import train_epochs
from model.training.optimizer import build_optimizer


def train_phase(model, task, method, description, strategy, settings, epochs, log, phase):
    """Trains ``method.trainable_variables`` of ``model`` on ``task`` for ``epochs`` epochs.

    A fresh optimizer per phase: Adam's moments of one phase must not move
    weights that the next phase leaves out (their gradient is then zero, but
    a moment left from before is not).

    Returns:
        dict of the best epoch, its validation headline and the seconds; None for 0 epochs.
    """
    if epochs == 0:
        return None
    with strategy.scope():
        variables = method.trainable_variables(model, description)
        optimizer = build_optimizer(settings.learning_rate, "none", variables)
    dataset, steps_per_epoch = task_training_dataset(task, strategy, settings.batch_size,
                                                     settings.seed, settings)
    trainer = TaskTrainer(model, task, method, optimizer, strategy, settings.max_grad_norm,
                          variables)
    log(f"{phase}: {epochs} epoch(s) of {steps_per_epoch} steps")
    result = train_epochs(trainer, dataset, steps_per_epoch, epochs,
                          lambda: task.scores(model, task.validation)[task.headline], log=log,
                          progress_seconds=settings.progress_seconds)
    return {key: result[key] for key in ("best_epoch", "best_validation", "seconds")}
