"""Reads each user's bag of words from a SUMN inference table into a sparse matrix.

The bag counts every word id of every behaviour in the user's ``history``
(see ``contracts/schema.py``), which is what a bag-of-items baseline such as
TF-IDF + logistic regression needs. Padding and out-of-vocabulary ids are not
words and are dropped. The work is vectorised over pyarrow offsets: no Python
runs per user or per behaviour.

Example:
    bag = read_bag_of_words("runs/ml1m/tables")
    bag.ids       # np.ndarray[str], [num_users]
    bag.counts    # scipy.sparse.csr_matrix[float32], [num_users, vocabulary_size]
"""

import dataclasses
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse

from contracts.schema import FIRST_WORD_ID, HISTORY, ID, INFERENCE_SCHEMA, INFERENCE_SUBDIR, VOCABULARY_FILE
from data_loader.table_schema import check_readable_columns, conform, select
from util.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class BagOfWords:
    """Word counts per user.

    Attributes:
        ids: np.ndarray[str], [num_users], unique.
        counts: scipy.sparse.csr_matrix[float32], [num_users, vocabulary_size];
            columns are word ids (columns below ``FIRST_WORD_ID`` are empty).
        source: the folder or files read.
    """

    ids: np.ndarray
    counts: scipy.sparse.csr_matrix
    source: str


def read_bag_of_words(tables):
    """Reads the per-user bag of words of a table folder.

    Args:
        tables: a table folder (its ``inference/`` shards are read), a folder of
            Parquet shards, or one Parquet shard.

    Raises:
        UserInputError: no shards, a missing ``id``/``history`` column, null or
            repeated ids, or word ids beyond the vocabulary file.
    """
    files = inference_shards(tables)
    ids, rows, words = [], [], []
    first_row = 0
    for path in files:
        shard_ids, shard_rows, shard_words = _read_shard(path)
        ids.append(shard_ids)
        rows.append(shard_rows + first_row)
        words.append(shard_words)
        first_row += len(shard_ids)
    ids = np.concatenate(ids)
    rows = np.concatenate(rows)
    words = np.concatenate(words)

    vocabulary_size = _vocabulary_size(tables)
    largest = int(words.max()) if len(words) else FIRST_WORD_ID - 1
    if vocabulary_size is None:
        vocabulary_size = largest + 1
    elif largest >= vocabulary_size:
        raise UserInputError(
            f"table {tables}: column '{HISTORY}' holds word id {largest}, beyond the "
            f"{vocabulary_size} words of {VOCABULARY_FILE}."
        )
    keep = words >= FIRST_WORD_ID
    # COO -> CSR sums repeated (user, word) pairs into counts.
    counts = scipy.sparse.coo_matrix(
        (np.ones(int(keep.sum()), np.float32), (rows[keep], words[keep])),
        shape=(len(ids), vocabulary_size),
    ).tocsr()
    unique, repeats = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        raise UserInputError(f"table {tables}: column '{ID}' repeats user id '{unique[np.argmax(repeats)]}'.")
    return BagOfWords(ids=ids, counts=counts, source=os.fspath(tables))


def inference_shards(tables):
    """The Parquet shards to read for ``tables`` (see ``read_bag_of_words``), sorted."""
    tables = os.fspath(tables)
    if os.path.isfile(tables):
        return [tables]
    if not os.path.isdir(tables):
        raise UserInputError(f"table folder {tables} does not exist.")
    folder = os.path.join(tables, INFERENCE_SUBDIR)
    if not os.path.isdir(folder):
        folder = tables
    files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
    if not files:
        raise UserInputError(
            f"table folder {tables} has no Parquet shards (looked in {folder}); the bag-of-words "
            "baseline reads the Parquet inference table."
        )
    return files


def _read_shard(path):
    """One shard -> (ids [n], row index of every word [w], word ids [w])."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"table shard {path} is not a readable Parquet file ({error}).") from None
    for column in (ID, HISTORY):
        if column not in schema.names:
            raise UserInputError(f"table shard {path} has no column '{column}' (it has: {', '.join(schema.names)}).")
    # Any writer's spelling of the history's type (data_loader/table_schema.py);
    # ids of any type are read as text below.
    expected = select(INFERENCE_SCHEMA, [HISTORY])
    check_readable_columns(path, schema, expected)
    table = pq.read_table(path, columns=[ID, HISTORY])
    if table.column(ID).null_count:
        raise UserInputError(f"table shard {path}: column '{ID}' has null ids.")
    history = conform(path, table, expected).column(HISTORY).combine_chunks()
    ids = table.column(ID).cast(pa.string()).to_numpy().astype(str)
    behaviours = history.flatten()  # [num_behaviours] lists of word ids
    words = behaviours.flatten()
    if words.null_count:
        raise UserInputError(f"table shard {path}: column '{HISTORY}' holds null word ids.")
    words = words.to_numpy(zero_copy_only=False)
    if len(words) and words.min() < 0:
        raise UserInputError(f"table shard {path}: column '{HISTORY}' holds negative word id {words.min()}.")
    # Words per user = sum of the word counts of that user's behaviours, via cumulative sums.
    behaviours_per_user = pc.fill_null(pc.list_value_length(history), 0).to_numpy(zero_copy_only=False)
    words_per_behaviour = pc.fill_null(pc.list_value_length(behaviours), 0).to_numpy(zero_copy_only=False)
    word_ends = np.concatenate([[0], np.cumsum(words_per_behaviour, dtype=np.int64)])
    behaviour_ends = np.concatenate([[0], np.cumsum(behaviours_per_user, dtype=np.int64)])
    words_per_user = np.diff(word_ends[behaviour_ends])
    rows = np.repeat(np.arange(len(ids), dtype=np.int64), words_per_user)
    return ids, rows, words.astype(np.int64, copy=False)


def _vocabulary_size(tables):
    """Lines of the vocabulary file beside the shards, or None where there is none."""
    tables = os.path.abspath(os.fspath(tables))
    folder = tables if os.path.isdir(tables) else os.path.dirname(tables)
    candidates = [folder]
    if os.path.basename(folder) == INFERENCE_SUBDIR:
        candidates.append(os.path.dirname(folder))
    for candidate in candidates:
        path = os.path.join(candidate, VOCABULARY_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return sum(1 for _ in handle)
    return None
