"""The flags of ``main/finetune.py``."""

import argparse

from model.finetune.methods import METHODS, PETERREC
from model.finetune.task_data import RECOMMENDATION_TASK
from util.distribution import STRATEGIES
from util.flag_types import boolean, non_negative_float, non_negative_int, positive_int, probability
from evaluation.probes import CANONICAL_SPLIT

PATCH_PLACEMENTS = ("serial", "serial_after_norm", "parallel")


def finetune_flag_parser():
    parser = argparse.ArgumentParser(
        prog="main/finetune.py",
        description="Fine-tune a pretrained NextItNet/GRec backbone (main/train.py "
                    "--model=nextitnet|grec) on one downstream task with PeterRec's model "
                    "patches or a baseline method; writes the task's own parameters, its "
                    "metrics on the test users and task.json into --output_dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    task = parser.add_argument_group("task")
    task.add_argument("--pretrained", required=True,
                      help="the pretraining run folder (its model_arch.json and ckpt-<step>)")
    task.add_argument("--pretrained_step", type=non_negative_int, default=0,
                      help="checkpoint step of the pretrained run; 0: its latest")
    task.add_argument("--task", required=True,
                      help=f"a label column of --labels (classification, e.g. gender), or "
                           f"'{RECOMMENDATION_TASK}': recommend the items of each user's target "
                           f"window (cold-start recommendation)")
    task.add_argument("--labels", default="",
                      help="label table (users.dat, .parquet, .csv, .tsv); empty: the "
                           "labels.parquet of the pretrained run's table folder")
    task.add_argument("--tables", default="",
                      help="sequence table; empty: the pretrained run's table folder")
    task.add_argument("--split", default=CANONICAL_SPLIT,
                      help="'canonical' (user_id %% 5 == 0 is test) or column:NAME of --labels "
                           "holding train/test")
    task.add_argument("--validation_fraction", type=probability, default=0.1,
                      help="share of the train users held out to choose the best epoch")

    method = parser.add_argument_group("method")
    method.add_argument("--method", choices=METHODS, default=PETERREC,
                        help="peterrec: model patches + head (+ LayerNorms) train, the backbone "
                             "is frozen; fineall: everything; finecls: the head; finelast: the "
                             "last residual block + head; scratch: everything from random weights")
    method.add_argument("--patch", choices=PATCH_PLACEMENTS, default="serial",
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
    optimisation.add_argument("--batch_size", type=positive_int, default=128,
                              help="GLOBAL batch size, users per step")
    optimisation.add_argument("--learning_rate", type=non_negative_float, default=1e-3,
                              help="Adam learning rate")
    optimisation.add_argument("--max_grad_norm", type=non_negative_float, default=0.0,
                              help="clip gradients to this global norm; 0 disables")
    optimisation.add_argument("--num_negatives", type=positive_int, default=1,
                              help="items: uniform negatives per positive in training")
    optimisation.add_argument("--dropout_rate", type=probability, default=0.1,
                              help="dropout in the encoder and before the classification head")
    optimisation.add_argument("--seed", type=int, default=42,
                              help="seed of the head, patches, shuffles and samples")

    run = parser.add_argument_group("output and distribution")
    run.add_argument("--output_dir", default="",
                     help="where the task is written; empty: runs/finetune/<task>-<method>")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing --output_dir")
    run.add_argument("--strategy", choices=STRATEGIES, default="auto",
                     help="tf.distribute strategy, as in main/train.py")
    return parser


def parse_finetune_flags(argv=None):
    flags = finetune_flag_parser().parse_args(argv)
    if not flags.output_dir:
        flags.output_dir = f"runs/finetune/{flags.task}-{flags.method}"
    return flags
