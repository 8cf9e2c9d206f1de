"""The flags of ``main/finetune.py``."""

import argparse

from main.flags.common import (
    FlagHelpFormatter,
    add_item_head_flag,
    add_optimisation_flags,
    add_strategy_flag,
    add_task_users_flags,
)
from model.layers.sequence_readout import CLS, READOUTS, readout_width
from model.methods.peterrec import PATCH_PLACEMENTS, SERIAL
from model.methods.registry import DEFAULT_METHOD, METHODS, method_names
from model.tasks.item_recommendation import ITEM_EMBEDDING
from model.tasks.registry import NEXT_ITEM_TASK, RECOMMENDATION_TASK
from util.flag_types import boolean, non_negative_int, positive_int, probability


def finetune_flag_parser():
    parser = argparse.ArgumentParser(
        prog="main/finetune.py",
        description="Fine-tune a pretrained backbone (main/train.py --model=nextitnet|grec) "
                    "on one downstream task with PeterRec's model patches or a baseline method; writes the task's own parameters, its "
                    "metrics on the test users and task.json into --output_dir.",
        formatter_class=FlagHelpFormatter)
    task = parser.add_argument_group("task")
    task.add_argument("--pretrained", required=True,
                      help="the pretraining run folder (its model_arch.json and ckpt-<step>)")
    task.add_argument("--pretrained_step", type=non_negative_int, default=0,
                      help="checkpoint step of the pretrained run; 0: its latest")
    task.add_argument("--task", required=True,
                      help=f"a label column of --labels (classification, e.g. gender), or "
                           f"'{RECOMMENDATION_TASK}': recommend the items of each user's target "
                           f"window (cold-start recommendation)")
    add_task_users_flags(task)
    task.add_argument("--max_items_per_user", type=non_negative_int, default=0,
                      help="most recent history items each user's sequence holds (the table "
                           "must hold them: main/build_tables.py --max_items_per_user); 0: as "
                           "many as the pretrained run read")
    task.add_argument("--readout", choices=READOUTS, default=CLS,
                      help="how the user vector is read from the encoder's states: cls (the "
                           "CLS token(s), PeterRec's), mean (mean over every position), "
                           "attention (a learned weighted mean, trained with the head), "
                           "cls_mean (both, side by side)")
    add_item_head_flag(task)

    method = parser.add_argument_group("method")
    method.add_argument("--method", choices=method_names(), default=DEFAULT_METHOD,
                        help="; ".join(f"{name}: {method.summary}"
                                       for name, method in METHODS.items()
                                       if not method.continual))
    method.add_argument("--patch", choices=PATCH_PLACEMENTS, default=SERIAL,
                        help="peterrec: where the model patches go: serial (after each "
                             "convolution, before its LayerNorm), serial_after_norm (after the "
                             "LayerNorm, before the ReLU) or parallel (beside each convolution)")
    method.add_argument("--patch_bottleneck", type=non_negative_int, default=0,
                        help="channels inside a model patch; 0: model_dim / 8")
    method.add_argument("--train_layer_norms", type=boolean, default=True,
                        help="peterrec: also train the backbone's LayerNorms (a few hundred "
                             "numbers, as the authors' code did)")

    optimisation = parser.add_argument_group("optimisation")
    optimisation.add_argument("--epochs", type=positive_int, default=10,
                              help="passes over the train users")
    add_optimisation_flags(optimisation, batch_help="GLOBAL batch size, users per step")
    optimisation.add_argument("--num_negatives", type=positive_int, default=1,
                              help="items: uniform negatives per positive in training")
    optimisation.add_argument("--dropout_rate", type=probability, default=0.1,
                              help="dropout in the encoder and before the classification head")

    run = parser.add_argument_group("output and distribution")
    run.add_argument("--output_dir", default="",
                     help="where the task is written; empty: runs/finetune/<task>-<method>")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing --output_dir (only a task folder main/finetune.py "
                          "wrote, holding nothing else, is replaced)")
    add_strategy_flag(run)
    return parser


def parse_finetune_flags(argv=None):
    parser = finetune_flag_parser()
    flags = parser.parse_args(argv)
    if not flags.output_dir:
        flags.output_dir = f"runs/finetune/{flags.task}-{flags.method}"
    if flags.readout != CLS and flags.task == NEXT_ITEM_TASK:
        parser.error(f"--readout={flags.readout}: --task={NEXT_ITEM_TASK} reads the state at each "
                     f"user's last item, the one next-item pretraining trained; leave --readout "
                     f"out")
    if flags.item_head == ITEM_EMBEDDING and readout_width(flags.readout, 1) != 1:
        parser.error(f"--item_head={flags.item_head} scores against the item embedding, as wide "
                     f"as one encoder state; --readout={flags.readout} is twice as wide")
    return flags
