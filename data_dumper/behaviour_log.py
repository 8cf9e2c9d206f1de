"""A behaviour log and its item words, loaded into the engine: the shape every reader leaves.

Every reader (the generic one here, ``movielens``, ``demo_data``) fills two
tables of the build's engine (DuckDB or Spark) and returns a ``LoadedLog``:

    events     user_id, order_key, item_id      one row per behaviour; the ids and
                                                the order key keep their source types
    item_text  item_key STRING, words STRING[]  the item id as text -> its words,
                                                 WITHOUT the item-id token

``create_item_words`` then gives every item of the log its words: the item-id
token ``item:<id>`` first (so it survives ``--max_words_per_query``), then its
text words. An item missing from the item table keeps just its id token.

The generic reader takes a log file (Parquet or CSV with a header) and an
optional item table with a text column (lower-cased, split on anything that is
not a letter or a digit) or a token column (a list, or a string split on a
separator); the flags name the columns. Everything is checked before use.
Its SQL is written once for both engines (``sql_dialect``); the engine opens the
files (``scan_file``) and turns its read failures into one-line errors.
"""

import dataclasses
from typing import Optional

import pyarrow as pa

from data_dumper import input_files
from data_dumper.sql_dialect import STRING
from util.errors import UserInputError

EVENTS_TABLE = "events"
ITEM_TEXT_TABLE = "item_text"
ITEM_WORDS_TABLE = "item_words"

ITEM_TOKEN_PREFIX = "item:"

# Words of a text: lower-cased runs of letters and digits (any script).
TEXT_WORD_SPLIT = r"[^\pL\pN]+"


@dataclasses.dataclass
class LoadedLog:
    """What a reader loaded.

    Attributes:
      description: one line for progress output and the manifest ("MovieLens ...").
      labels: per-user labels (column ``id`` string, then one column per label)
        to write as ``labels.parquet``, or None.
    """

    description: str
    labels: Optional[pa.Table] = None


@dataclasses.dataclass(frozen=True)
class LogSizes:
    num_events: int
    num_users: int
    num_items: int


def text_words_sql(dialect, text_expression):
    """SQL for the words of a text: lower-cased, split on non-alphanumerics, no empties."""
    return dialect.array_filter(
        dialect.regexp_split(f"lower(coalesce({text_expression}, ''))", TEXT_WORD_SPLIT), "w", "w <> ''"
    )


def create_empty_item_text(engine):
    """An empty ``item_text`` table, for logs without an item table."""
    empty = engine.dialect.empty_array(STRING)
    engine.create_table(
        ITEM_TEXT_TABLE, f"SELECT CAST(NULL AS STRING) AS item_key, {empty} AS words WHERE 1 = 0"
    )


def load_log_files(
    engine,
    log,
    user_column,
    order_column,
    item_column,
    items=None,
    item_id_column="item_id",
    item_text_column=None,
    item_tokens_column=None,
    item_token_separator="|",
):
    """Loads a behaviour log file (and an optional item table) into ``events``/``item_text``.

    Args:
      engine: the build's table engine (``duckdb_session.DuckDBTables`` or
        ``spark_session.SparkTables``); it opens the files, this function checks them.
      log: path of the behaviour log, Parquet or CSV with a header (for Spark, any
        path or folder it can read).
      user_column, order_column, item_column: the log's columns (user id: integer or
        string; order: number, date or timestamp; item id: integer or string).
      items: optional path of the item table, Parquet or CSV.
      item_id_column: the item table's id column (matched to the log's item ids as text).
      item_text_column: a string column of free text, or None.
      item_tokens_column: a list column (or a string joined by ``item_token_separator``)
        whose elements are used as words as they are, or None.

    Returns:
      A ``LoadedLog`` (no labels).

    Raises:
      UserInputError: a missing, empty or unreadable file, a missing column, a
        column of the wrong type, a null where a value is needed.
    """
    dialect = engine.dialect
    scan = engine.scan_file(log, "behaviour log --log")
    types = scan.column_types
    input_files.require_column(
        types, user_column, log, "--log_user_column", dialect.is_id_type, "integers or strings"
    )
    input_files.require_column(
        types, order_column, log, "--log_order_column", dialect.is_order_type,
        "numbers, dates or timestamps",
    )
    input_files.require_column(
        types, item_column, log, "--log_item_column", dialect.is_id_type, "integers or strings"
    )
    columns = (user_column, order_column, item_column)
    with engine.reading(log):
        engine.create_table(
            EVENTS_TABLE,
            f"SELECT {dialect.name_of(user_column)} AS user_id, {dialect.name_of(order_column)} AS order_key, "
            f"{dialect.name_of(item_column)} AS item_id FROM {scan.relation}",
        )
    num_events, num_nulls = engine.first_row(
        f"SELECT count(*), count(*) FILTER (WHERE user_id IS NULL OR order_key IS NULL OR item_id IS NULL) "
        f"FROM {EVENTS_TABLE}"
    )
    if num_events == 0:
        raise UserInputError(f"behaviour log {log} has no rows.")
    if num_nulls:
        column, where = engine.first_null(scan, columns)
        raise UserInputError(f"column '{column}' of {log} is empty (null) {where}.")
    _require_single_line_ids(engine, EVENTS_TABLE, "item_id", log, item_column)

    if items is None:
        create_empty_item_text(engine)
        return LoadedLog(description=f"behaviour log {log} (no item table)")
    _load_item_table(
        engine, items, item_id_column, item_text_column, item_tokens_column, item_token_separator
    )
    return LoadedLog(description=f"behaviour log {log} with item table {items}")


def _load_item_table(engine, items, id_column, text_column, tokens_column, separator):
    dialect = engine.dialect
    scan = engine.scan_file(items, "item table --items")
    types = scan.column_types
    input_files.require_column(
        types, id_column, items, "--item_id_column", dialect.is_id_type, "integers or strings"
    )
    if text_column is not None:
        input_files.require_column(
            types, text_column, items, "--item_text_column", dialect.is_string_type, "strings"
        )
        words = text_words_sql(dialect, dialect.name_of(text_column))
        words_column, words_flag = text_column, "--item_text_column"
    else:
        input_files.require_column(
            types, tokens_column, items, "--item_tokens_column",
            lambda kind: dialect.is_token_list_type(kind) or dialect.is_string_type(kind),
            "a list of strings or integers, or a string of tokens",
        )
        tokens = dialect.name_of(tokens_column)
        if dialect.is_string_type(types[tokens_column]):
            tokens = dialect.split_on(tokens, separator)
        # Tokens are words as given: only surrounding blanks and empty tokens go.
        trimmed = dialect.array_transform(
            f"coalesce({dialect.cast_to_string_array(tokens)}, {dialect.empty_array(STRING)})",
            "t", "trim(t)",
        )
        words = dialect.array_filter(trimmed, "t", "t <> ''")
        words_column, words_flag = tokens_column, "--item_tokens_column"
    with engine.reading(items):
        engine.create_table(
            ITEM_TEXT_TABLE,
            f"SELECT CAST({dialect.name_of(id_column)} AS STRING) AS item_key, {words} AS words "
            f"FROM {scan.relation}",
        )
    num_items, num_null_ids = engine.first_row(
        f"SELECT count(*), count(*) FILTER (WHERE item_key IS NULL) FROM {ITEM_TEXT_TABLE}"
    )
    if num_items == 0:
        raise UserInputError(f"item table {items} has no rows.")
    if num_null_ids:
        _, where = engine.first_null(scan, (id_column,))
        raise UserInputError(f"column '{id_column}' of {items} is empty (null) {where}.")
    duplicate = engine.first_row(
        f"SELECT item_key FROM {ITEM_TEXT_TABLE} GROUP BY item_key HAVING count(*) > 1 "
        f"ORDER BY item_key LIMIT 1"
    )
    if duplicate:
        raise UserInputError(
            f"column '{id_column}' of {items} holds item id {duplicate[0]} more than once."
        )
    # The vocabulary file is one word per line, so a word must not hold a line break.
    line_break = dialect.array_any("words", "w", f"{_HAS_LINE_BREAK.format('w')}")
    broken = engine.first_row(
        f"SELECT item_key FROM {ITEM_TEXT_TABLE} WHERE {line_break} ORDER BY item_key LIMIT 1"
    )
    if broken:
        raise UserInputError(
            f"column '{words_column}' ({words_flag}) of {items} holds a token with a line break "
            f"for item {broken[0]}; tokens must be single-line."
        )


# SQL (both dialects) that is true when the text {0} holds a line feed or a carriage return.
_HAS_LINE_BREAK = "(instr({0}, chr(10)) > 0 OR instr({0}, chr(13)) > 0)"


def _require_single_line_ids(engine, table, column, path, source_column):
    text = f"CAST({column} AS STRING)"
    found = engine.first_row(
        f"SELECT {text} FROM {table} WHERE {_HAS_LINE_BREAK.format(text)} LIMIT 1"
    )
    if found:
        raise UserInputError(
            f"column '{source_column}' of {path} holds an id with a line break ({found[0]!r}); "
            f"ids must be single-line."
        )


def log_sizes(engine):
    """Counts of events, distinct users and distinct items in ``events``."""
    num_events, num_users, num_items = engine.first_row(
        f"SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) FROM {EVENTS_TABLE}"
    )
    return LogSizes(num_events=num_events, num_users=num_users, num_items=num_items)


def order_key_type(engine):
    """The engine's type name of ``events.order_key`` (for reading ``--split_time``)."""
    return engine.first_row(f"SELECT typeof(order_key) FROM {EVENTS_TABLE} LIMIT 1")[0]


def create_item_words(engine, max_words_per_query):
    """Fills ``item_words(item_id, words)``: each log item's first ``max_words_per_query`` words.

    The id token comes first, then the item's words from ``item_text``.
    """
    dialect = engine.dialect
    id_token = f"{dialect.string(ITEM_TOKEN_PREFIX)} || CAST(e.item_id AS STRING)"
    words = dialect.concat_arrays(
        dialect.array_of(id_token), f"coalesce(t.words, {dialect.empty_array(STRING)})"
    )
    engine.create_table(
        ITEM_WORDS_TABLE,
        f"SELECT e.item_id, {dialect.array_head(words, int(max_words_per_query))} AS words "
        f"FROM (SELECT DISTINCT item_id FROM {EVENTS_TABLE}) e "
        f"LEFT JOIN {ITEM_TEXT_TABLE} t ON t.item_key = CAST(e.item_id AS STRING)",
    )
