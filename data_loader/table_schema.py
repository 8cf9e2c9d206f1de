"""Reads a shard's columns as the contract's types, whatever spelling its writer chose.

Spark, pandas, DuckDB and pyarrow write the same table with different Parquet
schemas: nullable or non-nullable fields and list items, list items named
``element`` rather than ``item``, int64 instead of int32, large lists and
strings. The data is the same, but pyarrow refuses to concatenate tables whose
schemas differ even in a field's nullability, and a reader buffering rows of
two shards then fails inside ``tf.data``. So every Parquet reader of
``data_loader`` checks a shard's columns with ``check_readable_columns`` and
casts each batch it reads with ``conform`` to the ``contracts.schema`` types:
every shard then reaches TensorFlow exactly as our own writer's would.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from util.errors import UserInputError

_INT32 = np.iinfo(np.int32)


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


def _is_text(arrow_type):
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or (pa.types.is_dictionary(arrow_type) and _is_text(arrow_type.value_type)))


def readable_as(found, expected):
    """Whether a column of arrow type ``found`` holds what the contract's ``expected`` type does.

    Integers of any width stand for int32 (values are range-checked by
    ``conform``), lists and large lists of the same depth for each other,
    large and dictionary-encoded strings for strings.
    """
    if found == expected:
        return True
    if _is_text(expected):
        return _is_text(found)
    return (_list_depth(found) == _list_depth(expected)
            and pa.types.is_integer(_leaf_type(found)) and pa.types.is_integer(_leaf_type(expected)))


def check_readable_columns(path, found_schema, expected_schema):
    """Raises naming the file and column where ``found_schema`` cannot be read as ``expected_schema``."""
    for field in expected_schema:
        if field.name not in found_schema.names:
            raise UserInputError(
                f"file {path} has no column {field.name} (it has: {', '.join(found_schema.names)})")
        found = found_schema.field(field.name).type
        if not readable_as(found, field.type):
            raise UserInputError(
                f"file {path}, column {field.name}: expected type {field.type}, found {found}")


def _row_of_each_leaf(column):
    """([num_leaf_values] values, [num_leaf_values] table row of each) of a possibly nested column."""
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    rows = np.arange(len(values))
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        lengths = pc.list_value_length(values).fill_null(0).to_numpy(zero_copy_only=False)
        rows = np.repeat(rows, lengths)
        values = pc.list_flatten(values)
    return values.to_numpy(zero_copy_only=False), rows


def _cast_column(path, name, column, expected_type):
    try:
        return column.cast(expected_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        if pa.types.is_integer(_leaf_type(expected_type)):
            values, rows = _row_of_each_leaf(column)
            outside = np.flatnonzero((values < _INT32.min) | (values > _INT32.max))
            if outside.size:
                first = outside[0]
                raise UserInputError(
                    f"file {path}, column {name}, row {int(rows[first])}: value "
                    f"{int(values[first])} does not fit in int32") from None
        raise UserInputError(
            f"file {path}, column {name}: cannot read {column.type} as {expected_type}: "
            f"{error}") from None


def conform(path, table, expected_schema):
    """``table`` (an arrow Table or RecordBatch, returned as the same kind) with exactly ``expected_schema``.

    Columns are taken by name in ``expected_schema``'s order and cast to its
    types; nullability and list-item names become the contract's. Values are
    not changed (nulls stay nulls: the validator refuses them).

    Raises:
        UserInputError: naming the file, column (and row) of a value that does
            not fit the contract's type.
    """
    if table.schema == expected_schema:
        return table
    columns = []
    for field in expected_schema:
        column = table.column(field.name)
        columns.append(column if column.type == field.type
                       else _cast_column(path, field.name, column, field.type))
    kind = pa.RecordBatch if isinstance(table, pa.RecordBatch) else pa.Table
    return kind.from_arrays(columns, schema=expected_schema)


def select(table_schema, names):
    """The fields ``names`` of ``table_schema``, in that order, as a schema."""
    return pa.schema([table_schema.field(name) for name in names])
