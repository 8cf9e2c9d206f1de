"""The flags of ``main/train.py``: SUMN's names and defaults, plus what a modern run needs.

SUMN's own flag names are kept so its users' scripts keep working; its README
passes ``--dropout``, which its parser ignored, so here it is an alias of
``--dropout_rate``.
"""

import argparse

from model.pooling import POOLING_STRATEGIES
from util.distribution import STRATEGIES

DEFAULT_CHECKPOINT_DIR = "runs/sumn"
DEFAULT_DEMO_TABLES_DIR = "runs/demo/tables"
MIXED_PRECISION_POLICIES = ("none", "mixed_float16", "mixed_bfloat16")


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _non_negative_float(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _probability(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _boolean(text):
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"must be 0/1 or true/false, got {text}")


def _layer_widths(text):
    try:
        widths = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated layer widths like 512 or 1024,512, got {text}") from None
    if any(width <= 0 for width in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text}")
    return widths


def training_flag_parser():
    """The argparse parser of ``main/train.py``."""
    parser = argparse.ArgumentParser(
        prog="main/train.py",
        description="Pretrain SUMN user representations with the behavioural-consistency "
                    "objective. Resumes from the latest checkpoint in --checkpoint_dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--tables", default="",
                      help="training table: a folder from main/build_tables.py, a glob, or "
                           "comma-separated shard files (.parquet or .tfrecord). Empty: build the "
                           f"built-in demo data into {DEFAULT_DEMO_TABLES_DIR} and train on it")
    data.add_argument("--max_query_per_week", type=_positive_int, default=900,
                      help="behaviours kept per user history (the most recent)")
    data.add_argument("--max_words_per_query", type=_positive_int, default=24,
                      help="words kept per behaviour (the first ones)")
    data.add_argument("--target_length", type=_positive_int, default=500,
                      help="target words kept per user (the most frequent)")
    data.add_argument("--weighted_target", type=_boolean, default=False,
                      help="1: weight target words by log(1 + count); 0: uniformly")
    data.add_argument("--shuffle_buffer", type=_non_negative_int, default=10_000,
                      help="records held for shuffling; 0 reads in file order")
    data.add_argument("--random_target_fraction", type=_probability, default=0.0,
                      help="0: train on the table's fixed history/target windows; f in (0, 1): "
                           "read whole sequences (a table folder's inference/ table) and draw a "
                           "fresh random split of every user in every batch, f of the behaviours "
                           "as the target, so a small data set is not memorised")
    data.add_argument("--group_by_length", type=_boolean, default=True,
                      help="1: batch users of similar history length together (within the "
                           "shuffle buffer; batch order stays random), so little compute goes "
                           "to padding; 0: batches mix lengths freely")

    model = parser.add_argument_group("model")
    model.add_argument("--num_vocabulary", type=_non_negative_int, default=0,
                       help="vocabulary size; 0 takes it from the tables' manifest.json")
    model.add_argument("--word_emb_dim", type=_positive_int, default=256,
                       help="word embedding width")
    model.add_argument("--model_dim", type=_positive_int, default=256,
                       help="behaviour and user vector width")
    model.add_argument("--pooling", choices=sorted(POOLING_STRATEGIES), default="mhop",
                       help="how behaviours become a user vector")
    model.add_argument("--num_hops", type=_positive_int, default=5,
                       help="hops of mhop/gruhop pooling (max and mean have one)")
    model.add_argument("--mlp_layers", type=_layer_widths, default=(512,),
                       help="hidden widths of the consistency decoder, comma-separated")
    model.add_argument("--dropout_rate", "--dropout", dest="dropout_rate", type=_probability,
                       default=0.1, help="dropout before each decoder layer")

    optimisation = parser.add_argument_group("optimisation")
    optimisation.add_argument("--batch_size", type=_positive_int, default=128,
                              help="GLOBAL batch size (split over replicas)")
    optimisation.add_argument("--learning_rate", type=_non_negative_float, default=1e-3,
                              help="Adam learning rate")
    optimisation.add_argument("--max_grad_norm", type=_non_negative_float, default=0.0,
                              help="clip gradients to this global norm; 0 disables clipping")
    optimisation.add_argument("--max_steps", type=_positive_int, default=1_000_000,
                              help="train until this global step")
    optimisation.add_argument("--seed", type=int, default=42,
                              help="seed of initialisation, shuffling and dropout")
    optimisation.add_argument("--mixed_precision", choices=MIXED_PRECISION_POLICIES,
                              default="none", help="Keras mixed-precision policy "
                              "(mixed_float16 on GPUs, mixed_bfloat16 on recent CPUs/TPUs)")

    run = parser.add_argument_group("checkpoints, logs and distribution")
    run.add_argument("--checkpoint_dir", default=DEFAULT_CHECKPOINT_DIR,
                     help="checkpoints (ckpt-<step>), model_arch.json and TensorBoard logs")
    run.add_argument("--snapshot", type=_positive_int, default=100_000,
                     help="save a checkpoint every this many steps (and at the end)")
    run.add_argument("--keep_checkpoints", type=_positive_int, default=20,
                     help="most recent checkpoints kept")
    run.add_argument("--init_checkpoint", default="",
                     help="warm-start the encoder (not the decoder) from this checkpoint "
                          "(a ckpt-<step> prefix or a run folder: its latest)")
    run.add_argument("--log_every", type=_positive_int, default=100,
                     help="print a progress line and write TensorBoard scalars every N steps")
    run.add_argument("--overwrite", action="store_true",
                     help="delete an existing --checkpoint_dir and start afresh")
    run.add_argument("--strategy", choices=STRATEGIES, default="auto",
                     help="auto: multi_worker when TF_CONFIG names several workers, "
                          "mirrored when more than one GPU, else default")
    run.add_argument("--cpu_replicas", type=_non_negative_int, default=0,
                     help="split the CPU into N logical devices for --strategy=mirrored "
                          "(try distribution without GPUs); 0 leaves it whole")
    return parser


def parse_training_flags(argv=None):
    """Parses and cross-checks the flags; argparse exits 2 naming a bad flag."""
    parser = training_flag_parser()
    flags = parser.parse_args(argv)
    if flags.snapshot > flags.max_steps:
        flags.snapshot = flags.max_steps
    return flags
