"""Batch inference: turns a training run's checkpoint into user vectors on disk.

    python main/inference.py                               # latest ckpt of runs/sumn, last hop
    python main/inference.py --checkpoint_dir=runs/ml1m_mhop --step=100000 --hop=3
    python main/inference.py --output_format=tsv --separator=$'\\t' --outputs=runs/vectors_tsv
    python main/inference.py --slice_id=1 --slice_count=4  # one of four machines
    python main/inference.py --checkpoint_dir=runs/conure --task=gender  # a continual folder's task

Reads the inference table recorded in ``<checkpoint_dir>/model_arch.json`` (or
``--tables``) and writes one output shard per input shard into ``--outputs``
(default ``<checkpoint_dir>/user_vectors/step-<N>``), then ``inference.json``.
A rerun skips complete shards; ``--overwrite`` redoes them.
"""

import dataclasses
import os
import time

import numpy as np

from util.quiet_tensorflow import import_tensorflow

# First, before anything loads TensorFlow: its start-up noise is held back.
import_tensorflow()

from contracts import schema
from contracts.run_folder import INFERENCE_OUTPUTS, INFERENCE_SUMMARY_FILE
from data_dumper import inference_outputs
from data_dumper.projector_export import export_projector
from data_dumper.sequences import read_item_index
from data_dumper.task_output_writer import write_task_outputs
from data_dumper.user_vector_writer import vector_format
from data_loader.dataset import make_dataset
from data_loader.parquet_reader import shard_rows
from data_loader.reader_options import ReaderOptions
from data_loader.table_files import resolve_table_files
from data_loader.user_sequences import read_user_sequences
from data_loader.validation import validate_sequence_table, validate_table
from main.flags.inference import PROJECTOR_SUBDIR, inference_flag_parser
from model import registry
from model.continual.serving import ServedFolderTasks, read_folder_state, task_outputs
from model.inference import batch_inference, restore
from util.cli import run_cli
from util.errors import UserInputError
from util.folder_lock import FolderLock
from util.output_folder import check_overwritable, check_writable
from util.atomic import atomic_directory
from util.run_config import RUN_CONFIG_FILE, read_continual_manifest, read_run_config


def _inference_tables(flags, run_config):
    if flags.tables:
        folder = flags.tables
        if (os.path.isdir(folder) and os.path.isdir(os.path.join(folder, schema.TRAIN_SUBDIR))
                and not os.path.isdir(os.path.join(folder, schema.INFERENCE_SUBDIR))):
            raise UserInputError(
                f"--tables: folder {folder} has no {schema.INFERENCE_SUBDIR}/ table; pass "
                f"--tables={os.path.join(folder, schema.TRAIN_SUBDIR)} to encode the users of its "
                f"training table")
        return resolve_table_files(flags.tables, default_subdir=schema.INFERENCE_SUBDIR)
    recorded = run_config.get("inference_tables")
    if not recorded:
        raise UserInputError(
            f"{os.path.join(flags.checkpoint_dir, RUN_CONFIG_FILE)} records no inference table; "
            f"pass --tables")
    return resolve_table_files(recorded, default_subdir=schema.INFERENCE_SUBDIR,
                               flag=f"--tables (from {RUN_CONFIG_FILE}; pass --tables to choose another)")


def _one_shard(tables, path):
    return dataclasses.replace(tables, files=(path,))


def main(argv=None):
    started = time.perf_counter()
    flags = inference_flag_parser().parse_args(argv)
    manifest = read_continual_manifest(flags.checkpoint_dir, flag="--checkpoint_dir")
    if manifest is not None or flags.task or _serves_tasks(flags):
        return _serve_task(flags, manifest, started)
    output_format = vector_format(flags.output_format, flags.separator)
    slice_id, slice_count = batch_inference.resolve_slice(flags.slice_id, flags.slice_count)
    if flags.random_init:
        step, checkpoint, run_name = 0, None, f"random-init-seed-{flags.seed}"
    else:
        step, checkpoint = restore.checkpoint_for_step(flags.checkpoint_dir, flags.step)
        run_name = f"step-{step}"
    run_config = read_run_config(flags.checkpoint_dir, required=True)
    family = registry.family_of(run_config, os.path.join(flags.checkpoint_dir, RUN_CONFIG_FILE))
    if family.user_encoder is None:
        raise UserInputError(
            f"--checkpoint_dir {flags.checkpoint_dir} holds a {family.name} run; "
            f"main/inference.py writes the user vectors of "
            f"{', '.join(f.name for f in registry.FAMILIES.values() if f.user_encoder)} runs; "
            f"fine-tune a {family.name} backbone with main/finetune.py")
    tables = _inference_tables(flags, run_config)
    outputs = flags.outputs or os.path.join(flags.checkpoint_dir, "user_vectors", run_name)
    check_writable(outputs, "--outputs")
    # Slices of one job share the folder; two jobs of the same slice must not.
    lock_part = f"slice-{slice_id:05d}-of-{slice_count:05d}" if slice_count > 1 else ""
    with FolderLock(outputs, "--outputs", part=lock_part):
        if flags.overwrite:
            check_overwritable(outputs, INFERENCE_OUTPUTS, "--outputs")
        jobs = batch_inference.plan_shards(tables.files, outputs, output_format, slice_id,
                                           slice_count)

        if flags.random_init:
            model = restore.random_model(run_config, flags.seed, flags.checkpoint_dir)
        else:
            model = restore.restore_model(run_config, checkpoint, flags.checkpoint_dir)
        hop_index = restore.hop_index(flags.hop, model.num_hops)
        max_behaviours = flags.max_query_per_week or run_config.get("max_query_per_week")
        max_words = flags.max_words_per_query or run_config.get("max_words_per_query")
        settings = {
            "checkpoint": os.path.abspath(checkpoint) if checkpoint else run_name,
            "step": step, "hop": hop_index + 1,
            "output_format": output_format.name, "max_query_per_week": max_behaviours,
            "max_words_per_query": max_words,
            "tables": [os.path.abspath(path) for path in tables.files],
        }
        if output_format.name == "tsv":
            settings["separator"] = output_format.separator
        inference_outputs.check_settings(outputs, settings, flags.overwrite)

        pending = [job for job in jobs
                   if flags.overwrite or not output_format.is_complete(job.output_path)]
        if pending:
            validate_table(
                dataclasses.replace(tables, files=tuple(job.input_path for job in pending)),
                with_target=False, vocabulary_size=run_config["num_vocabulary"])
        print(f"checkpoint {checkpoint or run_name} (step {step}), "
              f"hop {hop_index + 1} of {model.num_hops}, "
              f"dim {model.model_dim}; slice {slice_id} of {slice_count}: {len(jobs)} of "
              f"{len(tables.files)} {tables.file_format} shards -> {outputs} "
              f"({output_format.name})", flush=True)

        if not jobs:
            print(f"slice {slice_id} has no shard to encode: the table has {len(tables.files)} "
                  f"shard(s) for {slice_count} slices", flush=True)

        # Every user error but a non-finite vector is behind us: from here on the outputs change.
        created = not os.path.exists(outputs)
        inference_outputs.prepare_outputs(outputs, jobs, output_format, settings, slice_id,
                                          slice_count, flags.overwrite)
        reader_options = ReaderOptions(
            batch_size=flags.batch_size, with_target=False, shuffle=False, repeat=False,
            drop_remainder=False, max_behaviours=max_behaviours, max_words=max_words)
        encoder = family.user_encoder(model, hop_index)
        sample = (batch_inference.UserSample(flags.projector_sample)
                  if flags.projector and slice_id == 0 else None)
        try:
            shards = batch_inference.encode_shards(
                jobs, encoder, lambda path: make_dataset(_one_shard(tables, path), reader_options),
                output_format, sample=sample, progress_seconds=flags.progress_seconds,
                log=lambda line: print(line, flush=True),
                rows_of=shard_rows if tables.file_format == schema.PARQUET else None)
        except UserInputError:
            if created:  # a folder holding only our settings would claim vectors it lacks
                inference_outputs.discard_if_unused(outputs)
            raise

        if sample is not None and len(sample):
            folder = export_projector(os.path.join(outputs, PROJECTOR_SUBDIR), *sample.result())
            print(f"projector: {len(sample):,} users in {folder}; view with "
                  f"tensorboard --logdir {folder}", flush=True)
        elif flags.projector and slice_id != 0:
            print("projector: written by slice 0 only", flush=True)

        summary = dict(settings, num_hops=model.num_hops, dim=model.model_dim, shards=shards,
                       users=sum(shard["users"] for shard in shards),
                       seconds=round(time.perf_counter() - started, 3))
        summary_file = inference_outputs.finish_outputs(outputs, summary, slice_id, slice_count)
        print(f"done: {summary['users']:,} users in {len(shards)} shards; summary in "
              f"{summary_file}", flush=True)
        return 0


def _serves_tasks(flags):
    """Whether --checkpoint_dir is a training run of a family whose vectors are its tasks' (SUPERMOE)."""
    run_config = read_run_config(flags.checkpoint_dir)
    return bool(run_config) and registry.family_of(
        run_config, os.path.join(flags.checkpoint_dir, RUN_CONFIG_FILE)).served_tasks is not None


def _served_tasks(flags, manifest):
    """The tasks --checkpoint_dir serves: a continual folder's, or a multi-task run's."""
    if manifest is not None:
        return ServedFolderTasks(read_folder_state(flags.checkpoint_dir, manifest))
    run_config = read_run_config(flags.checkpoint_dir, required=True)
    family = registry.family_of(run_config, os.path.join(flags.checkpoint_dir, RUN_CONFIG_FILE))
    if family.served_tasks is None:
        raise UserInputError(
            f"--task={flags.task}: --checkpoint_dir {flags.checkpoint_dir} is a {family.name} "
            f"training run, which has no tasks (a continual folder from main/continual.py or a "
            f"supermoe run has); leave --task out")
    return family.served_tasks(flags.checkpoint_dir, run_config, flags.step)


def _serve_task(flags, manifest, started):
    """Writes every user's vector and prediction of one task of a continual folder or a multi-task run."""
    served = _served_tasks(flags, manifest)
    if not flags.task and manifest is None:
        # A multi-task run's user vectors: its first task's (next_item in the usual order).
        flags.task = served.names[0]
        print(f"serving task {flags.task} of {', '.join(served.names)} (pass --task to choose)",
              flush=True)
    if not flags.task:
        raise UserInputError(
            f"--checkpoint_dir {flags.checkpoint_dir} is a {served.kind_of_folder} serving "
            f"{', '.join(served.names)}; pass --task=NAME")
    tables_dir = flags.tables or served.tables_dir
    if not tables_dir:
        raise UserInputError(f"the {served.kind_of_folder} records no table folder; pass --tables")
    tables = resolve_table_files(tables_dir, default_subdir=schema.SEQUENCES_SUBDIR,
                                 flag="--tables")
    outputs = flags.outputs or os.path.join(
        f"{os.path.normpath(flags.checkpoint_dir)}_outputs", flags.task)
    check_writable(outputs, "--outputs")
    with FolderLock(outputs, "--outputs"):
        if os.path.isdir(outputs) and os.listdir(outputs) and not flags.overwrite:
            raise UserInputError(f"--outputs {outputs} is not empty; pass --overwrite to "
                                 f"replace it")
        check_overwritable(outputs, INFERENCE_OUTPUTS, "--outputs")
        validate_sequence_table(tables, served.num_item_ids)
        sequences = read_user_sequences(tables, served.max_items_per_user)
        if len(sequences) == 0:
            raise UserInputError(f"--tables {tables_dir}: the sequence table has no user")
        model, entry = served.model_for(flags.task, sequences.items[:2])
        print(f"task {flags.task} ({entry['kind']}) of {flags.checkpoint_dir}: "
              f"{len(sequences):,} users -> {outputs}", flush=True)
        results = task_outputs(model, sequences.items, flags.top_k)
        if not np.isfinite(results["vectors"]).all():
            raise UserInputError(f"the model of --task={flags.task} gives non-finite vectors; "
                                 f"nothing was written")
        if tables.manifest_path is None:
            raise UserInputError(f"--tables {tables_dir}: no manifest.json (and {schema.ITEM_INDEX_FILE}) "
                                 f"beside the sequence table")
        item_names = read_item_index(os.path.join(os.path.dirname(tables.manifest_path),
                                                  schema.ITEM_INDEX_FILE))
        with atomic_directory(outputs) as staging:
            path = write_task_outputs(staging, sequences.ids, results, item_names)
            summary = {"checkpoint_dir": os.path.abspath(flags.checkpoint_dir),
                       "task": flags.task, "kind": entry["kind"], "users": len(sequences),
                       "dim": int(results["vectors"].shape[1]),
                       "class_values": entry["description"]["class_values"],
                       "tables": [os.path.abspath(p) for p in tables.files],
                       "seconds": round(time.perf_counter() - started, 3)}
            inference_outputs.write_summary(os.path.join(staging, INFERENCE_SUMMARY_FILE),
                                            summary)
        print(f"done: {len(sequences):,} users in {os.path.join(outputs, os.path.basename(path))}",
              flush=True)
        return 0


if __name__ == "__main__":
    run_cli(main)
