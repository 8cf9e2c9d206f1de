"""Flag groups that several entry points share, declared once with their defaults.

``main/train.py`` and ``main/finetune.py`` share the optimisation group;
every script that reads behaviour histories shares SUMN's history limits
(``--max_query_per_week`` x ``--max_words_per_query``, 900 x 24 by default,
``contracts.schema``). Every entry point's parser uses ``FlagHelpFormatter``,
so ``--help`` shows each default as it would be typed on the command line.
"""

import argparse
import copy

from contracts import schema
from util.flag_types import non_negative_float, non_negative_int, positive_int, probability

DEFAULT_SEED = 42
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_BATCH_SIZE = 128


def flag_text(value):
    """``value`` as a user would type it after ``--flag=``: ``1``/``0``, ``1,2,4,8``, ``0.001``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (tuple, list)):
        return ",".join(str(flag_text(part)) for part in value)
    return value


class FlagHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: ...)`` where a flag's help does not state it, in the flag's own form.

    argparse prints the Python value of a default (``True``, ``(512,)``),
    which is not what the flag accepts; here booleans read ``1``/``0`` and
    lists ``512`` or ``1,2,4,8``. Switches (``store_true``) read ``off``; flags
    that are required or default to None (their help says what happens
    instead) or to an empty string (the help says what empty means) get no
    default at all.
    """

    def _get_help_string(self, action):
        help_text = action.help or ""
        if "%(default)" in help_text or "(default:" in help_text:
            return help_text
        if action.default in (argparse.SUPPRESS, None, "") or action.required:
            return help_text
        if action.nargs == 0:  # store_true / store_false: a switch, not a value
            return f"{help_text} (default: {'on' if action.default else 'off'})"
        return super()._get_help_string(action)

    def _expand_help(self, action):
        # The help string is chosen from the real default (a switch's False),
        # then expanded with the default as typed.
        shown = copy.copy(action)
        shown.help = self._get_help_string(action)
        if action.default is not argparse.SUPPRESS:
            shown.default = flag_text(action.default)
        return super()._expand_help(shown)


def add_history_limit_flags(group, from_run=False, positive=True):
    """``--max_query_per_week`` and ``--max_words_per_query``.

    Args:
        group: an argparse parser or argument group.
        from_run: the defaults are the training run's values (inference), not SUMN's.
        positive: reject 0 and negative values.
    """
    value_type = positive_int if positive else int
    if from_run:
        behaviours = words = None
        behaviours_help = "the training run's value in model_arch.json"
        words_help = behaviours_help
    else:
        behaviours, words = schema.DEFAULT_MAX_BEHAVIOURS, schema.DEFAULT_MAX_WORDS
        # %(default)s: argparse's ArgumentDefaultsHelpFormatter then adds nothing more.
        behaviours_help = words_help = "%(default)s"
    group.add_argument("--max_query_per_week", type=value_type, default=behaviours,
                       help=f"behaviours kept per user history, the most recent "
                            f"(default: {behaviours_help})")
    group.add_argument("--max_words_per_query", type=value_type, default=words,
                       help=f"words kept per behaviour, the first ones; the item-id token is "
                            f"first (default: {words_help})")


def add_optimisation_flags(group, batch_help="GLOBAL batch size (split over replicas)"):
    """Batch size, Adam learning rate, gradient clipping and the seed."""
    group.add_argument("--batch_size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                       help=f"{batch_help} (default: %(default)s)")
    group.add_argument("--learning_rate", type=non_negative_float, default=DEFAULT_LEARNING_RATE,
                       help="Adam learning rate (default: %(default)s)")
    group.add_argument("--max_grad_norm", type=non_negative_float, default=0.0,
                       help="clip gradients to this global norm; 0 disables clipping "
                            "(default: %(default)s)")
    group.add_argument("--seed", type=int, default=DEFAULT_SEED,
                       help="seed of initialisation, shuffling, sampling and dropout "
                            "(default: %(default)s)")


def add_strategy_flag(group):
    """``--strategy``: which ``tf.distribute`` strategy runs the job."""
    # Imported here: util.distribution loads TensorFlow, which main/build_tables.py
    # (the history-limit flags' other user) never needs.
    from util.distribution import STRATEGIES

    group.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="auto: multi_worker when TF_CONFIG names several workers, "
                            "mirrored when more than one GPU, else default (default: %(default)s)")


def add_cpu_replicas_flag(group):
    """``--cpu_replicas``: logical CPU devices for ``--strategy=mirrored`` without GPUs."""
    group.add_argument("--cpu_replicas", type=non_negative_int, default=0,
                       help="split the CPU into N logical devices for --strategy=mirrored "
                            "(try distribution without GPUs); 0 leaves it whole")


def add_item_head_flag(group):
    """``--item_head``: what an item-recommendation head scores users against."""
    # Imported here, as in add_task_users_flags: the task modules load TensorFlow.
    from model.tasks.item_recommendation import ITEM_EMBEDDING, ITEM_HEADS, OWN_ITEM_TABLE

    group.add_argument("--item_head", choices=("",) + ITEM_HEADS, default="",
                       help=f"--task=items: {OWN_ITEM_TABLE}: a new table of item vectors "
                            f"and biases (PeterRec's; as many weights as the item embedding); "
                            f"{ITEM_EMBEDDING}: the backbone's item embedding itself, with a "
                            f"per-dimension scale and shift of the user vector (2 x dim "
                            f"weights of the task's own); empty: the method's ({ITEM_EMBEDDING} "
                            f"for teracon, whose item embedding trains with every task; "
                            f"{OWN_ITEM_TABLE} for the others: PeterRec and Conure freeze it)")


def add_task_users_flags(group):
    """Where a downstream task's users and labels come from: main/finetune.py and main/continual.py."""
    # Imported here: evaluation.probes loads scikit-learn, which main/build_tables.py never needs.
    from evaluation.probes import CANONICAL_SPLIT

    group.add_argument("--labels", default="",
                       help="label table (users.dat, .parquet, .csv, .tsv); empty: the "
                            "labels.parquet of the pretrained run's table folder")
    group.add_argument("--tables", default="",
                       help="sequence table; empty: the pretrained run's table folder")
    group.add_argument("--split", default=CANONICAL_SPLIT,
                       help="'canonical' (user_id %% 5 == 0 is test) or column:NAME of --labels "
                            "holding train/test")
    group.add_argument("--validation_fraction", type=probability, default=0.1,
                       help="share of the train users held out to choose the best epoch")
