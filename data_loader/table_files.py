"""Resolves a ``--tables`` argument into shard files, their format and their manifest.

``--tables`` accepts what users naturally pass: a table folder written by
``main/build_tables.py`` (its ``train/``, ``inference/`` or ``sequences/``
subfolder, or the folder holding them, from which ``default_subdir`` is
taken), a glob, a single shard, or a comma-separated list of any of these.
"""

import dataclasses
import glob
import json
import os

from contracts import schema
from util.errors import UserInputError

_SUFFIX_TO_FORMAT = {suffix: fmt for fmt, suffix in schema.FILE_SUFFIX.items()}


@dataclasses.dataclass(frozen=True)
class TableFiles:
    """The shard files of one table and what is known about them.

    Attributes:
        files: sorted shard paths (all of one format).
        file_format: ``"parquet"`` or ``"tfrecord"``.
        manifest: the tables' manifest.json as a dict, or None where none was found.
        manifest_path: where the manifest was found, or None.
    """

    files: tuple
    file_format: str
    manifest: dict | None
    manifest_path: str | None

    @property
    def vocabulary_size(self):
        """The vocabulary size recorded in the manifest, or None."""
        if self.manifest is None:
            return None
        return self.manifest.get("vocabulary_size")

    @property
    def num_item_ids(self):
        """The item index size recorded in the manifest (3 special ids included), or None."""
        if self.manifest is None:
            return None
        return self.manifest.get("num_item_ids")


def _expand_one(entry, default_subdir, flag):
    if os.path.isdir(entry):
        if default_subdir and os.path.isdir(os.path.join(entry, default_subdir)):
            entry = os.path.join(entry, default_subdir)
        found = [
            os.path.join(entry, name)
            for name in sorted(os.listdir(entry))
            if not name.startswith(".") and os.path.splitext(name)[1] in _SUFFIX_TO_FORMAT
        ]
        if not found:
            if default_subdir and os.path.exists(os.path.join(entry, schema.MANIFEST_FILE)):
                raise UserInputError(
                    f"{flag}: table folder {entry} has no {default_subdir}/ table (built by an "
                    f"older version?); rebuild it with main/build_tables.py")
            raise UserInputError(f"{flag}: folder {entry} holds no .parquet or .tfrecord shards")
        return found
    if any(char in entry for char in "*?["):
        found = sorted(glob.glob(entry))
        if not found:
            raise UserInputError(f"{flag}: the pattern {entry} matches no file")
        return found
    if not os.path.exists(entry):
        raise UserInputError(f"{flag}: file {entry} does not exist")
    return [entry]


def find_manifest(files):
    """Looks for manifest.json beside the shards or one folder up; returns (dict, path)."""
    first_folder = os.path.dirname(os.path.abspath(files[0]))
    for folder in (first_folder, os.path.dirname(first_folder)):
        path = os.path.join(folder, schema.MANIFEST_FILE)
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    return json.load(handle), path
            except (OSError, ValueError) as error:
                raise UserInputError(f"manifest {path} is not readable JSON: {error}") from None
    return None, None


def resolve_table_files(spec, default_subdir=schema.TRAIN_SUBDIR, flag="--tables"):
    """Turns a ``--tables`` value into a ``TableFiles``.

    Args:
        spec: a folder, glob, file, or comma-separated list of them.
        default_subdir: which table of a full table folder to take
            (``"train"`` for training, ``"inference"`` for inference,
            ``"sequences"`` for item-sequence models).
        flag: the flag name used in error messages.

    Raises:
        UserInputError: nothing matches, a file is missing, or formats are mixed.
    """
    entries = [part.strip() for part in str(spec or "").split(",") if part.strip()]
    if not entries:
        raise UserInputError(f"{flag} is empty: pass a table folder, a glob or shard files")
    files = []
    for entry in entries:
        files.extend(_expand_one(entry, default_subdir, flag))
    formats = set()
    for path in files:
        suffix = os.path.splitext(path)[1]
        if suffix not in _SUFFIX_TO_FORMAT:
            raise UserInputError(
                f"{flag}: cannot tell the format of {path}: expected a .parquet or .tfrecord file"
            )
        formats.add(_SUFFIX_TO_FORMAT[suffix])
    if len(formats) > 1:
        raise UserInputError(f"{flag} mixes Parquet and TFRecord files; pass one format at a time")
    files = tuple(sorted(dict.fromkeys(files)))
    manifest, manifest_path = find_manifest(files)
    return TableFiles(files, formats.pop(), manifest, manifest_path)
