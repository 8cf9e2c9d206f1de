"""Encodes the shards of a table into user vectors, one output shard per input shard.

The unit of work is a SHARD: input shard ``part-00003-of-00008.parquet``
becomes output shard ``part-00003-of-00008.<format suffix>``, written under a
temporary name and renamed when complete. So:

* a rerun skips the shards that are complete (``--overwrite`` redoes them);
* a job killed at any moment and restarted ends with every user exactly once;
* slices of a distributed job (``--slice_id``/``--slice_count``, or the task
  in ``TF_CONFIG``) take disjoint shards: shard ``i`` goes to slice
  ``i % slice_count``, and never write the same file.

The output layouts live in ``data_dumper.user_vector_writer``; this module
only needs an object with its ``VectorFormat`` methods, which is how the tests
simulate a writer that crashes mid-shard.
"""

import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf

from contracts import schema
from model.sumn.model_inputs import history_to_model_inputs
from util.atomic import write_text_atomically
from util.distribution import tf_config, worker_role
from util.errors import UserInputError

SUMMARY_FILE = "inference.json"
SETTINGS_FILE = "_inference_settings.json"
# Summary entries that must agree before slice summaries are merged.
_SETTING_KEYS = ("checkpoint", "step", "hop", "output_format", "tables")

# A batch's histories as the loaders yield them (data_loader/batch_format.py).
_HISTORY_SPEC = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2,
                                    row_splits_dtype=tf.int64)


# ----------------------------------------------------------------- slices


def resolve_slice(slice_id=None, slice_count=None):
    """``(slice_id, slice_count)`` from the flags, else from ``TF_CONFIG``, else ``(0, 1)``.

    From ``TF_CONFIG`` (as SUMN's ``set_dist_env`` did): with a ``chief`` task
    the chief is slice 0 and worker ``i`` is slice ``i + 1``; without one,
    worker ``i`` is slice ``i``.

    Raises:
        UserInputError: only one of the two flags is given, the count is below
            1, the id is outside ``0..count-1``, or TF_CONFIG names a task type
            that does not run inference.
    """
    if slice_id is None and slice_count is None:
        task_type, task_id, workers = worker_role()
        if workers == 1:
            return 0, 1
        has_chief = "chief" in tf_config().get("cluster", {})
        if task_type == "chief":
            return 0, workers
        if task_type != "worker":
            raise UserInputError(
                f"TF_CONFIG names task type {task_type!r}; inference runs on chief and worker tasks "
                f"only (or pass --slice_id and --slice_count)")
        slice_id = task_id + 1 if has_chief else task_id
        if slice_id >= workers:
            raise UserInputError(
                f"TF_CONFIG task worker {task_id} is outside its cluster of {workers} tasks")
        return slice_id, workers
    if slice_id is None or slice_count is None:
        missing = "--slice_id" if slice_id is None else "--slice_count"
        raise UserInputError(f"{missing} is missing: pass both --slice_id and --slice_count, or neither")
    if slice_count < 1:
        raise UserInputError(f"--slice_count={slice_count} must be 1 or more")
    if not 0 <= slice_id < slice_count:
        raise UserInputError(
            f"--slice_id={slice_id} must be in 0..{slice_count - 1} (--slice_count={slice_count})")
    return slice_id, slice_count


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """One input shard and the output shard it becomes."""

    input_path: str
    output_path: str


def plan_shards(files, outputs_dir, vector_format, slice_id=0, slice_count=1):
    """The shards slice ``slice_id`` of ``slice_count`` encodes: input shard ``i`` if ``i % count == id``.

    Raises:
        UserInputError: two input shards share a name (their outputs would collide).
    """
    by_output = {}
    for path in files:
        output = vector_format.output_path(outputs_dir, path)
        if output in by_output:
            raise UserInputError(
                f"--tables: shards {by_output[output]} and {path} have the same name, so their "
                f"user vectors would overwrite each other in {outputs_dir}; pass them separately")
        by_output[output] = path
    return [ShardJob(path, vector_format.output_path(outputs_dir, path))
            for index, path in enumerate(files) if index % slice_count == slice_id]


# ----------------------------------------------------------------- encoding


class UserEncoder:
    """Turns a batch of histories into one user vector each, from one hop of a ``SumnModel``.

    Example:

    ```python
    encoder = UserEncoder(model, hop_index=model.num_hops - 1)
    vectors = encoder(batch["history"])  # np.ndarray [batch_size, model_dim] float32
    ```

    Args:
        model: a restored ``SumnModel``.
        hop_index: which hop, 0-based (``model.encode`` returns hop 1 first).
    """

    def __init__(self, model, hop_index):
        if not 0 <= hop_index < model.num_hops:
            raise ValueError(f"`hop_index` should be in 0..{model.num_hops - 1}. Received: {hop_index}.")
        self.model = model
        self.hop_index = int(hop_index)
        self.dim = int(model.model_dim)
        # Batches differ in users and history lengths; a signature with every
        # dimension unknown makes one trace serve them all.
        self._encode = tf.function(self._encode_history, reduce_retracing=True,
                                   input_signature=[_HISTORY_SPEC])

    def _encode_history(self, history):
        vectors = self.model.encode(history_to_model_inputs(history))  # [B, hops, dim]
        return vectors[:, self.hop_index]

    def __call__(self, history):
        """history: [B, (behaviours), (words)] int ragged -> [B, dim] float32 numpy array."""
        history = tf.cast(history, tf.int32).with_row_splits_dtype(tf.int64)
        return self._encode(history).numpy()


class UserSample:
    """A uniform sample of at most ``size`` users, chosen by a fingerprint of their id.

    Keeping the users with the smallest id fingerprints picks the same users
    whatever the batch size, shard order or restarts, without holding more
    than ``size`` vectors.
    """

    def __init__(self, size):
        self.size = int(size)
        self._keys = np.zeros(0, np.int64)
        self._ids = np.zeros(0, object)
        self._vectors = None
        self._lengths = np.zeros(0, np.int32)

    def add(self, ids, vectors, lengths):
        """ids [n] bytes or str, vectors [n, dim], lengths [n]."""
        if self.size <= 0 or len(ids) == 0:
            return
        ids = np.asarray(ids, dtype=object)
        keys = tf.strings.to_hash_bucket_fast(tf.constant(ids), np.iinfo(np.int64).max).numpy()
        candidates = np.arange(len(ids))
        if len(self._keys) >= self.size:
            candidates = np.flatnonzero(keys < self._keys[-1])
            if not len(candidates):
                return
        new_ids = np.array([i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i)
                            for i in ids[candidates]], dtype=object)
        vectors = np.asarray(vectors, np.float32)[candidates]
        if self._vectors is None:
            self._vectors = np.zeros((0, vectors.shape[1]), np.float32)
        keys = np.concatenate([self._keys, keys[candidates]])
        ids = np.concatenate([self._ids, new_ids])
        vectors = np.concatenate([self._vectors, vectors])
        lengths = np.concatenate([self._lengths, np.asarray(lengths, np.int32)[candidates]])
        keep = np.lexsort((ids.astype(str), keys))[: self.size]
        self._keys, self._ids, self._vectors, self._lengths = (
            keys[keep], ids[keep], vectors[keep], lengths[keep])

    def __len__(self):
        return len(self._keys)

    def result(self):
        """(ids [k] str, vectors [k, dim] float32, lengths [k] int32), by fingerprint."""
        return self._ids.astype(str), self._vectors, self._lengths


class Progress:
    """Prints records/s every ``every_seconds`` within a shard, and a line per shard."""

    def __init__(self, total_shards, every_seconds=5.0, log=print):
        self.total_shards = total_shards
        self.every_seconds = every_seconds
        self.log = log
        self.started = time.perf_counter()
        self.users = 0
        self.done_shards = 0

    def start_shard(self, job):
        self.shard_started = self.last_report = time.perf_counter()
        self.shard_users = 0
        self.job = job

    def update(self, users):
        self.shard_users += users
        self.users += users
        now = time.perf_counter()
        if now - self.last_report >= self.every_seconds:
            self.last_report = now
            rate = self.shard_users / max(now - self.shard_started, 1e-9)
            self.log(f"  {os.path.basename(self.job.input_path)}: {self.shard_users:,} users, "
                     f"{rate:,.0f} users/s")

    def end_shard(self):
        self.done_shards += 1
        seconds = time.perf_counter() - self.shard_started
        self.log(f"[{self.done_shards}/{self.total_shards}] wrote {self.job.output_path}: "
                 f"{self.shard_users:,} users in {seconds:.1f} s "
                 f"({self.shard_users / max(seconds, 1e-9):,.0f} users/s)")

    @property
    def seconds(self):
        return time.perf_counter() - self.started


def encode_shard(encoder, dataset, writer, progress=None, sample=None):
    """Encodes every batch of ``dataset`` into ``writer``, in the input order; returns the number of users."""
    users = 0
    for batch in dataset:
        vectors = encoder(batch[schema.HISTORY])
        ids = batch[schema.ID].numpy()
        lengths = batch[schema.HISTORY_LENGTH].numpy()
        writer.write(ids, vectors, lengths)
        if sample is not None:
            sample.add(ids, vectors, lengths)
        users += len(ids)
        if progress is not None:
            progress.update(len(ids))
    return users


def encode_shards(jobs, encoder, dataset_for, vector_format, *, sample=None, progress_seconds=5.0,
                  log=print):
    """Encodes the shards of ``jobs`` whose outputs are not complete yet.

    Args:
        jobs: ``ShardJob``s of this slice.
        encoder: a ``UserEncoder``.
        dataset_for: input shard path -> ``tf.data.Dataset`` of batches.
        vector_format: a ``data_dumper.user_vector_writer.VectorFormat``.
        sample: a ``UserSample`` fed with every user of ``jobs`` (complete
            shards are read back for it), or None.
        progress_seconds: seconds between progress lines within a shard.
        log: where progress lines go.

    Returns:
        A list with, per job, a dict: input, output, users, skipped.
    """
    pending = [job for job in jobs if not vector_format.is_complete(job.output_path)]
    done = [job for job in jobs if job not in pending]
    if done:
        log(f"skipping {len(done)} shard(s) already complete (pass --overwrite to redo them): "
            + ", ".join(os.path.basename(job.output_path) for job in done))
    results = {}
    for job in done:
        if sample is not None:
            ids, vectors, lengths = vector_format.read(job.output_path)
            sample.add(ids, vectors, lengths)
            users = len(ids)
        else:
            users = vector_format.count_rows(job.output_path)
        results[job] = {"input": job.input_path, "output": job.output_path, "users": int(users),
                        "skipped": True}
    progress = Progress(len(pending), progress_seconds, log)
    for job in pending:
        vector_format.remove_temporaries(job.output_path)  # left by a killed job
        progress.start_shard(job)
        with vector_format.open(job.output_path, encoder.dim) as writer:
            users = encode_shard(encoder, dataset_for(job.input_path), writer, progress, sample)
        progress.end_shard()
        results[job] = {"input": job.input_path, "output": job.output_path, "users": int(users),
                        "skipped": False}
    if pending:
        log(f"encoded {progress.users:,} users in {len(pending)} shard(s) in {progress.seconds:.1f} s "
            f"({progress.users / max(progress.seconds, 1e-9):,.0f} users/s)")
    return [results[job] for job in jobs]


# ----------------------------------------------------------------- settings and summary


def check_settings(outputs_dir, settings, overwrite):
    """Refuses to mix vectors of different settings in one output folder.

    A rerun skips complete shards, so they must have been made with the same
    checkpoint, hop, layout and truncation as the shards still to come.

    Raises:
        UserInputError: ``outputs_dir`` holds vectors made with other settings
            and ``overwrite`` is False.
    """
    path = os.path.join(outputs_dir, SETTINGS_FILE)
    if overwrite or not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        previous = {}
    changed = [f"{key} was {_short(previous.get(key))}, now {_short(value)}"
               for key, value in settings.items() if previous.get(key) != value]
    if changed:
        raise UserInputError(
            f"--outputs {outputs_dir} holds user vectors made with other settings "
            f"({'; '.join(changed[:3])}); pass --overwrite to replace them, or choose another --outputs")


def _short(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _write_json(path, content):
    write_text_atomically(path, json.dumps(content, indent=2, sort_keys=True) + "\n")
    # The temporary file was created private (mkstemp); the outputs are for sharing.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_settings(outputs_dir, settings):
    os.makedirs(outputs_dir, exist_ok=True)
    _write_json(os.path.join(outputs_dir, SETTINGS_FILE), settings)


def prepare_outputs(outputs_dir, jobs, vector_format, settings, slice_id, slice_count, overwrite):
    """Readies ``outputs_dir`` for this slice: call once every user error has been ruled out.

    Removes this slice's summary and the merged one (they would claim a
    completeness the run has not reached yet), removes this slice's shards
    when ``overwrite``, and records ``settings`` for the reruns to check.
    """
    for stale in {summary_path(outputs_dir, slice_id, slice_count), summary_path(outputs_dir)}:
        if os.path.exists(stale):
            os.remove(stale)
    if overwrite:
        for job in jobs:
            vector_format.remove(job.output_path)
    write_settings(outputs_dir, settings)


def finish_outputs(outputs_dir, summary, slice_id, slice_count):
    """Writes this slice's summary (and the merged one when every slice is done); returns its path."""
    path = summary_path(outputs_dir, slice_id, slice_count)
    write_summary(path, dict(summary, slice_id=slice_id, slice_count=slice_count))
    if slice_count > 1:
        merge_slice_summaries(outputs_dir, slice_count, settings=summary)
    return path


def summary_path(outputs_dir, slice_id=0, slice_count=1):
    """``inference.json``, or ``inference.slice-<id>-of-<count>.json`` for one slice of many."""
    if slice_count == 1:
        return os.path.join(outputs_dir, SUMMARY_FILE)
    stem = os.path.splitext(SUMMARY_FILE)[0]
    return os.path.join(outputs_dir, f"{stem}.slice-{slice_id:05d}-of-{slice_count:05d}.json")


def write_summary(path, summary):
    _write_json(path, summary)


def merge_slice_summaries(outputs_dir, slice_count, settings=None):
    """Writes ``inference.json`` once every slice has written its summary; returns it or None.

    Whichever slice finishes last writes the merged summary (an identical
    rewrite if two finish together). With ``settings``, a slice summary left
    by an earlier run with other settings does not count as done.
    """
    parts = []
    for slice_id in range(slice_count):
        path = summary_path(outputs_dir, slice_id, slice_count)
        try:
            with open(path, encoding="utf-8") as handle:
                part = json.load(handle)
        except (OSError, ValueError):
            return None
        if settings is not None and any(part.get(key) != settings.get(key) for key in _SETTING_KEYS):
            return None
        parts.append(part)
    merged = dict(parts[0])
    merged.pop("slice_id", None)
    merged["shards"] = sorted((shard for part in parts for shard in part["shards"]),
                              key=lambda shard: shard["input"])
    merged["users"] = sum(shard["users"] for shard in merged["shards"])
    merged["seconds"] = max(part["seconds"] for part in parts)
    write_summary(os.path.join(outputs_dir, SUMMARY_FILE), merged)
    return merged
