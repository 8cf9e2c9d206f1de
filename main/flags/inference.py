"""The flags of ``main/inference.py``."""

import argparse

from contracts.run_folder import RUN_CONFIG_FILE
from data_dumper.user_vector_writer import OUTPUT_FORMATS, PARQUET
from main.flags.common import FlagHelpFormatter, add_history_limit_flags
from main.flags.pretraining import DEFAULT_CHECKPOINT_DIR
from util.flag_types import non_negative_float, positive_int

PROJECTOR_SUBDIR = "projector"


def inference_flag_parser():
    """The argparse parser of ``main/inference.py``."""
    parser = argparse.ArgumentParser(
        prog="main/inference.py",
        description="Encode users with a trained checkpoint and write their vectors, one "
                    "output shard per input shard.",
        formatter_class=FlagHelpFormatter)
    run = parser.add_argument_group("model")
    run.add_argument("--checkpoint_dir", default=DEFAULT_CHECKPOINT_DIR,
                     help=f"the training run folder (ckpt-<step>, {RUN_CONFIG_FILE}) "
                          f"(default: {DEFAULT_CHECKPOINT_DIR})")
    run.add_argument("--step", type=int, default=0,
                     help="checkpoint step: N reads ckpt-N (or ckpt-N+1 where only that exists); "
                          "0 reads the latest (default: 0)")
    run.add_argument("--random_init", action="store_true",
                     help="encode with a randomly initialised model of the run's architecture "
                          "instead of a checkpoint: the random-encoder baseline of "
                          "main/evaluate.py (default: off)")
    run.add_argument("--seed", type=int, default=0,
                     help="initialisation seed with --random_init (default: 0)")
    run.add_argument("--hop", type=int, default=0,
                     help="which hop's vector to write, 1-based; 0 is the last hop (default: 0)")

    continual = parser.add_argument_group(
        "task folders (main/continual.py, or main/train.py --model=supermoe)")
    continual.add_argument("--task", default="",
                           help="with a continual model folder or a SUPERMOE run as "
                                "--checkpoint_dir: the learned task to serve (a SUPERMOE run: "
                                "empty serves its first task); writes each user's vector and "
                                "the task's prediction (class, or top items)")
    continual.add_argument("--top_k", type=positive_int, default=10,
                           help="item tasks: items recommended per user (default: 10)")

    data = parser.add_argument_group("input")
    data.add_argument("--tables", default="",
                      help="inference table: a folder from main/build_tables.py (its inference/ "
                           "table), a glob, or comma-separated shards; a training table works too "
                           f"(default: the inference table recorded in {RUN_CONFIG_FILE})")
    add_history_limit_flags(data, from_run=True)
    data.add_argument("--batch_size", type=positive_int, default=512,
                      help="users encoded per batch (default: 512)")

    output = parser.add_argument_group("output")
    output.add_argument("--outputs", default="",
                        help="output folder (default: <checkpoint_dir>/user_vectors/step-<N>)")
    output.add_argument("--output_format", default=PARQUET,
                        help=f"one of {', '.join(OUTPUT_FORMATS)}: parquet (id, embedding, length), "
                             "tfrecord (Examples), npy (+ .ids.txt, .lengths.txt) or tsv (SUMN's "
                             "id<separator>v1,...,vd<separator>length lines) (default: parquet)")
    output.add_argument("--separator", default="\t",
                        help="tsv field separator; '\\t' or 'tab' means a tab; no digit, '.', ',', "
                             "'+', '-', 'e' or letter of nan/inf, which occur in the numbers "
                             "(default: a tab)")
    output.add_argument("--overwrite", action="store_true",
                        help="redo shards that are already complete (default: skip them)")
    output.add_argument("--projector", action="store_true",
                        help=f"also write a sample of vectors for TensorBoard's projector into "
                             f"<outputs>/{PROJECTOR_SUBDIR} (default: off)")
    output.add_argument("--projector_sample", type=positive_int, default=2000,
                        help="users in the projector sample (default: 2000)")
    output.add_argument("--progress_seconds", type=non_negative_float, default=5.0,
                        help="seconds between progress lines within a shard (default: 5)")

    distribution = parser.add_argument_group("distribution")
    distribution.add_argument("--slice_id", type=int, default=None,
                              help="this job's slice, 0-based; input shard i goes to slice "
                                   "i %% slice_count (default: from TF_CONFIG, else 0)")
    distribution.add_argument("--slice_count", type=int, default=None,
                              help="number of slices (default: workers in TF_CONFIG, else 1)")
    return parser
