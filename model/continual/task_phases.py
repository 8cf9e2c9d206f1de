"""One training phase of a continual task: the method's variables, fresh Adam, the best epoch kept."""

from model.finetune.task_trainer import TaskTrainer, task_training_dataset
from model.training.epoch_loop import train_epochs
from model.training.optimizer import build_optimizer


def train_phase(model, task, method, description, strategy, settings, epochs, log, phase,
                extra_variables=(), make_trainer=None):
    """Trains ``method.trainable_variables`` of ``model`` on ``task`` for ``epochs`` epochs.

    A fresh optimizer per phase: Adam's moments of one phase must not move
    weights that the next phase leaves out (their gradient is then zero, but
    a moment left from before is not).

    ``extra_variables`` train too (TERACON: the old tasks' heads);
    ``make_trainer(optimizer, variables, steps_per_epoch)`` builds the
    trainer (default: a ``TaskTrainer`` of the task's own loss).

    Returns:
        dict of the best epoch, its validation headline and the seconds; None for 0 epochs.
    """
    if epochs == 0:
        return None
    with strategy.scope():
        variables = method.trainable_variables(model, description) + list(extra_variables)
        optimizer = build_optimizer(settings.learning_rate, "none", variables)
    dataset, steps_per_epoch = task_training_dataset(task, strategy, settings.batch_size,
                                                     settings.seed, settings)
    if make_trainer is None:
        trainer = TaskTrainer(model, task, method, optimizer, strategy, settings.max_grad_norm,
                              variables)
    else:
        trainer = make_trainer(optimizer, variables, steps_per_epoch)
    log(f"{phase}: {epochs} epoch(s) of {steps_per_epoch} steps")
    result = train_epochs(trainer, dataset, steps_per_epoch, epochs,
                          lambda: task.scores(model, task.validation)[task.headline], log=log,
                          progress_seconds=settings.progress_seconds)
    return {key: result[key] for key in ("best_epoch", "best_validation", "seconds")}
