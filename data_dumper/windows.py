"""Per-user windows, in DuckDB SQL: history before a split point, target words after it.

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
``create_windows`` prepares per-behaviour flags once; the rows themselves are
aggregated one shard at a time (``Windows.training_rows_sql(shard)``) as the
writer streams them, so memory holds one shard's rows, not the whole table, and
DuckDB spills the rest to disk.
"""

import dataclasses

from contracts import schema
from data_dumper import behaviour_log, vocabulary
from data_dumper.sql import first_row, sql_string
from util.errors import UserInputError

USERS_TABLE = "users"
BEHAVIOURS_TABLE = "behaviours"


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
    """Prepared windows: their counts, and the SQL that yields one shard's rows.

    Each query's columns are those of ``schema.TRAINING_SCHEMA`` /
    ``schema.INFERENCE_SCHEMA``, ordered by user rank.
    """

    stats: WindowStats
    target_length: int

    def inference_rows_sql(self, shard):
        return (
            f"SELECT u.id AS {schema.ID}, "
            f"  list(i.word_ids ORDER BY b.pos) AS {schema.HISTORY}, "
            f"  count(*)::INTEGER AS {schema.HISTORY_LENGTH} "
            f"FROM {BEHAVIOURS_TABLE} b JOIN {USERS_TABLE} u USING (user_id) "
            f"JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i USING (item_id) "
            f"WHERE b.shard = {int(shard)} AND b.in_inference "
            f"GROUP BY u.user_rank, u.id ORDER BY u.user_rank"
        )

    def training_rows_sql(self, shard):
        shard = int(shard)
        history = (
            f"SELECT b.user_id, list(i.word_ids ORDER BY b.pos) AS {schema.HISTORY}, "
            f"  count(*)::INTEGER AS {schema.HISTORY_LENGTH} "
            f"FROM {BEHAVIOURS_TABLE} b JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i USING (item_id) "
            f"WHERE b.shard = {shard} AND b.in_history GROUP BY b.user_id"
        )
        word_counts = (
            f"SELECT user_id, word_id, count(*)::INTEGER AS count FROM ("
            f"  SELECT b.user_id, unnest(i.word_ids) AS word_id "
            f"  FROM {BEHAVIOURS_TABLE} b JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i USING (item_id) "
            f"  WHERE b.shard = {shard} AND b.in_target"
            f") WHERE word_id <> {schema.OOV_ID} GROUP BY user_id, word_id"
        )
        target = (
            f"SELECT user_id, "
            f"  list(word_id ORDER BY count DESC, word_id) AS {schema.TARGET_WORDS}, "
            f"  list(count ORDER BY count DESC, word_id) AS {schema.TARGET_COUNTS} "
            f"FROM ("
            f"  SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY count DESC, word_id) AS word_rank "
            f"  FROM ({word_counts})"
            f") WHERE word_rank <= {int(self.target_length)} GROUP BY user_id"
        )
        return (
            f"SELECT u.id AS {schema.ID}, h.{schema.HISTORY}, h.{schema.HISTORY_LENGTH}, "
            f"  t.{schema.TARGET_WORDS}, t.{schema.TARGET_COUNTS} "
            f"FROM {USERS_TABLE} u JOIN ({history}) h USING (user_id) JOIN ({target}) t USING (user_id) "
            f"ORDER BY u.user_rank"
        )


def _history_count_sql(con, target_fraction, split_time):
    """SQL (an aggregate over one user's events) for the number of history behaviours."""
    if split_time is None:
        # round() first so that 0.2 * 10 is 2, not 2.0000000000000004 -> 3.
        return f"count(*) - CAST(ceil(round(count(*) * {float(target_fraction)!r}, 9)) AS BIGINT)"
    order_type = behaviour_log.order_key_type(con)
    value = first_row(con, f"SELECT TRY_CAST(? AS {order_type})", [str(split_time)])[0]
    if value is None:
        raise UserInputError(
            f"--split_time={split_time} is not a value of the log's order column (type {order_type})."
        )
    return f"count(*) FILTER (order_key < CAST({sql_string(split_time)} AS {order_type}))"


def create_windows(
    con, max_query_per_week, target_length, num_shards, target_fraction=0.2, split_time=None
):
    """Places every behaviour in its user's windows; fills ``users`` and ``behaviours``.

    Args:
      con: a DuckDB connection holding ``events`` and ``item_word_ids``.
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
    history_count = _history_count_sql(con, target_fraction, split_time)
    recent = int(max_query_per_week)
    con.execute(
        f"CREATE OR REPLACE TABLE {USERS_TABLE} AS "
        f"SELECT user_id, CAST(user_id AS VARCHAR) AS id, user_rank, "
        f"  user_rank % {int(num_shards)} AS shard, num_behaviours, num_history "
        f"FROM (SELECT user_id, num_behaviours, num_history, "
        f"        row_number() OVER (ORDER BY user_id) - 1 AS user_rank "
        f"      FROM (SELECT user_id, count(*) AS num_behaviours, {history_count} AS num_history "
        f"            FROM {behaviour_log.EVENTS_TABLE} GROUP BY user_id))"
    )
    # Sorted by order key, the history is a prefix (pos < num_history) in both
    # split modes, so the flags are simple position tests.
    con.execute(
        f"CREATE OR REPLACE TABLE {BEHAVIOURS_TABLE} AS "
        f"SELECT b.user_id, b.item_id, b.pos, u.shard, "
        f"  b.pos < u.num_history AND b.pos >= u.num_history - {recent} AS in_history, "
        f"  b.pos >= u.num_history AS in_target, "
        f"  b.pos >= u.num_behaviours - {recent} AS in_inference "
        f"FROM (SELECT user_id, item_id, "
        f"        row_number() OVER (PARTITION BY user_id ORDER BY order_key, item_id) - 1 AS pos "
        f"      FROM {behaviour_log.EVENTS_TABLE}) b JOIN {USERS_TABLE} u USING (user_id)"
    )
    num_users, num_empty_history, num_training = first_row(
        con,
        f"SELECT count(*), count(*) FILTER (num_history = 0), "
        f"  count(*) FILTER (num_history > 0 AND user_id IN ("
        f"    SELECT b.user_id FROM {BEHAVIOURS_TABLE} b "
        f"    JOIN {vocabulary.ITEM_WORD_IDS_TABLE} i USING (item_id) "
        f"    WHERE b.in_target AND list_bool_or(list_transform(i.word_ids, lambda w: w <> {schema.OOV_ID}))"
        f"  )) "
        f"FROM {USERS_TABLE}",
    )
    stats = WindowStats(
        num_training_users=num_training,
        num_inference_users=num_users,
        num_empty_history=num_empty_history,
        num_empty_target=num_users - num_empty_history - num_training,
    )
    return Windows(stats=stats, target_length=int(target_length))
