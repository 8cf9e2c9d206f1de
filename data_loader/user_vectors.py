"""Reads frozen user vectors, as written by the inference stage, into numpy.

The layouts of ``data_dumper/user_vector_writer.py`` are read, detected from
the file names; each may be a folder, a file, a glob or a list of shards:

* Parquet (the default output): columns ``id`` string, ``embedding``
  fixed_size_list<float32>[dim] and ``length`` int32.
* npy: ``<shard>.npy`` float32 [n, dim] beside ``<shard>.ids.txt``, one id per line.
* tsv: one user per line, ``id<separator>v1,v2,...,vdim<separator>length``; the
  field separator is SUMN's ``--separator`` (a tab by default), the numbers are
  comma-joined, and the trailing length is optional.
* tfrecord: one ``tf.train.Example`` per user with ``id``, ``embedding``,
  ``length`` (TensorFlow is imported only for this layout).

``length`` is not needed for evaluation and is not returned.

Example:
    vectors = read_user_vectors("runs/ml1m/vectors")
    vectors.ids        # np.ndarray[str], [num_users]
    vectors.vectors    # np.ndarray[float32], [num_users, dim]
"""

import dataclasses
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import vector_tsv
from contracts.schema import ID
from util.errors import UserInputError
from util.quiet_tensorflow import import_tensorflow

EMBEDDING = "embedding"
LENGTH = "length"

PARQUET = "parquet"
NPY = "npy"
TSV = "tsv"
TFRECORD = "tfrecord"

IDS_SUFFIX = ".ids.txt"
VECTOR_SUFFIXES = (".parquet", ".npy", ".tsv", ".tfrecord")
_GLOB_CHARACTERS = "*?["


@dataclasses.dataclass(frozen=True)
class UserVectors:
    """One vector per user.

    Attributes:
        ids: np.ndarray[str], [num_users], unique.
        vectors: np.ndarray[float32], [num_users, dim], all finite.
        source: the path(s) read, for messages and reports.
        file_format: ``"parquet"``, ``"npy"`` or ``"tsv"``.
    """

    ids: np.ndarray
    vectors: np.ndarray
    source: str
    file_format: str

    @property
    def dim(self):
        return self.vectors.shape[1]


def read_user_vectors(source, separator="\t"):
    """Reads user vectors from a folder, a file, a glob, or a list of those.

    Args:
        source: a path, a glob pattern, or a list of paths/patterns.
        separator: the field separator of tsv lines (``"\\t"`` and ``"tab"`` mean a tab).

    Raises:
        UserInputError: missing files, mixed layouts, a missing column, rows of
            different dimensions, NaN or infinite values, or duplicate ids; the
            message names the file and the column.
    """
    file_format, files = resolve_vector_files(source)
    if file_format == PARQUET:
        parts = [_read_parquet_file(path) for path in files]
    elif file_format == NPY:
        parts = [_read_npy_file(path) for path in files]
    elif file_format == TFRECORD:
        parts = [_read_tfrecord_file(path) for path in files]
    else:
        separator = vector_tsv.parse_separator(separator)
        problem = vector_tsv.separator_problem(separator)
        if problem:
            raise UserInputError(f"--separator={separator!r} cannot split tsv vector lines: {problem}.")
        parts = [_read_tsv_file(path, separator) for path in files]

    first_path, (_, first_vectors) = files[0], parts[0]
    for path, (_, vectors) in zip(files, parts):
        if vectors.shape[1] != first_vectors.shape[1]:
            raise UserInputError(
                f"user-vector file {path}: column '{EMBEDDING}' has dimension "
                f"{vectors.shape[1]}, but {first_path} has {first_vectors.shape[1]}."
            )
    ids = np.concatenate([part_ids for part_ids, _ in parts])
    vectors = np.concatenate([part_vectors for _, part_vectors in parts])
    description = files[0] if len(files) == 1 else f"{os.path.dirname(files[0]) or '.'} ({len(files)} files)"
    _check_unique_ids(ids, description)
    return UserVectors(ids=ids, vectors=vectors, source=description, file_format=file_format)


def resolve_vector_files(source):
    """Returns ``(file_format, sorted file list)`` for a folder, file, glob or list."""
    entries = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not entries:
        raise UserInputError("no user-vector files were given.")
    files = []
    for entry in entries:
        entry = os.fspath(entry)
        if any(character in entry for character in _GLOB_CHARACTERS):
            # Side files (ids, lengths) and summaries that a pattern also matches are not shards.
            matches = sorted(path for path in glob.glob(entry)
                             if os.path.isfile(path) and path.endswith(VECTOR_SUFFIXES))
            if not matches:
                raise UserInputError(f"user-vector pattern {entry} matches no {', '.join(VECTOR_SUFFIXES)} files.")
            files.extend(matches)
        elif os.path.isdir(entry):
            files.extend(_vector_files_in_folder(entry))
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            raise UserInputError(f"user-vector path {entry} does not exist.")

    formats = {_format_of(path) for path in files}
    if len(formats) > 1:
        raise UserInputError(
            f"user-vector files {files[0]} ... mix layouts ({', '.join(sorted(formats))}); "
            "give one layout at a time."
        )
    return formats.pop(), files


def _vector_files_in_folder(folder):
    # Hidden and underscore names are temporary files and markers (_SUCCESS).
    names = sorted(name for name in os.listdir(folder) if not name.startswith((".", "_")))
    paths = [os.path.join(folder, name) for name in names if os.path.isfile(os.path.join(folder, name))]
    for suffix in VECTOR_SUFFIXES:
        found = [path for path in paths if path.endswith(suffix)]
        if found:
            return found
    raise UserInputError(f"user-vector folder {folder} holds no {', '.join(VECTOR_SUFFIXES)} files.")


def _format_of(path):
    if path.endswith(".parquet"):
        return PARQUET
    if path.endswith(".npy"):
        return NPY
    if path.endswith(".tfrecord"):
        return TFRECORD
    return TSV


def _read_parquet_file(path):
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"user-vector file {path} is not a readable Parquet file ({error}).") from None
    for column in (ID, EMBEDDING):
        if column not in schema.names:
            raise UserInputError(
                f"user-vector file {path} has no column '{column}' (it has: {', '.join(schema.names)})."
            )
    table = pq.read_table(path, columns=[ID, EMBEDDING])
    ids = _string_ids(table.column(ID), path)
    embedding = table.column(EMBEDDING).combine_chunks()
    return ids, _list_column_to_matrix(embedding, path, ids)


def _list_column_to_matrix(embedding, path, ids):
    """[n] fixed-size (or equal-length) lists of floats -> float32 [n, dim], no per-row Python."""
    list_type = embedding.type
    is_list = any(check(list_type) for check in (pa.types.is_fixed_size_list, pa.types.is_list, pa.types.is_large_list))
    if not is_list or not (
        pa.types.is_floating(list_type.value_type) or pa.types.is_integer(list_type.value_type)
    ):
        raise UserInputError(
            f"user-vector file {path}: column '{EMBEDDING}' has type {list_type}, "
            "expected fixed_size_list<float32>."
        )
    if embedding.null_count:
        first = int(np.flatnonzero(~np.asarray(embedding.is_valid()))[0])
        raise UserInputError(f"user-vector file {path}: column '{EMBEDDING}' is null for id '{ids[first]}'.")
    if pa.types.is_fixed_size_list(list_type):
        dim = list_type.list_size
    else:
        lengths = pc.list_value_length(embedding).to_numpy(zero_copy_only=False)
        dim = int(lengths[0]) if len(lengths) else 0
        if len(lengths) and (lengths != dim).any():
            first = int(np.flatnonzero(lengths != dim)[0])
            raise UserInputError(
                f"user-vector file {path}: column '{EMBEDDING}' has {lengths[first]} values for id "
                f"'{ids[first]}' but {dim} for id '{ids[0]}' (every vector must have one dimension)."
            )
    # flatten() honours slicing offsets, unlike .values.
    values = embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = values.reshape(len(embedding), dim)
    _check_finite(matrix, ids, f"user-vector file {path}: column '{EMBEDDING}'")
    return matrix


def _read_npy_file(path):
    ids_path = path[: -len(".npy")] + IDS_SUFFIX
    if not os.path.isfile(ids_path):
        raise UserInputError(f"user-vector file {path} has no id file {ids_path} beside it.")
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserInputError(f"user-vector file {path} is not a readable .npy array ({error}).") from None
    if matrix.ndim != 2 or not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise UserInputError(
            f"user-vector file {path} holds a {matrix.dtype} array of shape {matrix.shape}; "
            "expected float32 [num_users, dim]."
        )
    with open(ids_path, encoding="utf-8") as handle:
        ids = np.array(handle.read().splitlines(), dtype=str)
    if len(ids) != len(matrix):
        raise UserInputError(
            f"user-vector id file {ids_path} has {len(ids)} ids but {path} has {len(matrix)} rows."
        )
    matrix = matrix.astype(np.float32, copy=False)
    _check_finite(matrix, ids, f"user-vector file {path}")
    return ids, matrix


def _read_tsv_file(path, separator):
    try:
        with open(path, encoding="utf-8") as handle:
            lines = pa.array(handle.read().splitlines(), pa.string())
    except UnicodeDecodeError as error:
        raise UserInputError(f"user-vector file {path} is not UTF-8 text ({error}).") from None
    not_blank = pc.not_equal(pc.utf8_trim_whitespace(lines), "")
    line_numbers = np.flatnonzero(not_blank.to_numpy(zero_copy_only=False)) + 1
    lines = lines.filter(not_blank)
    if len(lines) == 0:
        raise UserInputError(f"user-vector file {path} is empty.")
    fields = pc.split_pattern(lines, separator)
    field_counts = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
    malformed = (field_counts < 2) | (field_counts > 3)
    if malformed.any():
        line = line_numbers[np.flatnonzero(malformed)[0]]
        raise UserInputError(
            f"user-vector file {path} line {line}: expected 'id{separator}v1,...,vd{separator}{LENGTH}' "
            f"with separator {separator!r}, found {field_counts[malformed][0]} field(s)."
        )
    ids = pc.list_element(fields, 0).to_numpy(zero_copy_only=False).astype(str)
    numbers = pc.split_pattern(pc.utf8_trim_whitespace(pc.list_element(fields, 1)), ",")
    try:
        values = pc.cast(pc.utf8_trim_whitespace(numbers.flatten()), pa.float32())
    except pa.ArrowInvalid as error:
        detail = str(error) if len(str(error)) <= 120 else str(error)[:117] + "..."
        raise UserInputError(
            f"user-vector file {path}: the '{EMBEDDING}' field holds a value that is not a number "
            f"(field separator {separator!r}, numbers comma-joined; {detail})."
        ) from None
    return ids, _list_column_to_matrix(
        pa.ListArray.from_arrays(numbers.offsets, values), path, ids
    )


def _read_tfrecord_file(path):
    # Only this layout needs TensorFlow (a slow import, quietened: util/quiet_tensorflow.py).
    tf = import_tensorflow()

    spec = {ID: tf.io.FixedLenFeature([], tf.string), EMBEDDING: tf.io.RaggedFeature(tf.float32)}
    ids, values, row_lengths = [], [], []
    try:
        for batch in tf.data.TFRecordDataset(path).batch(4096).map(lambda rows: tf.io.parse_example(rows, spec)):
            ids.append(batch[ID].numpy())
            values.append(batch[EMBEDDING].flat_values.numpy())
            row_lengths.append(batch[EMBEDDING].row_lengths().numpy())
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        message = str(error).strip().splitlines()[0][:200]
        raise UserInputError(
            f"user-vector file {path} is not a TFRecord file of examples with '{ID}' and '{EMBEDDING}' ({message})."
        ) from None
    if not ids:
        raise UserInputError(f"user-vector file {path} is empty.")
    ids = np.char.decode(np.concatenate(ids).astype(bytes), "utf-8")
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(row_lengths))]).astype(np.int64)
    embedding = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(values)))
    return ids, _list_column_to_matrix(embedding, path, ids)


def _string_ids(column, path):
    if column.null_count:
        raise UserInputError(f"user-vector file {path}: column '{ID}' has null ids.")
    return column.cast(pa.string()).to_numpy().astype(str)


def _check_finite(matrix, ids, where):
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise UserInputError(f"{where} has NaN or infinite values (first at id '{ids[first]}').")


def _check_unique_ids(ids, source):
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        raise UserInputError(
            f"user-vector file {source}: column '{ID}' repeats id '{unique[np.argmax(counts)]}'."
        )
