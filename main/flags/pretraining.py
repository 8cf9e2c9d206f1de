"""The flags of ``main/train.py``: SUMN's names and defaults, plus what a modern run needs.

SUMN's own flag names are kept so its users' scripts keep working; its README
passes ``--dropout``, which its parser ignored, so here it is an alias of
``--dropout_rate``.
"""

import argparse

from main.flags.common import (
    FlagHelpFormatter,
    add_cpu_replicas_flag,
    add_history_limit_flags,
    add_optimisation_flags,
    add_strategy_flag,
)
from model import registry
from model.sumn.pooling import POOLING_STRATEGIES
from model.supermoe.task_gradient_balance import TASK_BALANCES
from model.training.training_log import DEFAULT_PROGRESS_SECONDS
from util.flag_types import (
    boolean,
    layer_widths,
    non_negative_float,
    positive_float,
    non_negative_int,
    positive_int,
    positive_int_list,
    probability,
)

# Where a run of family F goes without --checkpoint_dir: runs/F (runs/sumn is
# where main/inference.py looks by default).
CHECKPOINT_DIR_PATTERN = "runs/{model}"
DEFAULT_CHECKPOINT_DIR = CHECKPOINT_DIR_PATTERN.format(model=registry.DEFAULT_FAMILY)
DEFAULT_DEMO_TABLES_DIR = "runs/demo/tables"
MIXED_PRECISION_POLICIES = ("none", "mixed_float16", "mixed_bfloat16")


def training_flag_parser():
    """The argparse parser of ``main/train.py``."""
    parser = argparse.ArgumentParser(
        prog="main/train.py",
        description="Pretrain user representations: SUMN (the default) with the behavioural-"
                    "consistency objective, or a NextItNet/GRec item-sequence backbone for "
                    "PeterRec fine-tuning (--model). Resumes from the latest checkpoint in "
                    "--checkpoint_dir.",
        formatter_class=FlagHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--tables", default="",
                      help="training table: a folder from main/build_tables.py, a glob, or "
                           "comma-separated shard files (.parquet or .tfrecord). Empty: build the "
                           f"built-in demo data into {DEFAULT_DEMO_TABLES_DIR} and train on it")
    add_history_limit_flags(data)
    data.add_argument("--target_length", type=positive_int, default=500,
                      help="target words kept per user (the most frequent)")
    data.add_argument("--weighted_target", type=boolean, default=False,
                      help="1: weight target words by log(1 + count); 0: uniformly")
    data.add_argument("--shuffle_buffer", type=non_negative_int, default=10_000,
                      help="records held for shuffling; 0 reads in file order")
    data.add_argument("--random_target_fraction", type=probability, default=0.0,
                      help="0: train on the table's fixed history/target windows; f in (0, 1): "
                           "read whole sequences (a table folder's inference/ table) and draw a "
                           "fresh random split of every user in every batch, f of the behaviours "
                           "as the target, so a small data set is not memorised")
    data.add_argument("--group_by_length", type=boolean, default=True,
                      help="1: batch users of similar history length together (within the "
                           "shuffle buffer; batch order stays random), so little compute goes "
                           "to padding; 0: batches mix lengths freely")

    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=registry.family_names(),
                       default=registry.DEFAULT_FAMILY,
                       help="; ".join(f"{family.name}: {family.summary}"
                                      for family in registry.FAMILIES.values()))
    model.add_argument("--num_vocabulary", type=non_negative_int, default=0,
                       help="vocabulary size; 0 takes it from the tables' manifest.json")
    model.add_argument("--word_emb_dim", type=positive_int, default=256,
                       help="word embedding width")
    model.add_argument("--model_dim", type=positive_int, default=256,
                       help="behaviour and user vector width")
    model.add_argument("--pooling", choices=sorted(POOLING_STRATEGIES), default="mhop",
                       help="how behaviours become a user vector")
    model.add_argument("--num_hops", type=positive_int, default=5,
                       help="hops of mhop/gruhop pooling (max and mean have one)")
    model.add_argument("--mlp_layers", type=layer_widths, default=(512,),
                       help="hidden widths of the consistency decoder, comma-separated")
    model.add_argument("--dropout_rate", type=probability, default=0.1,
                       help="dropout before each decoder layer; --dropout is the same flag")
    # SUMN's spelling, declared apart (and hidden) so that an error names the
    # flag the user typed rather than "--dropout_rate/--dropout".
    model.add_argument("--dropout", dest="dropout_rate", type=probability,
                       default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    objectives = parser.add_argument_group(
        "objectives beyond SUMN's (--model=sumn; added to the consistency loss, off by default)")
    objectives.add_argument("--contrastive_weight", type=non_negative_float, default=0.0,
                            help="weight of the InfoNCE loss between two disjoint random views "
                                 "of each user's behaviours (model/sumn/view_contrastive_loss.py)")
    objectives.add_argument("--contrastive_temperature", type=positive_float, default=0.1,
                            help="temperature dividing the views' cosine similarities")
    objectives.add_argument("--history_target_weight", type=non_negative_float, default=0.0,
                            help="weight of the consistency loss against the words of the "
                                 "user's own history (Mult-DAE's likelihood; "
                                 "model/sumn/history_target.py)")

    sequence = parser.add_argument_group(
        "item-sequence models (--model=nextitnet|grec; --model_dim is their channel width)")
    sequence.add_argument("--max_items_per_user", type=positive_int, default=200,
                          help="items kept per user sequence (the most recent)")
    sequence.add_argument("--dilations", type=positive_int_list, default=(1, 2, 4, 8, 1, 2, 4, 8),
                          help="dilation of each residual block (each block holds two "
                               "convolutions, dilated d and 2d), comma-separated")
    sequence.add_argument("--kernel_size", type=positive_int, default=3,
                          help="width of every dilated convolution")
    sequence.add_argument("--num_sampled", type=non_negative_int, default=0,
                          help="0: full softmax; N: sampled softmax with N log-uniform "
                               "negatives per step, for large catalogues: over the items, or "
                               "with --model=sumn over the vocabulary's words (each user's "
                               "target words and N others)")
    sequence.add_argument("--mask_fraction", type=probability, default=0.3,
                          help="grec: share of each sequence's positions masked and predicted")

    moe = parser.add_argument_group(
        "SUPERMOE (--model=supermoe; --model_dim, --max_items_per_user and --num_sampled as above)")
    moe.add_argument("--tasks", default="next_item",
                     help="tasks trained at once, comma-separated: next_item and/or label "
                          "columns of --labels (e.g. next_item,gender,age,occupation)")
    moe.add_argument("--labels", default="",
                     help="label table (users.dat, .csv or .parquet) of the label --tasks; "
                          "empty: the table folder's labels.parquet")
    moe.add_argument("--task_weights", default="",
                     help="each task's loss weight, comma-separated in --tasks order; "
                          "empty: 1 each")
    moe.add_argument("--task_balance", choices=TASK_BALANCES, default="loss_weights",
                     help="loss_weights: minimise the --task_weights-weighted sum of the task "
                          "losses; equal_gradient_norm: rescale each task's gradient on the "
                          "shared weights to the tasks' mean norm every step (GradNorm's "
                          "balance point), --task_weights then being each task's share")
    moe.add_argument("--task_indicator", type=boolean, default=True,
                     help="1: a learned task embedding conditions every router and marks the "
                          "CLS token a task reads its user at; 0: tasks share routing and "
                          "inputs, only the heads differ")
    moe.add_argument("--per_task_routers", type=boolean, default=False,
                     help="1: every task has its own router in each block over the shared "
                          "experts (MMoE-style gates; with --experts_per_token=--num_experts "
                          "MMoE's soft mixture); 0: one shared router")
    moe.add_argument("--num_blocks", type=positive_int, default=2, help="transformer blocks")
    moe.add_argument("--num_heads", type=positive_int, default=2,
                     help="attention heads per block (must divide --model_dim)")
    moe.add_argument("--num_experts", type=positive_int, default=8,
                     help="experts per mixture-of-experts layer (1: a dense transformer)")
    moe.add_argument("--experts_per_token", type=positive_int, default=2,
                     help="k: experts each token is routed to (1: Switch; 2: GShard/Mixtral)")
    moe.add_argument("--expert_hidden_dim", type=non_negative_int, default=0,
                     help="width inside each expert; 0: 4 x --model_dim")
    moe.add_argument("--capacity_factor", type=positive_float, default=1.25,
                     help="training slots per expert relative to an even share of the tokens "
                          "(Switch: 1.0-1.25); overflow tokens skip the experts; inference "
                          "drops none")
    moe.add_argument("--load_balancing_weight", type=non_negative_float, default=1e-2,
                     help="weight of the load-balancing loss (Switch: 0.01)")
    moe.add_argument("--router_z_weight", type=non_negative_float, default=1e-3,
                     help="weight of the router z-loss (ST-MoE: 0.001)")
    moe.add_argument("--dispatch", choices=("sparse", "dense"), default="sparse",
                     help="sparse: each expert computes only its tokens; dense: every expert "
                          "every token (for comparison)")

    optimisation = parser.add_argument_group("optimisation")
    add_optimisation_flags(optimisation)
    optimisation.add_argument("--max_steps", type=positive_int, default=1_000_000,
                              help="train until this global step")
    optimisation.add_argument("--mixed_precision", choices=MIXED_PRECISION_POLICIES,
                              default="none", help="Keras mixed-precision policy "
                              "(mixed_float16 on GPUs, mixed_bfloat16 on recent CPUs/TPUs)")

    run = parser.add_argument_group("checkpoints, logs and distribution")
    run.add_argument("--checkpoint_dir", default="",
                     help="checkpoints (ckpt-<step>), model_arch.json and TensorBoard logs; "
                          f"empty: {CHECKPOINT_DIR_PATTERN.format(model='<model>')} "
                          f"({DEFAULT_CHECKPOINT_DIR} is where main/inference.py looks)")
    run.add_argument("--snapshot", type=positive_int, default=100_000,
                     help="save a checkpoint every this many steps (and at the end)")
    run.add_argument("--keep_checkpoints", type=positive_int, default=20,
                     help="most recent checkpoints kept")
    run.add_argument("--init_checkpoint", default="",
                     help="warm-start the encoder (not the decoder) from this checkpoint "
                          "(a ckpt-<step> prefix or a run folder: its latest)")
    run.add_argument("--log_every", type=positive_int, default=100,
                     help="print a progress line and write TensorBoard scalars every N steps")
    run.add_argument("--progress_seconds", type=non_negative_float,
                     default=DEFAULT_PROGRESS_SECONDS,
                     help="also print a progress line (steps/s, time left) when this many seconds "
                          "have passed since the last one, whatever --log_every says")
    run.add_argument("--overwrite", action="store_true",
                     help="delete an existing --checkpoint_dir and start afresh (only a folder "
                          "main/train.py wrote, holding nothing else, is deleted)")
    add_strategy_flag(run)
    add_cpu_replicas_flag(run)
    return parser


def parse_training_flags(argv=None):
    """Parses and cross-checks the flags; argparse exits 2 naming a bad flag."""
    parser = training_flag_parser()
    flags = parser.parse_args(argv)
    problem = registry.get_family(flags.model).check_settings(flags)
    if problem:
        parser.error(problem)
    if not flags.checkpoint_dir:
        flags.checkpoint_dir = CHECKPOINT_DIR_PATTERN.format(model=flags.model)
    if flags.snapshot > flags.max_steps:
        flags.snapshot = flags.max_steps
    return flags
