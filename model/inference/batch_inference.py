"""Encodes the shards of a table into user vectors, one output shard per input shard.

The unit of work is a SHARD: input shard ``part-00003-of-00008.parquet``
becomes output shard ``part-00003-of-00008.<format suffix>``, written under a
temporary name and renamed when complete. So:

* a rerun skips the shards that are complete (``--overwrite`` redoes them);
* a job killed at any moment and restarted ends with every user exactly once;
* slices of a distributed job (``--slice_id``/``--slice_count``, or the task
  in ``TF_CONFIG``) take disjoint shards: shard ``i`` goes to slice
  ``i % slice_count``, and never write the same file.

The output layouts live in ``data_dumper.user_vector_writer`` and the
folder's settings and summaries in ``data_dumper.inference_outputs``; this
module only needs an object with the ``VectorFormat`` methods, which is how
the tests simulate a writer that crashes mid-shard.
"""

import dataclasses
import datetime
import os
import time

import numpy as np
import tensorflow as tf

from contracts import schema
from util.distribution import tf_config, worker_role
from util.errors import UserInputError




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
    """Prints users/s and the time left every ``every_seconds`` within a shard, and a line per shard.

    The time left is estimated from the share of the slice's users encoded
    when ``rows_of(input_path)`` tells each shard's users (Parquet footers do,
    for free), else from the share of shards done.
    """

    def __init__(self, jobs, every_seconds=5.0, log=print, rows_of=None):
        self.total_shards = len(jobs)
        self.every_seconds = every_seconds
        self.log = log
        self.started = time.perf_counter()
        self.users = 0
        self.done_shards = 0
        rows = [rows_of(job.input_path) if rows_of else None for job in jobs]
        self.total_users = sum(rows) if rows and None not in rows else None

    def start_shard(self, job):
        self.shard_started = self.last_report = time.perf_counter()
        self.shard_users = 0
        self.job = job

    def _eta(self, now):
        elapsed = now - self.started
        if self.total_users:
            done = self.users / self.total_users
        else:
            done = self.done_shards / max(self.total_shards, 1)
        if done <= 0:
            return "?"
        seconds = max(elapsed / done - elapsed, 0.0)
        return str(datetime.timedelta(seconds=int(round(seconds))))

    def update(self, users):
        self.shard_users += users
        self.users += users
        now = time.perf_counter()
        if now - self.last_report >= self.every_seconds:
            self.last_report = now
            rate = self.shard_users / max(now - self.shard_started, 1e-9)
            of_total = f" of {self.total_users:,}" if self.total_users else ""
            self.log(f"  {os.path.basename(self.job.input_path)}: {self.shard_users:,} users, "
                     f"{rate:,.0f} users/s; {self.users:,}{of_total} users in "
                     f"{self.done_shards}/{self.total_shards} shards done, ETA {self._eta(now)}")

    def end_shard(self):
        self.done_shards += 1
        now = time.perf_counter()
        seconds = now - self.shard_started
        self.log(f"[{self.done_shards}/{self.total_shards}] wrote {self.job.output_path}: "
                 f"{self.shard_users:,} users in {seconds:.1f} s "
                 f"({self.shard_users / max(seconds, 1e-9):,.0f} users/s), ETA {self._eta(now)}")

    @property
    def seconds(self):
        return time.perf_counter() - self.started


def encode_shard(encoder, dataset, writer, progress=None, sample=None):
    """Encodes every batch of ``dataset`` into ``writer``, in the input order; returns the number of users.

    Raises:
        UserInputError: a vector holds a nan or an infinity. Nothing of the
            shard is written then: the writer removes its temporary files.
    """
    users = 0
    for batch in dataset:
        vectors = np.asarray(encoder(batch[schema.HISTORY]))
        ids = batch[schema.ID].numpy()
        if not np.isfinite(vectors).all():
            row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            user = ids[row].decode("utf-8", "replace") if isinstance(ids[row], bytes) else ids[row]
            raise UserInputError(
                f"the encoder gives user {user} (row {users + row} of the shard) a non-finite "
                f"vector, so nothing of this shard was written; the checkpoint's weights "
                f"overflow on this input")
        lengths = batch[schema.HISTORY_LENGTH].numpy()
        writer.write(ids, vectors, lengths)
        if sample is not None:
            sample.add(ids, vectors, lengths)
        users += len(ids)
        if progress is not None:
            progress.update(len(ids))
    return users


def encode_shards(jobs, encoder, dataset_for, vector_format, *, sample=None, progress_seconds=5.0,
                  log=print, rows_of=None):
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
        rows_of: input shard path -> its number of users, or None where
            unknown (for the time left); None: estimate from shards.

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
    progress = Progress(pending, progress_seconds, log, rows_of)
    for job in pending:
        vector_format.remove_temporaries(job.output_path)  # left by a killed job
        progress.start_shard(job)
        try:
            with vector_format.open(job.output_path, encoder.dim) as writer:
                users = encode_shard(encoder, dataset_for(job.input_path), writer, progress, sample)
        except UserInputError as error:
            raise UserInputError(f"{job.input_path}: {error}") from None
        progress.end_shard()
        results[job] = {"input": job.input_path, "output": job.output_path, "users": int(users),
                        "skipped": False}
    if pending:
        log(f"encoded {progress.users:,} users in {len(pending)} shard(s) in {progress.seconds:.1f} s "
            f"({progress.users / max(progress.seconds, 1e-9):,.0f} users/s)")
    return [results[job] for job in jobs]
