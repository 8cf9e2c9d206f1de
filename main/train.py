"""Pretrains user representations: SUMN, or a NextItNet / GRec backbone for PeterRec.

    python main/train.py --pooling=mhop                 # demo data, runs/sumn
    python main/train.py --tables=runs/ml1m/tables --checkpoint_dir=runs/ml1m_mhop
    python main/train.py --model=nextitnet --tables=runs/ml1m/tables --checkpoint_dir=runs/nin
    tensorboard --logdir runs/sumn

Re-running resumes from the latest ``ckpt-<step>`` in ``--checkpoint_dir`` that
restores. One job at a time holds the folder (``util/folder_lock.py``).
"""

from util.quiet_tensorflow import import_tensorflow

# First, before anything loads TensorFlow: its start-up noise is held back.
import_tensorflow()

import keras
import tensorflow as tf

from data_dumper.demo_tables import ensure_demo_tables
from main.flags.pretraining import DEFAULT_DEMO_TABLES_DIR, parse_training_flags
from model import registry
from model.training.checkpoints import RunCheckpoints, prepare_checkpoint_dir, warm_start
from model.training.loop import train_until
from model.training.optimizer import build_optimizer
from model.training.training_log import TrainingLog
from util.cli import run_cli
from util.distribution import describe_strategy, is_chief, make_strategy, split_cpu
from util.folder_lock import FolderLock
from util.output_folder import check_writable
from util.run_config import write_run_config


def main(argv=None):
    flags = parse_training_flags(argv)
    # Only the chief writes the run folder (the other workers save into private folders).
    chief = is_chief()
    if chief:
        check_writable(flags.checkpoint_dir, "--checkpoint_dir")
    with FolderLock(flags.checkpoint_dir, "--checkpoint_dir", enabled=chief):
        return _train(flags, chief)


def _train(flags, chief):
    split_cpu(flags.cpu_replicas)
    family = registry.get_family(flags.model)
    if not flags.tables:
        ensure_demo_tables(DEFAULT_DEMO_TABLES_DIR)
    data = family.pretraining_inputs.prepare(flags.tables or DEFAULT_DEMO_TABLES_DIR, flags)
    print(f"training {family.name} ({family.summary}); {data.description}", flush=True)
    run_config = dict(vars(flags), **data.run_config)

    prepare_checkpoint_dir(flags.checkpoint_dir, run_config, flags.overwrite,
                           registry.architecture_changes)
    if chief:
        write_run_config(flags.checkpoint_dir, run_config)

    keras.utils.set_random_seed(flags.seed)
    if flags.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(flags.mixed_precision)
    strategy = make_strategy(flags.strategy, flags.cpu_replicas)
    print(f"strategy: {describe_strategy(strategy)}", flush=True)

    with strategy.scope():
        model = family.build(family.config_from(run_config))
        optimizer = build_optimizer(flags.learning_rate, flags.mixed_precision,
                                    model.trainable_variables)
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
        lambda context: data.reader(flags.seed + int(step.numpy()), context))
    trainer = family.make_pretrainer(model, optimizer, strategy, flags, data)
    log = TrainingLog(flags.checkpoint_dir, flags.batch_size, flags.log_every, int(step.numpy()),
                      flags.max_steps, flags.progress_seconds)
    result = train_until(trainer, dataset, checkpoints, log, step, flags.max_steps,
                         flags.snapshot, flags.learning_rate)
    log.close()
    print(f"done: {result['steps']} steps in {result['seconds']:.1f} s; checkpoints in "
          f"{flags.checkpoint_dir}", flush=True)
    if family.report_tasks is not None and chief:
        family.report_tasks(flags.checkpoint_dir, int(step.numpy()), model, data,
                            log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    run_cli(main)
