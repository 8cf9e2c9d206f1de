"""The flags of ``main/continual.py``."""

import argparse

from main.flags.common import (
    FlagHelpFormatter,
    add_cpu_replicas_flag,
    add_item_head_flag,
    add_optimisation_flags,
    add_strategy_flag,
    add_task_users_flags,
)
from model.continual.knowledge_retention import RETENTION_POSITIONS
from model.layers.task_embedding_mask_adapter import DEFAULT_S_MAX
from model.methods.conure import DEFAULT_PRUNE_RATIO
from model.methods.teracon import (DEFAULT_FIRST_TASK_REPLAY_WEIGHT, DEFAULT_RETENTION_MIN_SHARE,
                                   DEFAULT_RETENTION_TOP_K, DEFAULT_RETENTION_WEIGHT,
                                   RETENTION_SCALES)
from model.methods.registry import DEFAULT_CONTINUAL_METHOD, METHODS, method_names
from model.tasks.registry import NEXT_ITEM_TASK, RECOMMENDATION_TASK
from util.flag_types import non_negative_float, non_negative_int, positive_int, probability
from util.errors import UserInputError

# Conure's downstream settings (SYSTEMS.md): Adam 1e-4, batch 512; task 1 retrains at 1e-3.
DEFAULT_TASK_LEARNING_RATE = 1e-4
DEFAULT_TASK_BATCH_SIZE = 512


def continual_flag_parser():
    parser = argparse.ArgumentParser(
        prog="main/continual.py",
        description="Learn task after task into ONE model folder that keeps serving every task "
                    "learned so far (Conure: a binary mask per task on the convolution kernels "
                    "of a pretrained NextItNet; TERACON: soft masks from task embeddings, every "
                    "weight trainable, old tasks kept by a retention loss). The first call needs "
                    "--pretrained and learns "
                    f"task 1, '{NEXT_ITEM_TASK}' (the pretraining objective, pruned and "
                    "retrained), before --task; later calls add one task each.",
        formatter_class=FlagHelpFormatter)
    folder = parser.add_argument_group("model folder")
    folder.add_argument("--model_dir", required=True,
                        help="the continual model folder (created by the first call)")
    folder.add_argument("--list", action="store_true",
                        help="print the tasks learned and the capacity used and free per layer, "
                             "then exit")
    folder.add_argument("--evaluate", default="",
                        help="score every learned task on its test users as the folder serves "
                             "it now, write the scores to this JSON file, then exit")
    folder.add_argument("--method", choices=method_names(continual=True), default="",
                        help="; ".join(f"{name}: {method.summary}" for name, method
                                       in METHODS.items() if method.continual)
                             + f"; empty: the folder's, or {DEFAULT_CONTINUAL_METHOD} for a "
                               f"new folder")
    folder.add_argument("--pretrained", default="",
                        help="the main/train.py --model=nextitnet run a new folder starts from; "
                             "empty: the folder's (required for a new folder)")
    folder.add_argument("--pretrained_step", type=non_negative_int, default=0,
                        help="checkpoint step of --pretrained; 0: its latest")

    task = parser.add_argument_group("task")
    task.add_argument("--task", default="",
                      help=f"the task to learn: '{NEXT_ITEM_TASK}' (task 1 only), "
                           f"'{RECOMMENDATION_TASK}' (recommend the items of each user's target "
                           f"window) or a label column of --labels (e.g. gender)")
    task.add_argument("--overwrite_task", action="store_true",
                      help="learn --task again although it is learned; only the last task "
                           "learned can be (later tasks are built on its weights)")
    add_task_users_flags(task)
    add_item_head_flag(task)

    conure = parser.add_argument_group("conure")
    conure.add_argument("--prune_ratio", type=probability, default=DEFAULT_PRUNE_RATIO,
                        help="share of the free weights of each kernel a task gives back after "
                             "training (the paper's 0.7: task 1 keeps 30%% of every kernel, "
                             "task 2 21%%, task 3 14.7%%, ...)")
    conure.add_argument("--epochs", type=positive_int, default=5,
                        help="epochs of training the free weights (tasks 2, 3, ...); "
                             "sequential_fineall and teracon train --epochs + --retrain_epochs")
    conure.add_argument("--retrain_epochs", type=non_negative_int, default=2,
                        help="epochs of retraining the kept weights after pruning")
    conure.add_argument("--first_task_epochs", type=non_negative_int, default=1,
                        help=f"epochs of retraining task 1 ({NEXT_ITEM_TASK}) on its kept "
                             f"weights (teracon: through its masks), over every user's history")
    conure.add_argument("--first_task_learning_rate", type=non_negative_float, default=1e-3,
                        help="Adam learning rate of task 1's retraining")
    conure.add_argument("--first_task_batch_size", type=positive_int, default=64,
                        help="GLOBAL users per step of task 1's retraining")
    conure.add_argument("--num_sampled", type=non_negative_int, default=-1,
                        help="task 1: sampled-softmax negatives per batch; 0: full softmax; "
                             "default (-1): the pretrained run's --num_sampled")

    teracon = parser.add_argument_group("teracon")
    teracon.add_argument("--s_max", type=_mask_scale, default=0.0,
                         help=f"scale the masks are served at and annealed to within each epoch "
                              f"(a folder's setting); 0: the folder's, or {DEFAULT_S_MAX:g} for "
                              f"a new folder")
    teracon.add_argument("--retention_weight", type=non_negative_float,
                         default=DEFAULT_RETENTION_WEIGHT,
                         help="alpha, the weight of the knowledge-retention loss that keeps the "
                              "earlier tasks' outputs; 0: none (old tasks are forgotten)")
    teracon.add_argument("--retention_top_k", type=non_negative_int,
                         default=DEFAULT_RETENTION_TOP_K,
                         help="item heads' pseudo-labels: the teacher's top-k items per user "
                              "(bounded memory); 0: every item's score, as the original")
    teracon.add_argument("--retention_min_share", type=probability,
                         default=DEFAULT_RETENTION_MIN_SHARE,
                         help="the least share of each batch an old task is retained on; 0: "
                              "the paper's share from the mask similarity alone (on ML-1M "
                              "about 0.3%%, one user of 128, and T1 is forgotten)")
    teracon.add_argument("--retention_scale", choices=RETENTION_SCALES, default="annealed",
                         help="mask scale the retention loss compares old tasks at: annealed "
                              "(the step's, as the paper) or served (--s_max, the scale old "
                              "tasks are served and scored at)")
    teracon.add_argument("--retention_positions", choices=RETENTION_POSITIONS, default="newest",
                         help="where T1's next-item head is retained: newest (its output at the "
                              "newest item, as the paper) or all (at every position of the "
                              "history, as T1 was trained)")
    teracon.add_argument("--first_task_replay_weight", type=non_negative_float,
                         default=DEFAULT_FIRST_TASK_REPLAY_WEIGHT,
                         help="weight of task 1's own next-item loss on the new task's histories "
                              "(its labels are the histories' next items), beside retention "
                              "(beyond the paper: its pseudo-labels alone forget T1); 0: none, "
                              "as the paper")

    optimisation = parser.add_argument_group("optimisation (tasks 2, 3, ...)")
    add_optimisation_flags(optimisation, batch_help="GLOBAL batch size, users per step")
    optimisation.set_defaults(learning_rate=DEFAULT_TASK_LEARNING_RATE,
                              batch_size=DEFAULT_TASK_BATCH_SIZE)
    optimisation.add_argument("--num_negatives", type=positive_int, default=1,
                              help="items: uniform negatives per positive in training")
    optimisation.add_argument("--dropout_rate", type=probability, default=0.1,
                              help="dropout in the encoder and before a classification head")
    optimisation.add_argument("--progress_seconds", type=positive_int, default=30,
                              help="seconds between progress lines within an epoch")

    run = parser.add_argument_group("distribution")
    add_strategy_flag(run)
    add_cpu_replicas_flag(run)
    return parser


def _mask_scale(text):
    value = non_negative_float(text)
    if value != 0 and value < 1:
        raise argparse.ArgumentTypeError(f"must be 0 (the folder's) or at least 1, got {text}")
    return value


def parse_continual_flags(argv=None):
    flags = continual_flag_parser().parse_args(argv)
    if not flags.list and not flags.evaluate and not flags.task:
        raise UserInputError("--task is empty: name the task to learn, or pass --list or "
                             "--evaluate")
    return flags
