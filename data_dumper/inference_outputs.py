"""The bookkeeping files of a user-vector folder: the settings its shards were made with, and summaries.

``_inference_settings.json`` records the checkpoint, hop, layout and
truncation of the shards, so a rerun that would mix vectors of other
settings into the folder is refused; ``inference.json`` (or one
``inference.slice-<i>-of-<n>.json`` per slice, merged by the last slice to
finish) says what was written. Every file is written under a temporary name
and renamed.
"""

import json
import os

from contracts.run_folder import INFERENCE_SETTINGS_FILE, INFERENCE_SUMMARY_FILE
from util.atomic import write_text_atomically
from util.errors import UserInputError

SUMMARY_FILE = INFERENCE_SUMMARY_FILE
SETTINGS_FILE = INFERENCE_SETTINGS_FILE
# Summary entries that must agree before slice summaries are merged.
_SETTING_KEYS = ("checkpoint", "step", "hop", "output_format", "tables")


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


def discard_if_unused(outputs_dir):
    """Removes a folder this job created that still holds only its settings file (a failed job)."""
    try:
        names = os.listdir(outputs_dir)
    except OSError:
        return
    if names == [SETTINGS_FILE]:
        os.remove(os.path.join(outputs_dir, SETTINGS_FILE))
        os.rmdir(outputs_dir)


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
