"""Per-user windows, in SQL for DuckDB and Spark: history before a split point, target words after it.

Each user's behaviours are ordered by the order key (ties by item id). A split
point cuts the sequence in two:

  * by fraction (``--target_fraction=f``): the last ``ceil(f * n)`` of the user's
    ``n`` behaviours are the target window, the rest the history;
  * by time (``--split_time=t``): behaviours with order key ``>= t`` are the target.

A training row holds the user's MOST RECENT ``max_query_per_week`` history
behaviours (oldest -> newest, each a list of word ids) and the target window's
bag of words: its ``target_length`` most frequent word ids (ties by smaller id)
with their counts. ``<oov>`` is left out of the target: predicting "some rare
word" teaches nothing. Users with no history behaviour or no target word get no
training row. An inference row holds every user's most recent
``max_query_per_week`` behaviours over the whole sequence.

Users are numbered by sorted user id (``user_rank``) and dealt to shards round
robin (``shard = user_rank % num_shards``), the same shard in both tables.
``create_windows`` prepares per-behaviour flags once; the rows themselves come
from ``Windows.training_rows_sql(shard)``. DuckDB aggregates one shard at a
time as the writer streams it, so memory holds one shard's rows, not the whole
table, and DuckDB spills the rest to disk; Spark runs the query once over every
shard (``shard=None``) and writes each shard from its own task. Every row query
ends with the columns ``shard`` and ``user_rank`` (``PLACEMENT_COLUMNS``), which
say where the row goes; the writers drop them.

The SQL is written once for both engines; ``sql_dialect`` spells the few
constructs they write differently. Every ordering in it is total (ties broken
by a unique key), so both engines produce the same rows in the same order.
"""

import dataclasses

from contracts import schema
from data_dumper import behaviour_log, vocabulary
from data_dumper.sql_dialect import INTEGER
from util.errors import UserInputError

USERS_TABLE = "users"
BEHAVIOURS_TABLE = "behaviours"

# The last columns of every row query: the row's shard and its place in it.
SHARD = "shard"
USER_RANK = "user_rank"
PLACEMENT_COLUMNS = (SHARD, USER_RANK)


def shard_condition(column, shard):
    """SQL restricting ``column`` to one shard, or nothing (``TRUE``) for every shard."""
    return "TRUE" if shard is None else f"{column} = {int(shard)}"


def placement_sql(users_alias):
    """The placement columns of a row query, from the users table under ``users_alias``."""
    return f"{users_alias}.shard AS {SHARD}, {users_alias}.user_rank AS {USER_RANK}"


@dataclasses.dataclass(frozen=True)
class WindowStats:
    """How many users landed where.

    Attributes:
      num_training_users: users with a training row.
      num_inference_users: users with an inference row (every user of the log).
      num_empty_history: users left out of training: no behaviour before the split.
      num_empty_target: users left out of training: no target word after the split
        (no behaviour after it, or only ``<oov>`` words).
    """

    num_training_users: int
    num_inference_users: int
    num_empty_history: int
    num_empty_target: int


@dataclasses.dataclass(frozen=True)
class Windows:
    """Prepared windows: their counts, and the SQL that yields the rows.

    Each query's columns are those of ``schema.TRAINING_SCHEMA`` /
    ``schema.INFERENCE_SCHEMA`` followed by ``PLACEMENT_COLUMNS``; ``shard`` is a
    shard index (the query yields that shard, by user rank) or None (every shard,
    in no particular order).
    """

    stats: WindowStats
    target_length: int
    dialect: object

    def inference_rows_sql(self, shard=None):
        history = self.dialect.ordered_list("i.word_ids", "b.pos")
        return (
            f"SELECT u.id AS {schema.ID}, {history} AS {schema.HISTORY}, "
            f"  CAST(count(*) AS {INTEGER}) AS {schema.HISTORY_LENGTH}, {placement_sql('u')} "
            f"FROM {BEHAVIOURS_TABLE} b JOIN {USERS_TABLE} u ON u.user_id = b.user_id "
            f"JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i ON i.item_id = b.item_id "
            f"WHERE {shard_condition('b.shard', shard)} AND b.in_inference "
            f"GROUP BY u.shard, u.user_rank, u.id" + rank_order_sql(shard)
        )

    def training_rows_sql(self, shard=None):
        dialect = self.dialect
        history = (
            f"SELECT b.user_id, {dialect.ordered_list('i.word_ids', 'b.pos')} AS {schema.HISTORY}, "
            f"  CAST(count(*) AS {INTEGER}) AS {schema.HISTORY_LENGTH} "
            f"FROM {BEHAVIOURS_TABLE} b JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i ON i.item_id = b.item_id "
            f"WHERE {shard_condition('b.shard', shard)} AND b.in_history GROUP BY b.user_id"
        )
        word_counts = (
            f"SELECT user_id, word_id, CAST(count(*) AS {INTEGER}) AS count FROM ("
            f"  SELECT b.user_id, {dialect.explode('i.word_ids')} AS word_id "
            f"  FROM {BEHAVIOURS_TABLE} b JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i ON i.item_id = b.item_id "
            f"  WHERE {shard_condition('b.shard', shard)} AND b.in_target"
            f") target_words WHERE word_id <> {schema.OOV_ID} GROUP BY user_id, word_id"
        )
        # Most frequent first, ties by smaller id: word ids are unique per user, so
        # word_rank is a total order and both lists follow it.
        target = (
            f"SELECT user_id, "
            f"  {dialect.ordered_list('word_id', 'word_rank')} AS {schema.TARGET_WORDS}, "
            f"  {dialect.ordered_list('count', 'word_rank')} AS {schema.TARGET_COUNTS} "
            f"FROM ("
            f"  SELECT user_id, word_id, count, "
            f"    row_number() OVER (PARTITION BY user_id ORDER BY count DESC, word_id) AS word_rank "
            f"  FROM ({word_counts}) counted"
            f") ranked WHERE word_rank <= {int(self.target_length)} GROUP BY user_id"
        )
        return (
            f"SELECT u.id AS {schema.ID}, h.{schema.HISTORY}, h.{schema.HISTORY_LENGTH}, "
            f"  t.{schema.TARGET_WORDS}, t.{schema.TARGET_COUNTS}, {placement_sql('u')} "
            f"FROM {USERS_TABLE} u JOIN ({history}) h ON h.user_id = u.user_id "
            f"JOIN ({target}) t ON t.user_id = u.user_id" + rank_order_sql(shard)
        )


def rank_order_sql(shard):
    """One shard's rows come ordered by user rank; all shards at once need no order."""
    return "" if shard is None else " ORDER BY user_rank"


def _history_count_sql(engine, target_fraction, split_time):
    """SQL (an aggregate over one user's events) for the number of history behaviours."""
    if split_time is None:
        # round() first so that 0.2 * 10 is 2, not 2.0000000000000004 -> 3. The
        # fraction is a decimal literal in both engines, so the product is exact.
        return f"count(*) - CAST(ceil(round(count(*) * {float(target_fraction)!r}, 9)) AS BIGINT)"
    order_type = behaviour_log.order_key_type(engine)
    split_value = f"CAST({engine.dialect.string(split_time)} AS {order_type})"
    value = engine.first_row(f"SELECT TRY_{split_value}")[0]
    if value is None:
        raise UserInputError(
            f"--split_time={split_time} is not a value of the log's order column (type {order_type})."
        )
    return f"count(*) FILTER (WHERE order_key < {split_value})"


def create_windows(
    engine, max_query_per_week, target_length, num_shards, target_fraction=0.2, split_time=None
):
    """Places every behaviour in its user's windows; fills ``users`` and ``behaviours``.

    Args:
      engine: the build's table engine, holding ``events`` and ``item_word_ids``.
      max_query_per_week: history behaviours kept per user (the most recent).
      target_length: target words kept per user (the most frequent).
      num_shards: shards each table is dealt into.
      target_fraction: share of each user's behaviours that forms the target window
        (used when ``split_time`` is None).
      split_time: a value of the order column (text, cast to its type), or None.

    Returns:
      ``Windows``.

    Raises:
      UserInputError: ``split_time`` is not a value of the order column's type.
    """
    history_count = _history_count_sql(engine, target_fraction, split_time)
    recent = int(max_query_per_week)
    # User ids are unique after the GROUP BY, so the rank has no ties.
    engine.create_table(
        USERS_TABLE,
        f"SELECT user_id, CAST(user_id AS STRING) AS id, user_rank, "
        f"  user_rank % {int(num_shards)} AS shard, num_behaviours, num_history "
        f"FROM (SELECT user_id, num_behaviours, num_history, "
        f"        row_number() OVER (ORDER BY user_id) - 1 AS user_rank "
        f"      FROM (SELECT user_id, count(*) AS num_behaviours, {history_count} AS num_history "
        f"            FROM {behaviour_log.EVENTS_TABLE} GROUP BY user_id) per_user) ranked",
    )
    # Sorted by order key, the history is a prefix (pos < num_history) in both
    # split modes, so the flags are simple position tests. Behaviours that tie on
    # (order key, item id) are the same behaviour twice, so whichever comes
    # first, the rows built from them are the same.
    engine.create_table(
        BEHAVIOURS_TABLE,
        f"SELECT b.user_id, b.item_id, b.pos, u.shard, "
        f"  b.pos < u.num_history AND b.pos >= u.num_history - {recent} AS in_history, "
        f"  b.pos >= u.num_history AS in_target, "
        f"  b.pos >= u.num_behaviours - {recent} AS in_inference "
        f"FROM (SELECT user_id, item_id, "
        f"        row_number() OVER (PARTITION BY user_id ORDER BY order_key, item_id) - 1 AS pos "
        f"      FROM {behaviour_log.EVENTS_TABLE}) b JOIN {USERS_TABLE} u ON u.user_id = b.user_id",
    )
    with_target_word = (
        f"SELECT DISTINCT b.user_id FROM {BEHAVIOURS_TABLE} b "
        f"JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i ON i.item_id = b.item_id "
        f"WHERE b.in_target AND i.has_known_word"
    )
    num_users, num_empty_history, num_training = engine.first_row(
        f"SELECT count(*), count(*) FILTER (WHERE u.num_history = 0), "
        f"  count(*) FILTER (WHERE u.num_history > 0 AND k.user_id IS NOT NULL) "
        f"FROM {USERS_TABLE} u LEFT JOIN ({with_target_word}) k ON k.user_id = u.user_id",
    )
    stats = WindowStats(
        num_training_users=num_training,
        num_inference_users=num_users,
        num_empty_history=num_empty_history,
        num_empty_target=num_users - num_empty_history - num_training,
    )
    return Windows(stats=stats, target_length=int(target_length), dialect=engine.dialect)
