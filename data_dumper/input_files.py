"""Reading the user's input files with DuckDB, with every problem told in one sentence.

The readers (generic behaviour logs, MovieLens, ...) call these helpers before
they use a file: the file must exist and not be empty, DuckDB must be able to
parse it, and the columns the flags name must exist with a usable type. DuckDB's
own errors are long and multi-line; ``read_error`` keeps their first lines (which
carry the line number and column) behind the file's name.
"""

import os

import duckdb

from data_dumper.sql import first_row, sql_name, sql_string
from util.errors import UserInputError

PARQUET_MAGIC = b"PAR1"

INTEGER_TYPES = frozenset(
    {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
        "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
    }
)
FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
STRING_TYPES = frozenset({"VARCHAR"})


def is_id_type(duckdb_type):
    """Ids (users, items) are integers or strings; floats would print as ``5.0``."""
    return duckdb_type in INTEGER_TYPES or duckdb_type in STRING_TYPES


def is_order_type(duckdb_type):
    """An order column sorts by value: numbers, dates and timestamps."""
    return (
        duckdb_type in INTEGER_TYPES
        or duckdb_type in FLOAT_TYPES
        or duckdb_type.startswith("DECIMAL")
        or duckdb_type == "DATE"
        or duckdb_type.startswith("TIMESTAMP")
    )


def is_string_type(duckdb_type):
    """Text columns (free text, or tokens joined by a separator)."""
    return duckdb_type in STRING_TYPES


def is_token_list_type(duckdb_type):
    """A list of strings or integers (each becomes one word)."""
    if not duckdb_type.endswith("[]"):
        return False
    element = duckdb_type[:-2]
    return element in STRING_TYPES or element in INTEGER_TYPES


def require_file(path, what):
    """Raises unless ``path`` is an existing, non-empty file; ``what`` names its role."""
    if not os.path.exists(path):
        raise UserInputError(f"{what} {path} does not exist.")
    if os.path.isdir(path):
        raise UserInputError(f"{what} {path} is a folder, not a file.")
    if os.path.getsize(path) == 0:
        raise UserInputError(f"{what} {path} is empty.")


def detect_format(path):
    """``"parquet"`` when the file starts with Parquet's magic bytes, else ``"csv"``."""
    with open(path, "rb") as handle:
        return "parquet" if handle.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC else "csv"


def scan_sql(path, file_format):
    """The DuckDB table function reading ``path``: ``read_parquet(...)`` or ``read_csv(...)``.

    CSV files must have a header row (the flags name columns); DuckDB sniffs the
    delimiter and the column types.
    """
    if file_format == "parquet":
        return f"read_parquet({sql_string(path)})"
    return f"read_csv({sql_string(path)}, header = true)"


def read_error(path, error):
    """A ``UserInputError`` for a DuckDB failure while reading ``path``.

    Keeps the first paragraph of DuckDB's message: it says what went wrong and,
    for CSV, the line and the column.
    """
    lines = []
    for line in str(error).splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    summary = " ".join(lines) or type(error).__name__
    if len(summary) > 400:
        summary = summary[:400] + "..."
    return UserInputError(f"could not read {path}: {summary}")


# DuckDB errors that a file's content or absence causes (bad values, truncation,
# a format DuckDB cannot parse). Others (binder, parser, ...) are our bugs and
# keep their traceback.
FILE_ERRORS = (
    duckdb.DataError,
    duckdb.IOException,
    duckdb.InvalidInputException,
    duckdb.NotImplementedException,
)


def run_on_file(con, sql, path):
    """Executes ``sql`` (which reads ``path``), reporting file problems against ``path``."""
    try:
        return con.execute(sql)
    except FILE_ERRORS as error:
        raise read_error(path, error) from error


def column_types(con, scan, path):
    """``{column name: DuckDB type name}`` of the file read by ``scan``."""
    rows = run_on_file(con, f"DESCRIBE SELECT * FROM {scan}", path).fetchall()
    return {row[0]: row[1] for row in rows}


def require_column(types, column, path, flag, accepts, expected):
    """Raises unless ``column`` is among ``types`` and ``accepts(type)`` holds.

    Args:
      types: ``{name: DuckDB type}`` of the file.
      column: the column the user named.
      path: the file, for the message.
      flag: the flag that named the column (``--log_user_column``).
      accepts: predicate on the DuckDB type name.
      expected: words for the accepted types, for the message.
    """
    if column not in types:
        available = ", ".join(sorted(types)) or "none"
        raise UserInputError(
            f"{path} has no column '{column}' (named by {flag}); its columns are: {available}."
        )
    if not accepts(types[column]):
        raise UserInputError(
            f"column '{column}' of {path} has type {types[column]}, but {flag} needs {expected}."
        )


def first_null(con, scan, columns, file_format, has_header=True):
    """``(column, where)`` of the first null among ``columns`` of a file, or None.

    ``where`` is ``"row N"`` (1-based) for Parquet and ``"line N"`` for text files,
    as an editor shows it (a header is line 1). Only called once a null is known
    to exist, so the extra scan costs nothing in a good build.
    """
    if file_format == "parquet":
        scan = scan[:-1] + ", file_row_number = true)"
        row, unit, skip = "file_row_number", "row", 1  # file_row_number counts from 0
    else:
        row, unit, skip = "row_number() OVER ()", "line", 1 if has_header else 0
    nulls = " OR ".join(f"{sql_name(column)} IS NULL" for column in columns)
    cases = " ".join(f"WHEN {sql_name(column)} IS NULL THEN {sql_string(column)}" for column in columns)
    # Numbering CSV rows in reading order needs DuckDB to keep that order.
    keep_order = first_row(con, "SELECT current_setting('preserve_insertion_order')")[0]
    con.execute("SET preserve_insertion_order = true")
    try:
        found = first_row(
            con,
            f"SELECT column_name, row FROM ("
            f"  SELECT CASE {cases} END AS column_name, {nulls} AS is_null, {row} AS row FROM {scan}"
            f") WHERE is_null ORDER BY row LIMIT 1",
        )
    finally:
        con.execute(f"SET preserve_insertion_order = {str(bool(keep_order)).lower()}")
    if found is None:
        return None
    column, row = found
    return column, f"{unit} {row + skip}"
