"""Checks a table before a long job reads it, so bad data fails in seconds, clearly.

Every rule ``contracts/schema.py`` states about a table is checked here, and
every problem is a ``UserInputError`` naming the file and the column (and the
row where it is known). ``validate_table`` (training and inference tables): an
empty or truncated file, a missing column, a type that cannot be read as the
contract's (see data_loader.table_schema), a null anywhere, an id seen twice,
a user without behaviours, a negative word id, a word id outside the
vocabulary, padding (word id 0) inside a behaviour, a ``history_length``
other than the number of behaviours; for training tables no target words,
repeated or padding target words, ``target_counts`` of another length, a
count below 1, counts not in descending order (most frequent first); an empty
table. ``validate_sequence_table`` does the same for item-sequence tables: an
id seen twice, no history items, item indices outside the item index, special
tokens (``<pad>``, ``<mask>``, ``<cls>``) where real items belong, an
``items_length`` other than the number of items. Checks are vectorised
(pyarrow compute and numpy, or one batched ``tf.io.parse_example`` pass for
TFRecord): no Python runs per row.
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import schema
from data_loader.table_schema import check_readable_columns, conform
from util.errors import UserInputError

_TFRECORD_CHECK_BATCH = 1024


def _check_no_empty_rows(path, column, lengths, first_row, hint):
    """Raises for the first row whose list in ``column`` is empty."""
    empty = np.flatnonzero(np.asarray(lengths) == 0)
    if empty.size:
        raise UserInputError(
            f"file {path}, column {column}, row {first_row + int(empty[0])}: is empty ({hint})")


_EMPTY_HISTORY = "every user needs at least one behaviour"
_EMPTY_TARGET = ("a training row needs target words; is this an inference table? "
                 "pass the training table as --tables")


def _check_not_empty_file(path):
    if os.path.getsize(path) == 0:
        raise UserInputError(f"file {path} is empty (0 bytes)")


def _raise_at_first(path, column, values, row_of_value, bad, problem):
    """Raises naming the file, column and row of the first value where ``bad`` is True.

    Args:
        values: [num_values] the column's flattened ids.
        row_of_value: [num_values] the table row each value came from.
        bad: [num_values] bool.
        problem: value -> what is wrong with it, e.g. "negative word id -3".
    """
    index = np.flatnonzero(bad)
    if index.size:
        first = index[0]
        raise UserInputError(
            f"file {path}, column {column}, row {int(row_of_value[first])}: {problem(int(values[first]))}")


def _check_ids(path, column, values, row_of_value, vocabulary_size):
    """Raises for the first negative or out-of-vocabulary id in ``values``."""
    _raise_at_first(path, column, values, row_of_value, values < 0, lambda v: f"negative word id {v}")
    if vocabulary_size is not None:
        _raise_at_first(
            path, column, values, row_of_value, values >= vocabulary_size,
            lambda v: f"word id {v} is outside the vocabulary of {vocabulary_size} words "
                      f"(ids 0..{vocabulary_size - 1}); was the table built with another "
                      f"vocabulary, or is --num_vocabulary too small?")


def _check_no_nulls(path, table, fields):
    """Raises naming the first null of any of ``fields`` in the arrow ``table``, nested ones too.

    Writers with nullable list items (Spark, pandas) can store a null inside a
    list, e.g. a null word id inside a behaviour.
    """
    for field in fields:
        values = table.column(field.name).combine_chunks()
        row_of_value = np.arange(len(values))
        inside = "value"
        while True:
            if values.null_count:
                first = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
                raise UserInputError(f"file {path}, column {field.name}, row "
                                     f"{int(row_of_value[first])}: {inside} is missing (null)")
            if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)):
                break
            row_of_value = np.repeat(row_of_value, _lengths(values))
            values = pc.list_flatten(values)
            inside = "a value inside the list"


def _check_stated_lengths(path, table, length_column, list_column, lengths, noun):
    """Raises where ``length_column`` disagrees with the [num_rows] ``lengths`` of ``list_column``."""
    stated = table.column(length_column).to_numpy()
    mismatch = np.flatnonzero(lengths != stated)
    if mismatch.size:
        row = int(mismatch[0])
        raise UserInputError(
            f"file {path}, column {length_column}, row {row}: says {int(stated[row])} "
            f"{noun} but {list_column} holds {int(lengths[row])}")


def _parquet_rows(path, expected):
    """The shard's ``expected`` columns as a single-chunk table of exactly the contract's schema."""
    _check_not_empty_file(path)
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"file {path} is not a readable Parquet file: {error}") from None
    check_readable_columns(path, parquet.schema_arrow, expected)
    try:
        table = parquet.read(columns=expected.names)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"file {path} is truncated or corrupt: {error}") from None
    # Nulls first: the rows they are in are named before a cast could trip on them.
    _check_no_nulls(path, table, expected)
    return conform(path, table, expected).combine_chunks()


def _row_of_each_value(list_array):
    lengths = pc.list_value_length(list_array).fill_null(0).to_numpy(zero_copy_only=False)
    return np.repeat(np.arange(len(lengths)), lengths)


def _lengths(list_array):
    return pc.list_value_length(list_array).fill_null(0).to_numpy(zero_copy_only=False)


def _values(list_array):
    return pc.list_flatten(list_array).to_numpy(zero_copy_only=False)


def _check_history(path, first_row, behaviours_per_row, words_per_behaviour, words,
                   vocabulary_size):
    """The rules of ``history``: behaviours, each of word ids in the vocabulary, no padding inside.

    Args:
        first_row: the table row of the first user in these arrays.
        behaviours_per_row: [num_rows] behaviours of each user.
        words_per_behaviour: [num_behaviours] words of each behaviour.
        words: [num_words] every word id, in order.
    """
    row_of_behaviour = first_row + np.repeat(np.arange(len(behaviours_per_row)), behaviours_per_row)
    row_of_word = np.repeat(row_of_behaviour, words_per_behaviour)
    _check_ids(path, schema.HISTORY, words, row_of_word, vocabulary_size)
    _raise_at_first(path, schema.HISTORY, words, row_of_word, words == schema.PAD_ID,
                    lambda v: f"word id {v} is padding, which never appears inside a behaviour")
    _check_no_empty_rows(path, schema.HISTORY, behaviours_per_row, first_row, _EMPTY_HISTORY)


def _check_targets(path, first_row, words_per_row, words, counts_per_row, counts,
                   vocabulary_size):
    """The rules of ``target_words`` and ``target_counts`` (see contracts/schema.py).

    At least one target word; distinct word ids in the vocabulary, not
    padding; one count >= 1 per word; most frequent first.

    Args:
        words_per_row, counts_per_row: [num_rows] list lengths of the two columns.
        words, counts: their flattened values.
    """
    row_of_word = first_row + np.repeat(np.arange(len(words_per_row)), words_per_row)
    _check_ids(path, schema.TARGET_WORDS, words, row_of_word, vocabulary_size)
    _raise_at_first(path, schema.TARGET_WORDS, words, row_of_word, words == schema.PAD_ID,
                    lambda v: f"word id {v} is padding, not a target word")
    _check_no_empty_rows(path, schema.TARGET_WORDS, words_per_row, first_row, _EMPTY_TARGET)
    mismatch = np.flatnonzero(words_per_row != counts_per_row)
    if mismatch.size:
        raise UserInputError(
            f"file {path}, column {schema.TARGET_COUNTS}, row {first_row + int(mismatch[0])}: has "
            f"{int(counts_per_row[mismatch[0]])} counts for "
            f"{int(words_per_row[mismatch[0]])} target words")
    _raise_at_first(path, schema.TARGET_COUNTS, counts, row_of_word, counts < 1,
                    lambda v: f"count {v} is below 1")
    # Sorted by (row, word), a repeated word of a row sits next to itself.
    order = np.lexsort((words, row_of_word))
    repeated = np.zeros(len(words), dtype=bool)
    repeated[order[1:]] = ((row_of_word[order[1:]] == row_of_word[order[:-1]])
                           & (words[order[1:]] == words[order[:-1]]))
    _raise_at_first(path, schema.TARGET_WORDS, words, row_of_word, repeated,
                    lambda v: f"word id {v} appears more than once; target words are distinct")
    rising = np.zeros(len(counts), dtype=bool)
    rising[1:] = (row_of_word[1:] == row_of_word[:-1]) & (counts[1:] > counts[:-1])
    _raise_at_first(path, schema.TARGET_COUNTS, counts, row_of_word, rising,
                    lambda v: f"count {v} follows a smaller count; target words are ordered "
                              f"most frequent first")


class _UniqueIds:
    """Collects the ids of every shard of a table and names the first one seen twice."""

    def __init__(self, column):
        self._column = column
        self._shards = []  # (path, arrow array of the shard's ids)

    def add(self, path, ids):
        self._shards.append((path, pa.array(ids) if not isinstance(ids, (pa.Array, pa.ChunkedArray))
                             else ids))

    def check(self):
        if not self._shards:
            return
        every_id = pa.chunked_array([ids for _, ids in self._shards]).combine_chunks()
        if pc.count_distinct(every_id).as_py() == len(every_id):
            return  # the common case costs one hash pass; finding the repeat only on failure
        _, first_index = np.unique(every_id.to_numpy(zero_copy_only=False), return_index=True)
        first_seen = np.zeros(len(every_id), dtype=bool)
        first_seen[first_index] = True
        repeat = int(np.flatnonzero(~first_seen)[0])
        for path, ids in self._shards:
            if repeat < len(ids):
                value = ids[repeat].as_py()
                value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                raise UserInputError(
                    f"file {path}, column {self._column}, row {repeat}: id {value!r} appears "
                    f"more than once in the table; every user has one row")
            repeat -= len(ids)


def _validate_parquet_file(path, with_target, vocabulary_size, unique_ids):
    expected = schema.TRAINING_SCHEMA if with_target else schema.INFERENCE_SCHEMA
    table = _parquet_rows(path, expected)
    unique_ids.add(path, table.column(schema.ID).combine_chunks())
    if not table.num_rows:
        return 0
    history = table.column(schema.HISTORY).chunk(0)
    behaviours = pc.list_flatten(history)
    lengths = _lengths(history)
    _check_history(path, 0, lengths, _lengths(behaviours), _values(behaviours), vocabulary_size)
    _check_stated_lengths(path, table, schema.HISTORY_LENGTH, schema.HISTORY, lengths, "behaviours")
    if with_target:
        targets = table.column(schema.TARGET_WORDS).chunk(0)
        counts = table.column(schema.TARGET_COUNTS).chunk(0)
        _check_targets(path, 0, _lengths(targets), _values(targets), _lengths(counts),
                       _values(counts), vocabulary_size)
    return table.num_rows


def _tfrecord_read_error(path, rows, error, feature_names, table_name):
    """The UserInputError for a TFRecord shard that stopped parsing after ``rows`` good rows.

    Args:
        error: the ``tf.errors.DataLossError`` (truncated or corrupt file) or
            ``tf.errors.InvalidArgumentError`` (records of another schema).
        feature_names: the features the parser expects, to name the column
            TensorFlow's message is about.
        table_name: what the records should have been, e.g. "sequence table".
    """
    import tensorflow as tf

    if isinstance(error, tf.errors.DataLossError):
        return UserInputError(
            f"file {path} is truncated or corrupt (not a complete TFRecord file); "
            f"{rows} rows were readable before the damage")
    column = next((name for name in feature_names if f"Key: {name}" in error.message
                   or f"Feature: {name}" in error.message or f"'{name}'" in error.message), None)
    where = f", column {column}" if column else ""
    first_line = error.message.strip().splitlines()[0]
    return UserInputError(
        f"file {path}{where}: records after row {rows} do not match the {table_name} "
        f"schema ({first_line})")


def _validate_tfrecord_file(path, with_target, vocabulary_size, unique_ids):
    import tensorflow as tf

    from data_loader.tfrecord_reader import feature_spec, parse_batch

    _check_not_empty_file(path)
    rows = 0
    ids = []
    records = tf.data.TFRecordDataset(path).batch(_TFRECORD_CHECK_BATCH)
    records = records.map(lambda serialized: parse_batch(serialized, with_target))
    try:
        for chunk_ids, history, target_words, target_counts in records:
            ids.append(chunk_ids.numpy())
            _check_history(path, rows, history.row_lengths().numpy(),
                           history.values.row_lengths().numpy(), history.flat_values.numpy(),
                           vocabulary_size)
            if with_target:
                # Absent features parse as empty lists, so this also catches
                # an inference table passed where a training table is needed.
                _check_targets(path, rows, target_words.row_lengths().numpy(),
                               target_words.flat_values.numpy(), target_counts.row_lengths().numpy(),
                               target_counts.flat_values.numpy(), vocabulary_size)
            rows += int(history.nrows())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        raise _tfrecord_read_error(path, rows, error, feature_spec(with_target), "table") from None
    unique_ids.add(path, np.concatenate(ids) if ids else np.array([], dtype=object))
    return rows


def validate_table(table_files, with_target, vocabulary_size=None):
    """Checks every shard of a table; returns the number of rows.

    Args:
        table_files: a ``TableFiles``.
        with_target: whether target columns are required (training tables).
        vocabulary_size: word ids must be below it; None skips that check.

    Raises:
        UserInputError: naming the file, column and row of the first problem.
    """
    validate_file = (_validate_parquet_file if table_files.file_format == schema.PARQUET
                     else _validate_tfrecord_file)
    total = 0
    unique_ids = _UniqueIds(schema.ID)
    for path in table_files.files:
        total += validate_file(path, with_target, vocabulary_size, unique_ids)
    if total == 0:
        names = ", ".join(table_files.files[:3]) + ("..." if len(table_files.files) > 3 else "")
        raise UserInputError(f"the table is empty: no rows in {names}")
    unique_ids.check()
    return total


# ---- item-sequence tables -----------------------------------------------------------------

_EMPTY_ITEMS = ("every user of a sequence table has at least one history item; is this the "
                "sequences/ table of a table folder?")


def _check_item_indices(path, column, values, row_of_value, num_item_ids):
    """Raises for the first negative, out-of-range or special-token item index in ``values``."""
    _raise_at_first(path, column, values, row_of_value, values < 0, lambda v: f"negative item index {v}")
    if num_item_ids is not None:
        _raise_at_first(
            path, column, values, row_of_value, values >= num_item_ids,
            lambda v: f"item index {v} is outside the item index of {num_item_ids} ids "
                      f"(0..{num_item_ids - 1}); was the table built with another item index?")
    _raise_at_first(
        path, column, values, row_of_value, values < schema.FIRST_ITEM_ID,
        lambda v: f"item index {v} is the special token {schema.ITEM_SPECIAL_TOKENS[v]}; real "
                  f"items start at {schema.FIRST_ITEM_ID}")


def _validate_sequence_parquet_file(path, num_item_ids, unique_ids):
    table = _parquet_rows(path, schema.SEQUENCE_SCHEMA)
    unique_ids.add(path, table.column(schema.ID).combine_chunks())
    if not table.num_rows:
        return 0
    for column in (schema.ITEMS, schema.TARGET_ITEMS):
        lists = table.column(column).chunk(0)
        _check_item_indices(path, column, pc.list_flatten(lists).to_numpy(zero_copy_only=False),
                            _row_of_each_value(lists), num_item_ids)
    lengths = pc.list_value_length(table.column(schema.ITEMS).chunk(0)).to_numpy(zero_copy_only=False)
    _check_no_empty_rows(path, schema.ITEMS, lengths, 0, _EMPTY_ITEMS)
    _check_stated_lengths(path, table, schema.ITEMS_LENGTH, schema.ITEMS, lengths, "items")
    return table.num_rows


def _validate_sequence_tfrecord_file(path, num_item_ids, unique_ids):
    import tensorflow as tf

    from data_loader.sequence_dataset import feature_spec, parse_sequence_examples

    _check_not_empty_file(path)
    rows = 0
    ids = []
    records = tf.data.TFRecordDataset(path).batch(_TFRECORD_CHECK_BATCH)
    records = records.map(lambda serialized: parse_sequence_examples(serialized, True))
    try:
        for chunk in records:
            ids.append(chunk[schema.ID].numpy())
            for column in (schema.ITEMS, schema.TARGET_ITEMS):
                lists = chunk[column]
                row_of_value = np.repeat(np.arange(lists.nrows()), lists.row_lengths().numpy())
                _check_item_indices(path, column, lists.flat_values.numpy(), rows + row_of_value,
                                    num_item_ids)
            # Absent features parse as empty lists, so this also catches another
            # table (training, inference) passed where the sequences are needed.
            _check_no_empty_rows(path, schema.ITEMS, chunk[schema.ITEMS].row_lengths().numpy(),
                                 rows, _EMPTY_ITEMS)
            rows += int(chunk[schema.ITEMS].nrows())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        raise _tfrecord_read_error(path, rows, error, feature_spec(True), "sequence table") from None
    unique_ids.add(path, np.concatenate(ids) if ids else np.array([], dtype=object))
    return rows


def validate_sequence_table(table_files, num_item_ids):
    """Checks every shard of an item-sequence table; returns the number of rows.

    Args:
        table_files: a ``TableFiles`` of a ``sequences`` table.
        num_item_ids: item indices must be below it (the model's item index
            size, 3 special ids included); None skips that check.

    Raises:
        UserInputError: naming the file, column and row of the first problem.
    """
    validate_file = (_validate_sequence_parquet_file if table_files.file_format == schema.PARQUET
                     else _validate_sequence_tfrecord_file)
    total = 0
    unique_ids = _UniqueIds(schema.ID)
    for path in table_files.files:
        total += validate_file(path, num_item_ids, unique_ids)
    if total == 0:
        names = ", ".join(table_files.files[:3]) + ("..." if len(table_files.files) > 3 else "")
        raise UserInputError(f"the sequence table is empty: no rows in {names}")
    unique_ids.check()
    return total
