"""Writes user vectors, one output shard per input shard, in four layouts.

Every layout holds, per user, the id, the vector and ``length`` (the number of
behaviours the encoder saw, i.e. ``history_length`` after truncation to
``--max_query_per_week``):

* ``parquet`` (default): ``<shard>.parquet`` with the columns ``id`` string,
  ``embedding`` fixed_size_list<float32>[dim] and ``length`` int32.
* ``tfrecord``: ``<shard>.tfrecord``, one ``tf.train.Example`` per user with
  ``id`` bytes_list[1], ``embedding`` float_list[dim] and ``length`` int64_list[1].
* ``npy``: ``<shard>.npy`` float32 [n, dim], ``<shard>.ids.txt`` one id per
  line and ``<shard>.lengths.txt`` one length per line, in the same order.
* ``tsv``: SUMN's text layout, ``<shard>.tsv`` with one line per user:
  ``id<separator>v1,v2,...,vdim<separator>length``.

A shard is written under hidden temporary names in the output folder and
renamed when complete (util/atomic.py), so a reader, or a restarted job,
either sees the whole shard or none of it. A shard is complete when its
*primary* file (the one named above first) exists; the npy side files are
renamed before it.

Example:

```python
fmt = vector_format("parquet")
path = fmt.output_path("out", "tables/inference/part-00000-of-00004.parquet")
with fmt.open(path, dim=256) as writer:      # out/part-00000-of-00004.parquet
    writer.write(ids, vectors, lengths)       # [n] bytes, [n, 256] float32, [n] int
ids, vectors, lengths = fmt.read(path)
```
"""

import abc
import contextlib
import glob
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import vector_tsv
from contracts.schema import ID
from util.atomic import temporary_path_for
from util.errors import UserInputError

# Column / feature names of the outputs (data_loader/user_vectors.py reads them).
EMBEDDING = "embedding"
LENGTH = "length"

PARQUET = "parquet"
TFRECORD = "tfrecord"
NPY = "npy"
TSV = "tsv"
OUTPUT_FORMATS = (PARQUET, TFRECORD, NPY, TSV)

IDS_SUFFIX = ".ids.txt"
LENGTHS_SUFFIX = ".lengths.txt"

_PARQUET_ROW_GROUP_ROWS = 65_536  # rows buffered per Parquet row group
_COPY_BYTES = 16 << 20


def _default_mode(mode=0o666):
    """``mode`` less the process umask: what ``open()`` would have given the file."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _string_ids(ids, where):
    """[n] ids (bytes or str) as a pyarrow string array; raises on invalid UTF-8."""
    if len(ids) == 0:
        return pa.array([], pa.string())
    array = pa.array(np.asarray(ids, dtype=object))
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        try:
            array = array.cast(pa.string())
        except pa.ArrowInvalid:
            raise UserInputError(f"{where}: a user id is not valid UTF-8 text") from None
    return array


def _check_vectors(ids, vectors, lengths, dim, where):
    vectors = np.asarray(vectors, dtype=np.float32)
    lengths = np.asarray(lengths)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"{where}: `vectors` should be [n, {dim}]; received shape {vectors.shape}")
    if not len(ids) == len(vectors) == len(lengths):
        raise ValueError(f"{where}: {len(ids)} ids, {len(vectors)} vectors and {len(lengths)} "
                         f"lengths; they should be equal")
    return vectors, lengths


def _check_text_safe(ids, forbidden, where):
    """Raises where an id holds a character that would break a line-based layout."""
    for text, name in forbidden:
        contains = pc.match_substring(ids, text)
        if pc.any(contains).as_py():
            first = ids[int(np.flatnonzero(contains.to_numpy(zero_copy_only=False))[0])].as_py()
            raise UserInputError(
                f"{where}: user id {first!r} contains {name}, which would break its line of "
                f"text; choose --output_format=parquet or tfrecord")


class _ShardWriter(abc.ABC):
    """Writes one output shard under temporary names; ``commit`` renames them into place.

    Each output format subclasses it and implements ``_write``.

    Used as a context manager: leaving the block normally commits, an
    exception removes every temporary file and leaves no output behind.
    """

    def __init__(self, path, dim):
        self.path = path
        self.dim = int(dim)
        self.rows = 0
        self._temporaries = {}  # final path -> temporary path; the primary file first

    def _temporary(self, final_path):
        temporary = temporary_path_for(final_path)
        self._temporaries[final_path] = temporary
        return temporary

    def write(self, ids, vectors, lengths):
        """Appends users: ids [n] bytes or str, vectors [n, dim] float32, lengths [n] int."""
        vectors, lengths = _check_vectors(ids, vectors, lengths, self.dim, self.path)
        self._write(ids, vectors, lengths)
        self.rows += len(vectors)

    @abc.abstractmethod
    def _write(self, ids, vectors, lengths):
        """Appends checked users to the temporary file(s) of this format."""

    def _close(self):
        """Finishes the temporary files (flush, headers); called before renaming."""

    def commit(self):
        self._close()
        # The primary file is registered first but renamed last: once it is
        # visible, every side file already is.
        finals = list(self._temporaries)
        for final in finals[1:] + finals[:1]:
            # Temporary files are created private (mkstemp); outputs are for sharing.
            os.chmod(self._temporaries[final], _default_mode())
            os.replace(self._temporaries[final], final)
        self._temporaries = {}

    def abort(self):
        with contextlib.suppress(Exception):
            self._close()
        for temporary in self._temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
        self._temporaries = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


class _ParquetShardWriter(_ShardWriter):
    def __init__(self, path, dim):
        super().__init__(path, dim)
        self.schema = pa.schema([
            pa.field(ID, pa.string(), nullable=False),
            pa.field(EMBEDDING, pa.list_(pa.float32(), self.dim), nullable=False),
            pa.field(LENGTH, pa.int32(), nullable=False),
        ])
        self._writer = pq.ParquetWriter(self._temporary(path), self.schema)
        self._pending = []
        self._pending_rows = 0

    def _write(self, ids, vectors, lengths):
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.dim)
        self._pending.append(pa.Table.from_arrays(
            [_string_ids(ids, self.path), embedding, pa.array(lengths.astype(np.int32))],
            schema=self.schema))
        self._pending_rows += len(vectors)
        if self._pending_rows >= _PARQUET_ROW_GROUP_ROWS:
            self._flush()

    def _flush(self):
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending),
                                     row_group_size=max(self._pending_rows, 1))
        self._pending, self._pending_rows = [], 0

    def _close(self):
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None


class _TFRecordShardWriter(_ShardWriter):
    def __init__(self, path, dim):
        super().__init__(path, dim)
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.io.TFRecordWriter(self._temporary(path))

    def _write(self, ids, vectors, lengths):
        train = self._tf.train
        for user_id, vector, length in zip(ids, vectors.tolist(), lengths.tolist()):
            if isinstance(user_id, str):
                user_id = user_id.encode("utf-8")
            example = train.Example(features=train.Features(feature={
                ID: train.Feature(bytes_list=train.BytesList(value=[user_id])),
                EMBEDDING: train.Feature(float_list=train.FloatList(value=vector)),
                LENGTH: train.Feature(int64_list=train.Int64List(value=[int(length)])),
            }))
            self._writer.write(example.SerializeToString())

    def _close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _npy_side_paths(path):
    stem = path[: -len(".npy")]
    return stem + IDS_SUFFIX, stem + LENGTHS_SUFFIX


class _NpyShardWriter(_ShardWriter):
    """Streams vectors to a raw file, then prefixes the .npy header once n is known."""

    def __init__(self, path, dim):
        super().__init__(path, dim)
        ids_path, lengths_path = _npy_side_paths(path)
        self._npy_temporary = self._temporary(path)
        self._raw_path = temporary_path_for(path + ".raw")
        self._raw = open(self._raw_path, "wb")
        self._ids = open(self._temporary(ids_path), "w", encoding="utf-8")
        self._lengths = open(self._temporary(lengths_path), "w", encoding="utf-8")

    def _write(self, ids, vectors, lengths):
        ids = _string_ids(ids, self.path)
        _check_text_safe(ids, (("\n", "a line break"), ("\r", "a carriage return")), self.path)
        self._raw.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        if len(ids):
            self._ids.write("\n".join(ids.to_pylist()) + "\n")
            self._lengths.write("\n".join(map(str, lengths.tolist())) + "\n")

    def _close(self):
        if self._raw is None:
            return
        for handle in (self._raw, self._ids, self._lengths):
            handle.close()
        self._raw = None
        try:
            with open(self._npy_temporary, "wb") as npy, open(self._raw_path, "rb") as raw:
                header = {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)}
                np.lib.format.write_array_header_1_0(npy, header)
                shutil.copyfileobj(raw, npy, _COPY_BYTES)
        finally:
            os.remove(self._raw_path)

    def abort(self):
        super().abort()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._raw_path)


class _TsvShardWriter(_ShardWriter):
    def __init__(self, path, dim, separator):
        super().__init__(path, dim)
        self.separator = separator
        self._handle = open(self._temporary(path), "w", encoding="utf-8")

    def _write(self, ids, vectors, lengths):
        ids = _string_ids(ids, self.path)
        _check_text_safe(ids, ((self.separator, f"the separator {self.separator!r}"),
                               ("\n", "a line break"), ("\r", "a carriage return")), self.path)
        if not len(ids):
            return
        # Vectorised formatting: arrow prints the shortest text that reads back
        # as the same float32.
        numbers = pc.cast(pa.array(vectors.reshape(-1)), pa.string())
        offsets = pa.array(np.arange(0, len(numbers) + 1, self.dim, dtype=np.int32))
        joined = pc.binary_join(pa.ListArray.from_arrays(offsets, numbers), ",")
        lines = pc.binary_join_element_wise(
            ids, joined, pc.cast(pa.array(lengths.astype(np.int64)), pa.string()), self.separator)
        self._handle.write("\n".join(lines.to_pylist()) + "\n")

    def _close(self):
        if not self._handle.closed:
            self._handle.close()


class VectorFormat:
    """One output layout: where its shards go, how to write, recognise, count and read them.

    Args:
        name: one of ``OUTPUT_FORMATS``.
        separator: the tsv separator between id, vector and length.
    """

    def __init__(self, name, separator="\t"):
        self.name = name
        self.separator = separator
        self.suffix = {PARQUET: ".parquet", TFRECORD: ".tfrecord", NPY: ".npy", TSV: ".tsv"}[name]

    def output_path(self, outputs_dir, input_path):
        """``<outputs_dir>/<input shard name without its suffix><suffix>``."""
        stem = os.path.splitext(os.path.basename(input_path))[0]
        return os.path.join(outputs_dir, stem + self.suffix)

    def shard_files(self, path):
        """Every file of the output shard at ``path``, primary file first."""
        return [path, *_npy_side_paths(path)] if self.name == NPY else [path]

    def is_complete(self, path):
        return os.path.exists(path)

    def remove(self, path):
        """Deletes the shard at ``path``, primary file first, and any temporaries a killed job left."""
        for final in self.shard_files(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(final)
        self.remove_temporaries(path)

    def remove_temporaries(self, path):
        """Deletes hidden temporary files of this shard left by a killed job."""
        for final in self.shard_files(path) + [path + ".raw"]:
            folder, name = os.path.split(os.path.abspath(final))
            for temporary in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(temporary)

    def open(self, path, dim):
        """A context-managed writer of the shard at ``path`` (see ``_ShardWriter``)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if self.name == PARQUET:
            return _ParquetShardWriter(path, dim)
        if self.name == TFRECORD:
            return _TFRecordShardWriter(path, dim)
        if self.name == NPY:
            return _NpyShardWriter(path, dim)
        return _TsvShardWriter(path, dim, self.separator)

    def count_rows(self, path):
        """Users in a complete shard, read as cheaply as the layout allows."""
        if self.name == PARQUET:
            return pq.ParquetFile(path).metadata.num_rows
        if self.name == NPY:
            return int(np.load(path, mmap_mode="r").shape[0])
        if self.name == TSV:
            with open(path, "rb") as handle:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(_COPY_BYTES), b""))
        import tensorflow as tf

        return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda count, _: count + 1))

    def read(self, path):
        """A complete shard as (ids [n] str, vectors [n, dim] float32, lengths [n] int32)."""
        if self.name == PARQUET:
            table = pq.read_table(path)
            embedding = table.column(EMBEDDING).combine_chunks()
            dim = embedding.type.list_size
            vectors = embedding.flatten().to_numpy(zero_copy_only=False).reshape(len(table), dim)
            return (table.column(ID).to_numpy().astype(str), vectors.astype(np.float32),
                    table.column(LENGTH).to_numpy().astype(np.int32))
        if self.name == NPY:
            ids_path, lengths_path = _npy_side_paths(path)
            with open(ids_path, encoding="utf-8") as handle:
                ids = np.array(handle.read().splitlines(), dtype=str)
            with open(lengths_path, encoding="utf-8") as handle:
                lengths = np.array(handle.read().split(), dtype=np.int32)
            return ids, np.load(path), lengths
        if self.name == TSV:
            return self._read_tsv(path)
        return self._read_tfrecord(path)

    def _read_tsv(self, path):
        with open(path, encoding="utf-8") as handle:
            lines = pa.array(handle.read().splitlines(), pa.string())
        fields = pc.split_pattern(lines, self.separator)
        ids = pc.list_element(fields, 0).to_numpy(zero_copy_only=False).astype(str)
        numbers = pc.split_pattern(pc.list_element(fields, 1), ",")
        values = pc.cast(numbers.flatten(), pa.float32()).to_numpy(zero_copy_only=False)
        lengths = pc.cast(pc.list_element(fields, 2), pa.int32()).to_numpy(zero_copy_only=False)
        return ids, values.reshape(len(ids), -1) if len(ids) else values.reshape(0, 0), lengths

    def _read_tfrecord(self, path):
        import tensorflow as tf

        spec = {
            ID: tf.io.FixedLenFeature([], tf.string),
            EMBEDDING: tf.io.RaggedFeature(tf.float32),
            LENGTH: tf.io.FixedLenFeature([], tf.int64),
        }
        ids, vectors, lengths = [], [], []
        for batch in tf.data.TFRecordDataset(path).batch(4096).map(
                lambda serialized: tf.io.parse_example(serialized, spec)):
            ids.append(batch[ID].numpy())
            vectors.append(batch[EMBEDDING].to_tensor().numpy())
            lengths.append(batch[LENGTH].numpy())
        if not ids:
            return np.array([], dtype=str), np.zeros((0, 0), np.float32), np.array([], np.int32)
        return (np.concatenate(ids).astype(str), np.concatenate(vectors).astype(np.float32),
                np.concatenate(lengths).astype(np.int32))


def vector_format(name, separator="\t"):
    """The ``VectorFormat`` named by ``--output_format`` (and ``--separator`` for tsv).

    ``--separator`` may be written as the two characters ``\\t`` (or ``tab``) for a tab.

    Raises:
        UserInputError: an unknown format, or a separator that would make the
            tsv lines ambiguous (contracts.vector_tsv.separator_problem).
    """
    if name not in OUTPUT_FORMATS:
        raise UserInputError(
            f"--output_format={name!r} is not an output format; use one of: {', '.join(OUTPUT_FORMATS)}")
    separator = vector_tsv.parse_separator(separator)
    problem = vector_tsv.separator_problem(separator) if name == TSV else None
    if problem:
        raise UserInputError(
            f"--separator={separator!r} cannot separate the fields of a tsv line: {problem}")
    return VectorFormat(name, separator)
