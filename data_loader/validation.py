"""Checks a table before a long job reads it, so bad data fails in seconds, clearly.

Every problem is a ``UserInputError`` naming the file and the column (and the
row where it is known): an empty or truncated file, a missing column, a wrong
type, a negative word id, a word id outside the vocabulary, an inconsistent
``history_length``, an empty table. ``validate_sequence_table`` does the same
for item-sequence tables: item indices outside the item index, special tokens
(``<pad>``, ``<mask>``, ``<cls>``) where real items belong, an inconsistent
``items_length``. Checks are vectorised (pyarrow compute, or one batched
``tf.io.parse_example`` pass for TFRecord).
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import schema
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
    """Raises naming the first null value of any of ``fields`` in the arrow ``table``."""
    for field in fields:
        if table.column(field.name).null_count:
            row = int(np.flatnonzero(
                table.column(field.name).is_null().to_numpy(zero_copy_only=False))[0])
            raise UserInputError(f"file {path}, column {field.name}, row {row}: value is missing (null)")


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
    _check_not_empty_file(path)
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"file {path} is not a readable Parquet file: {error}") from None
    actual = parquet.schema_arrow
    for field in expected:
        if field.name not in actual.names:
            raise UserInputError(
                f"file {path} has no column {field.name} (it has: {', '.join(actual.names)})")
        found = actual.field(field.name).type
        compatible = found == field.type or (
            pa.types.is_integer(found) and pa.types.is_integer(field.type)) or (
            _list_depth(found) == _list_depth(field.type) and _list_depth(found) > 0
            and pa.types.is_integer(_leaf_type(found)))
        if not compatible:
            raise UserInputError(
                f"file {path}, column {field.name}: expected type {field.type}, found {found}")
    try:
        return parquet.read(columns=expected.names)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"file {path} is truncated or corrupt: {error}") from None


def _list_depth(arrow_type):
    depth = 0
    while pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        arrow_type = arrow_type.value_type
        depth += 1
    return depth


def _leaf_type(arrow_type):
    while pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        arrow_type = arrow_type.value_type
    return arrow_type


def _row_of_each_value(list_array):
    lengths = pc.list_value_length(list_array).fill_null(0).to_numpy(zero_copy_only=False)
    return np.repeat(np.arange(len(lengths)), lengths)


def _validate_parquet_file(path, with_target, vocabulary_size):
    expected = schema.TRAINING_SCHEMA if with_target else schema.INFERENCE_SCHEMA
    table = _parquet_rows(path, expected).combine_chunks()
    _check_no_nulls(path, table, expected)
    history = table.column(schema.HISTORY).chunk(0) if table.num_rows else None
    if history is None:
        return 0
    behaviours = pc.list_flatten(history)
    words = pc.list_flatten(behaviours).to_numpy(zero_copy_only=False)
    row_of_behaviour = _row_of_each_value(history)
    row_of_word = row_of_behaviour[_row_of_each_value(behaviours)]
    _check_ids(path, schema.HISTORY, words, row_of_word, vocabulary_size)
    lengths = pc.list_value_length(history).to_numpy(zero_copy_only=False)
    _check_no_empty_rows(path, schema.HISTORY, lengths, 0, _EMPTY_HISTORY)
    _check_stated_lengths(path, table, schema.HISTORY_LENGTH, schema.HISTORY, lengths, "behaviours")
    if with_target:
        targets = table.column(schema.TARGET_WORDS).chunk(0)
        counts = table.column(schema.TARGET_COUNTS).chunk(0)
        target_values = pc.list_flatten(targets).to_numpy(zero_copy_only=False)
        _check_ids(path, schema.TARGET_WORDS, target_values, _row_of_each_value(targets),
                   vocabulary_size)
        target_lengths = pc.list_value_length(targets).to_numpy(zero_copy_only=False)
        _check_no_empty_rows(path, schema.TARGET_WORDS, target_lengths, 0, _EMPTY_TARGET)
        count_lengths = pc.list_value_length(counts).to_numpy(zero_copy_only=False)
        mismatch = np.flatnonzero(target_lengths != count_lengths)
        if mismatch.size:
            raise UserInputError(
                f"file {path}, column {schema.TARGET_COUNTS}, row {int(mismatch[0])}: has "
                f"{int(count_lengths[mismatch[0]])} counts for "
                f"{int(target_lengths[mismatch[0]])} target words")
        count_values = pc.list_flatten(counts).to_numpy(zero_copy_only=False)
        _raise_at_first(path, schema.TARGET_COUNTS, count_values, _row_of_each_value(counts),
                        count_values < 1, lambda v: f"count {v} is below 1")
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


def _validate_tfrecord_file(path, with_target, vocabulary_size):
    import tensorflow as tf

    from data_loader.tfrecord_reader import feature_spec, parse_batch

    _check_not_empty_file(path)
    rows = 0
    records = tf.data.TFRecordDataset(path).batch(_TFRECORD_CHECK_BATCH)
    records = records.map(lambda serialized: parse_batch(serialized, with_target))
    try:
        for _, history, target_words, _ in records:
            words = history.flat_values.numpy()
            row_of_word = np.repeat(
                np.arange(history.nrows()), history.row_lengths(axis=1).numpy())
            row_of_word = np.repeat(row_of_word, history.values.row_lengths().numpy())
            _check_ids(path, schema.HISTORY, words, rows + row_of_word, vocabulary_size)
            _check_no_empty_rows(path, schema.HISTORY, history.row_lengths().numpy(), rows,
                                 _EMPTY_HISTORY)
            if with_target:
                # Absent features parse as empty lists, so this also catches
                # an inference table passed where a training table is needed.
                _check_no_empty_rows(path, schema.TARGET_WORDS,
                                     target_words.row_lengths().numpy(), rows, _EMPTY_TARGET)
                row_of_target = np.repeat(np.arange(target_words.nrows()),
                                          target_words.row_lengths().numpy())
                _check_ids(path, schema.TARGET_WORDS, target_words.flat_values.numpy(),
                           rows + row_of_target, vocabulary_size)
            rows += int(history.nrows())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        raise _tfrecord_read_error(path, rows, error, feature_spec(with_target), "table") from None
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
    for path in table_files.files:
        total += validate_file(path, with_target, vocabulary_size)
    if total == 0:
        names = ", ".join(table_files.files[:3]) + ("..." if len(table_files.files) > 3 else "")
        raise UserInputError(f"the table is empty: no rows in {names}")
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


def _validate_sequence_parquet_file(path, num_item_ids):
    expected = schema.SEQUENCE_SCHEMA
    table = _parquet_rows(path, expected).combine_chunks()
    _check_no_nulls(path, table, expected)
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


def _validate_sequence_tfrecord_file(path, num_item_ids):
    import tensorflow as tf

    from data_loader.sequence_dataset import feature_spec, parse_sequence_examples

    _check_not_empty_file(path)
    rows = 0
    records = tf.data.TFRecordDataset(path).batch(_TFRECORD_CHECK_BATCH)
    records = records.map(lambda serialized: parse_sequence_examples(serialized, True))
    try:
        for chunk in records:
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
    for path in table_files.files:
        total += validate_file(path, num_item_ids)
    if total == 0:
        names = ", ".join(table_files.files[:3]) + ("..." if len(table_files.files) > 3 else "")
        raise UserInputError(f"the sequence table is empty: no rows in {names}")
    return total
