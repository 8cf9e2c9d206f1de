"""SUPERMOE as a registered model family (``--model=supermoe``).

A sparse mixture-of-experts transformer over item sequences, trained on
``--tasks`` at once (``model/supermoe/multi_task_model.py`` says what the
task indicator does; ``multi_task_trainer.py`` what one step minimises).
"""

import dataclasses

import tensorflow as tf

from contracts import schema
from model.model_family import ModelFamily, architecture, setting
from model.supermoe.multi_task_inputs import MULTI_TASK_SEQUENCES, task_names
from model.supermoe.multi_task_model import SupermoeModel
from model.supermoe.multi_task_trainer import MultiTaskTrainer
from model.supermoe.serving import served_run_tasks
from model.supermoe.task_scores import write_task_scores
from util.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class SupermoeConfig:
    """SUPERMOE's architecture, as ``model_arch.json`` records it (the flags of the same names)."""

    num_item_ids: int = architecture()
    model_dim: int = architecture()
    num_blocks: int = architecture()
    num_heads: int = architecture()
    num_experts: int = architecture()
    experts_per_token: int = architecture()
    expert_hidden_dim: int = architecture()
    max_items_per_user: int = architecture()
    task_indicator: bool = architecture()
    per_task_routers: bool = architecture()
    model_tasks: tuple = architecture()
    capacity_factor: float = setting(1.25)
    dispatch: str = setting("sparse")
    dropout_rate: float = setting(0.0)


def build_supermoe(config):
    """A ``SupermoeModel`` of ``config``, every variable created."""
    model = SupermoeModel(
        num_item_ids=config.num_item_ids, dim=config.model_dim, num_blocks=config.num_blocks,
        num_heads=config.num_heads, num_experts=config.num_experts,
        experts_per_token=config.experts_per_token,
        hidden_dim=config.expert_hidden_dim or None, capacity_factor=config.capacity_factor,
        dispatch=config.dispatch, max_length=config.max_items_per_user + 1,
        task_indicator=config.task_indicator, per_task_routers=config.per_task_routers,
        dropout_rate=config.dropout_rate,
        tasks=[dict(task) for task in config.model_tasks], name="supermoe")
    sample = tf.constant([[schema.FIRST_ITEM_ID, schema.ITEM_CLS_ID]], dtype=tf.int32)
    for index in range(len(model.tasks)):
        view = model.task_view(index)
        view.head(view(sample))
    return model


def task_weights(settings, count):
    """``--task_weights`` as floats, one per task (empty: 1 each)."""
    if not settings.task_weights:
        return [1.0] * count
    try:
        weights = [float(value) for value in settings.task_weights.split(",")]
    except ValueError:
        raise UserInputError(f"--task_weights={settings.task_weights!r}: comma-separated "
                             f"numbers, one per --tasks entry") from None
    if len(weights) != count:
        raise UserInputError(f"--task_weights has {len(weights)} numbers for {count} --tasks")
    return weights


def make_multi_task_trainer(model, optimizer, strategy, settings, data):
    """Every task of ``data.objective`` on its own batch, plus the routers' auxiliary losses."""
    return MultiTaskTrainer(
        model, optimizer, strategy, data.objective,
        task_weights(settings, len(data.objective)), settings.load_balancing_weight,
        settings.router_z_weight, settings.max_grad_norm, settings.task_balance)


def _settings_problem(settings):
    if settings.model_dim % settings.num_heads:
        return (f"--model_dim={settings.model_dim} must be a multiple of "
                f"--num_heads={settings.num_heads} for --model=supermoe")
    if settings.experts_per_token > settings.num_experts:
        return (f"--experts_per_token={settings.experts_per_token} is more than "
                f"--num_experts={settings.num_experts}")
    try:
        task_weights(settings, len(task_names(settings.tasks)))
    except UserInputError as error:
        return str(error)
    return None


SUPERMOE = ModelFamily(
    name="supermoe",
    summary="sparse mixture-of-experts transformer, several tasks at once with task indicators",
    config_class=SupermoeConfig,
    build=build_supermoe,
    pretraining_inputs=MULTI_TASK_SEQUENCES,
    make_pretrainer=make_multi_task_trainer,
    settings_problem=_settings_problem,
    report_tasks=write_task_scores,
    served_tasks=served_run_tasks,
    traits={"causal": True},
)
