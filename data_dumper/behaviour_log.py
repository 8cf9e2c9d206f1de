"""A behaviour log and its item words, loaded into DuckDB: the shape every reader leaves.

Every reader (the generic one here, ``movielens``, ``demo_data``) fills two
DuckDB tables and returns a ``LoadedLog``:

    events     user_id, order_key, item_id      one row per behaviour; the ids and
                                                the order key keep their source types
    item_text  item_key VARCHAR, words VARCHAR[] the item id as text -> its words,
                                                 WITHOUT the item-id token

``create_item_words`` then gives every item of the log its words: the item-id
token ``item:<id>`` first (so it survives ``--max_words_per_query``), then its
text words. An item missing from the item table keeps just its id token.

The generic reader takes a log file (Parquet or CSV with a header) and an
optional item table with a text column (lower-cased, split on anything that is
not a letter or a digit) or a token column (a list, or a string split on a
separator); the flags name the columns. Everything is checked before use.
"""

import dataclasses
from typing import Optional

import pyarrow as pa

from data_dumper import input_files
from data_dumper.sql import first_row, sql_name, sql_string
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


def text_words_sql(text_expression):
    """SQL for the words of a text: lower-cased, split on non-alphanumerics, no empties."""
    return (
        f"list_filter(regexp_split_to_array(lower(coalesce({text_expression}, '')), "
        f"{sql_string(TEXT_WORD_SPLIT)}), lambda w: w <> '')"
    )


def create_empty_item_text(con):
    """An empty ``item_text`` table, for logs without an item table."""
    con.execute(f"CREATE OR REPLACE TABLE {ITEM_TEXT_TABLE} (item_key VARCHAR, words VARCHAR[])")


def load_log_files(
    con,
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
      con: a DuckDB connection.
      log: path of the behaviour log, Parquet or CSV with a header row.
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
    input_files.require_file(log, "behaviour log --log")
    log_format = input_files.detect_format(log)
    scan = input_files.scan_sql(log, log_format)
    types = input_files.column_types(con, scan, log)
    input_files.require_column(
        types, user_column, log, "--log_user_column", input_files.is_id_type, "integers or strings"
    )
    input_files.require_column(
        types, order_column, log, "--log_order_column", input_files.is_order_type,
        "numbers, dates or timestamps",
    )
    input_files.require_column(
        types, item_column, log, "--log_item_column", input_files.is_id_type, "integers or strings"
    )
    columns = (user_column, order_column, item_column)
    input_files.run_on_file(
        con,
        f"CREATE OR REPLACE TABLE {EVENTS_TABLE} AS SELECT "
        f"{sql_name(user_column)} AS user_id, {sql_name(order_column)} AS order_key, "
        f"{sql_name(item_column)} AS item_id FROM {scan}",
        log,
    )
    num_events, num_nulls = first_row(
        con,
        f"SELECT count(*), count(*) FILTER (user_id IS NULL OR order_key IS NULL OR item_id IS NULL) "
        f"FROM {EVENTS_TABLE}"
    )
    if num_events == 0:
        raise UserInputError(f"behaviour log {log} has no rows.")
    if num_nulls:
        column, where = input_files.first_null(con, scan, columns, log_format)
        raise UserInputError(f"column '{column}' of {log} is empty (null) at {where}.")
    _require_single_line_ids(con, EVENTS_TABLE, "item_id", log, item_column)

    if items is None:
        create_empty_item_text(con)
        return LoadedLog(description=f"behaviour log {log} (no item table)")
    _load_item_table(con, items, item_id_column, item_text_column, item_tokens_column, item_token_separator)
    return LoadedLog(description=f"behaviour log {log} with item table {items}")


def _load_item_table(con, items, id_column, text_column, tokens_column, separator):
    input_files.require_file(items, "item table --items")
    items_format = input_files.detect_format(items)
    scan = input_files.scan_sql(items, items_format)
    types = input_files.column_types(con, scan, items)
    input_files.require_column(
        types, id_column, items, "--item_id_column", input_files.is_id_type, "integers or strings"
    )
    if text_column is not None:
        input_files.require_column(
            types, text_column, items, "--item_text_column", input_files.is_string_type, "strings"
        )
        words = text_words_sql(sql_name(text_column))
        words_column, words_flag = text_column, "--item_text_column"
    else:
        input_files.require_column(
            types, tokens_column, items, "--item_tokens_column",
            lambda kind: input_files.is_token_list_type(kind) or input_files.is_string_type(kind),
            "a list of strings or integers, or a string of tokens",
        )
        tokens = sql_name(tokens_column)
        if input_files.is_string_type(types[tokens_column]):
            tokens = f"string_split({tokens}, {sql_string(separator)})"
        # Tokens are words as given: only surrounding blanks and empty tokens go.
        words = (
            f"list_filter(list_transform(coalesce(CAST({tokens} AS VARCHAR[]), []), lambda t: trim(t)), "
            f"lambda t: t <> '')"
        )
        words_column, words_flag = tokens_column, "--item_tokens_column"
    input_files.run_on_file(
        con,
        f"CREATE OR REPLACE TABLE {ITEM_TEXT_TABLE} AS SELECT "
        f"CAST({sql_name(id_column)} AS VARCHAR) AS item_key, {words} AS words FROM {scan}",
        items,
    )
    num_items, num_null_ids = first_row(
        con,
        f"SELECT count(*), count(*) FILTER (item_key IS NULL) FROM {ITEM_TEXT_TABLE}"
    )
    if num_items == 0:
        raise UserInputError(f"item table {items} has no rows.")
    if num_null_ids:
        _, where = input_files.first_null(con, scan, (id_column,), items_format)
        raise UserInputError(f"column '{id_column}' of {items} is empty (null) at {where}.")
    duplicate = first_row(
        con,
        f"SELECT item_key FROM {ITEM_TEXT_TABLE} GROUP BY item_key HAVING count(*) > 1 "
        f"ORDER BY item_key LIMIT 1"
    )
    if duplicate:
        raise UserInputError(
            f"column '{id_column}' of {items} holds item id {duplicate[0]} more than once."
        )
    # The vocabulary file is one word per line, so a word must not hold a line break.
    broken = first_row(
        con,
        f"SELECT item_key FROM {ITEM_TEXT_TABLE} "
        f"WHERE list_bool_or(list_transform(words, lambda w: w LIKE '%' || chr(10) || '%' "
        f"OR w LIKE '%' || chr(13) || '%')) ORDER BY item_key LIMIT 1"
    )
    if broken:
        raise UserInputError(
            f"column '{words_column}' ({words_flag}) of {items} holds a token with a line break "
            f"for item {broken[0]}; tokens must be single-line."
        )


def _require_single_line_ids(con, table, column, path, source_column):
    found = first_row(
        con,
        f"SELECT CAST({column} AS VARCHAR) FROM {table} "
        f"WHERE contains(CAST({column} AS VARCHAR), chr(10)) "
        f"OR contains(CAST({column} AS VARCHAR), chr(13)) LIMIT 1"
    )
    if found:
        raise UserInputError(
            f"column '{source_column}' of {path} holds an id with a line break ({found[0]!r}); "
            f"ids must be single-line."
        )


def log_sizes(con):
    """Counts of events, distinct users and distinct items in ``events``."""
    num_events, num_users, num_items = first_row(
        con,
        f"SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) FROM {EVENTS_TABLE}"
    )
    return LogSizes(num_events=num_events, num_users=num_users, num_items=num_items)


def order_key_type(con):
    """The DuckDB type of ``events.order_key`` (for reading ``--split_time``)."""
    return first_row(con, f"SELECT typeof(order_key) FROM {EVENTS_TABLE} LIMIT 1")[0]


def create_item_words(con, max_words_per_query):
    """Fills ``item_words(item_id, words)``: each log item's first ``max_words_per_query`` words.

    The id token comes first, then the item's words from ``item_text``.
    """
    con.execute(
        f"CREATE OR REPLACE TABLE {ITEM_WORDS_TABLE} AS "
        f"SELECT e.item_id, list_slice("
        f"  [{sql_string(ITEM_TOKEN_PREFIX)} || CAST(e.item_id AS VARCHAR)] || coalesce(t.words, []),"
        f"  1, {int(max_words_per_query)}) AS words "
        f"FROM (SELECT DISTINCT item_id FROM {EVENTS_TABLE}) e "
        f"LEFT JOIN {ITEM_TEXT_TABLE} t ON t.item_key = CAST(e.item_id AS VARCHAR)"
    )
