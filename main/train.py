"""Pretrains user representations: SUMN, or a NextItNet / GRec backbone for PeterRec.

    python main/train.py --pooling=mhop                 # demo data, runs/sumn
    python main/train.py --tables=runs/ml1m/tables --checkpoint_dir=runs/ml1m_mhop
    python main/train.py --model=nextitnet --tables=runs/ml1m/tables --checkpoint_dir=runs/nin
    tensorboard --logdir runs/sumn

Re-running resumes from the latest ``ckpt-<step>`` in ``--checkpoint_dir``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from contracts import schema
from data_dumper.demo_tables import ensure_demo_tables
from data_loader.dataset import make_dataset
from data_loader.reader_options import ReaderOptions
from data_loader.sequence_dataset import make_sequence_dataset
from data_loader.sequence_options import SequenceReaderOptions
from data_loader.validation import validate_sequence_table, validate_table
from model.training import run_setup
from model.training.checkpoints import RunCheckpoints, prepare_checkpoint_dir, warm_start
from model.training.flags import DEFAULT_DEMO_TABLES_DIR, SEQUENCE_MODELS, parse_training_flags
from model.training.loop import train_until
from model.nextitnet.sequence_pretrainer import SequencePretrainer
from model.sumn.sumn_trainer import SumnTrainer
from model.training.training_log import TrainingLog
from util.cli import run_cli
from util.distribution import describe_strategy, is_chief, make_strategy, split_cpu
from util.run_config import write_run_config


def main(argv=None):
    flags = parse_training_flags(argv)
    split_cpu(flags.cpu_replicas)
    if flags.model in SEQUENCE_MODELS:
        tables, run_config, reader = _sequence_training_data(flags)
    else:
        tables, run_config, reader = _sumn_training_data(flags)

    prepare_checkpoint_dir(flags.checkpoint_dir, run_config, flags.overwrite)
    if is_chief():
        write_run_config(flags.checkpoint_dir, run_config)

    keras.utils.set_random_seed(flags.seed)
    if flags.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(flags.mixed_precision)
    strategy = make_strategy(flags.strategy, flags.cpu_replicas)
    print(f"strategy: {describe_strategy(strategy)}", flush=True)

    with strategy.scope():
        model = run_setup.build_model(run_config)
        optimizer = run_setup.build_optimizer(
            flags.learning_rate, flags.mixed_precision, model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        checkpoints = RunCheckpoints(flags.checkpoint_dir, model, optimizer, step,
                                     flags.keep_checkpoints)

    restored = checkpoints.restore_latest()
    if restored:
        print(f"resuming from {restored} (step {int(step.numpy())})", flush=True)
    elif flags.init_checkpoint:
        loaded, skipped = warm_start(model.encoder_layers, flags.init_checkpoint)
        print(f"warm start from {flags.init_checkpoint}: restored {len(loaded)} encoder "
              f"variables, skipped {len(skipped)}", flush=True)
        for name in skipped:
            print(f"  skipped {name}", flush=True)
    if int(step.numpy()) >= flags.max_steps:
        print(f"nothing to do: step {int(step.numpy())} has reached --max_steps={flags.max_steps}")
        return 0

    # A resumed run continues with fresh shuffles rather than replaying its first batches.
    dataset = strategy.distribute_datasets_from_function(
        lambda context: reader(flags.seed + int(step.numpy()), context))
    if flags.model in SEQUENCE_MODELS:
        trainer = SequencePretrainer(model, optimizer, strategy, flags.max_grad_norm,
                                     num_sampled=flags.num_sampled,
                                     mask_fraction=flags.mask_fraction, seed=flags.seed)
    else:
        trainer = SumnTrainer(model, optimizer, strategy, flags.max_grad_norm)
    log = TrainingLog(flags.checkpoint_dir, flags.batch_size, flags.log_every, int(step.numpy()))
    result = train_until(trainer, dataset, checkpoints, log, step, flags.max_steps,
                         flags.snapshot, flags.learning_rate)
    log.close()
    print(f"done: {result['steps']} steps in {result['seconds']:.1f} s; checkpoints in "
          f"{flags.checkpoint_dir}", flush=True)
    return 0


def _sumn_training_data(flags):
    """SUMN's table, run configuration and reader (``seed, input_context -> dataset``)."""
    random_windows = flags.random_target_fraction > 0
    tables = run_setup.resolve_training_tables(flags.tables, ensure_demo_tables,
                                               DEFAULT_DEMO_TABLES_DIR, random_windows)
    vocabulary_size = run_setup.resolve_vocabulary_size(flags.num_vocabulary, tables)
    rows = validate_table(tables, with_target=not random_windows, vocabulary_size=vocabulary_size)
    windows = (f"random windows, {flags.random_target_fraction:.0%} of behaviours as target"
               if random_windows else "the table's windows")
    print(f"training on {windows}; table: {rows:,} users in {len(tables.files)} {tables.file_format} "
          f"shards; vocabulary {vocabulary_size:,} words", flush=True)
    run_config = run_setup.training_run_config(
        flags, tables, vocabulary_size, run_setup.default_inference_tables(tables))

    def reader(seed, context):
        options = ReaderOptions(
            batch_size=flags.batch_size, with_target=True, shuffle=flags.shuffle_buffer > 0,
            shuffle_buffer=max(flags.shuffle_buffer, 1), repeat=True, drop_remainder=True,
            seed=seed, weighted_target=flags.weighted_target,
            max_behaviours=flags.max_query_per_week, max_words=flags.max_words_per_query,
            max_targets=flags.target_length, group_by_length=flags.group_by_length,
            random_target_fraction=flags.random_target_fraction or None)
        return make_dataset(tables, options, context)

    return tables, run_config, reader


def _sequence_training_data(flags):
    """The item-sequence table, run configuration and reader of NextItNet / GRec."""
    tables = run_setup.resolve_training_tables(flags.tables, ensure_demo_tables,
                                               DEFAULT_DEMO_TABLES_DIR,
                                               subdir=schema.SEQUENCES_SUBDIR)
    num_item_ids = run_setup.resolve_num_item_ids(tables)
    rows = validate_sequence_table(tables, num_item_ids)
    objective = ("next-item prediction" if flags.model == "nextitnet"
                 else f"masked-item prediction, {flags.mask_fraction:.0%} of positions")
    print(f"training {flags.model} ({objective}); table: {rows:,} users in {len(tables.files)} "
          f"{tables.file_format} shards; {num_item_ids:,} item ids", flush=True)
    run_config = run_setup.sequence_run_config(flags, tables, num_item_ids)

    def reader(seed, context):
        options = SequenceReaderOptions(
            batch_size=flags.batch_size, shuffle=flags.shuffle_buffer > 0,
            shuffle_buffer=max(flags.shuffle_buffer, 1), repeat=True, drop_remainder=True,
            seed=seed, max_items=flags.max_items_per_user,
            # One item predicts nothing: NextItNet needs a pair, GRec a context.
            min_items=2, with_target_items=False)
        return make_sequence_dataset(tables, options, context)

    return tables, run_config, reader


if __name__ == "__main__":
    run_cli(main)
