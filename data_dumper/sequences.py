"""The item index and the item-sequence table, in DuckDB SQL (PeterRec, NextItNet, GRec).

One item index serves pretraining and every downstream task, so a model
pretrained on one build's ``sequences/`` table reads any task's users of the
same build. Index 0 is ``<pad>``, 1 ``<mask>``, 2 ``<cls>``; the log's items
follow from index 3 by descending number of behaviours, ties by item id
(``schema.py`` says why the order matters).

A sequence row is one user with at least one history behaviour, split exactly
as the training table splits it (``windows.py``: the history is the part before
the split point, the target window the part from it on):

  * ``items``: the item indices of the history, oldest -> newest, its most
    recent ``--max_items_per_user`` (independent of ``--max_query_per_week``,
    which cuts the SUMN tables);
  * ``target_items``: the item indices of the whole target window, in order
    (empty where the user has no behaviour after the split; the cold-start
    recommendation task draws its positives from them).

Users sit in the same shard as in the other tables (``user_rank % num_shards``),
ordered by user rank, and rows are aggregated one shard at a time as the writer
streams them, like the training rows.
"""

import dataclasses

from contracts import schema
from data_dumper import behaviour_log, windows
from data_dumper.sql import first_row
from util.atomic import atomic_path

ITEM_INDEX_TABLE = "item_index"


@dataclasses.dataclass(frozen=True)
class ItemIndexStats:
    """Size of a built item index.

    Attributes:
      num_item_ids: indices in all, the 3 special tokens included (the models'
        ``num_item_ids``).
      num_items: distinct items of the log (``num_item_ids - 3``).
    """

    num_item_ids: int
    num_items: int


def build_item_index(con):
    """Fills ``item_index`` (item_id, item_index INTEGER, count) from ``events``.

    Args:
      con: a DuckDB connection holding ``events``.

    Returns:
      ``ItemIndexStats``.
    """
    # Item ids are single-line text: the log readers refuse ids with a line
    # break, so items.txt can name one item per line.
    con.execute(
        f"CREATE OR REPLACE TABLE {ITEM_INDEX_TABLE} AS "
        f"SELECT item_id, (row_number() OVER (ORDER BY count DESC, item_id) "
        f"  + {schema.FIRST_ITEM_ID - 1})::INTEGER AS item_index, count "
        f"FROM (SELECT item_id, count(*) AS count FROM {behaviour_log.EVENTS_TABLE} GROUP BY item_id)"
    )
    (num_items,) = first_row(con, f"SELECT count(*) FROM {ITEM_INDEX_TABLE}")
    return ItemIndexStats(num_item_ids=num_items + schema.FIRST_ITEM_ID, num_items=num_items)


def write_item_index(con, path):
    """Writes ``items.txt``: ``<pad>``, ``<mask>``, ``<cls>``, then one item id per line.

    Line number (from 0) = item index.
    """
    item_ids = con.sql(
        f"SELECT CAST(item_id AS VARCHAR) AS item_id FROM {ITEM_INDEX_TABLE} ORDER BY item_index"
    ).to_arrow_table().column("item_id").to_pylist()
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join([*schema.ITEM_SPECIAL_TOKENS, *item_ids]) + "\n")


def read_item_index(path):
    """The lines of an ``items.txt``: index = item index (0..2 are the special tokens)."""
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


@dataclasses.dataclass(frozen=True)
class Sequences:
    """Prepared sequence rows: their count, and the SQL that yields one shard's rows.

    Attributes:
      num_users: users with a sequence row (at least one history behaviour).
      max_items_per_user: history items kept per user, the most recent.
    """

    num_users: int
    max_items_per_user: int

    def rows_sql(self, shard):
        """SQL for shard ``shard``'s rows: the columns of ``schema.SEQUENCE_SCHEMA``, by user rank."""
        # The history is the prefix pos < num_history in both split modes
        # (windows.create_windows); keep its last max_items_per_user positions.
        in_items = (
            f"b.pos < u.num_history AND b.pos >= u.num_history - {int(self.max_items_per_user)}"
        )
        return (
            f"SELECT u.id AS {schema.ID}, "
            f"  list(x.item_index ORDER BY b.pos) FILTER (WHERE {in_items}) AS {schema.ITEMS}, "
            f"  (count(*) FILTER (WHERE {in_items}))::INTEGER AS {schema.ITEMS_LENGTH}, "
            f"  coalesce(list(x.item_index ORDER BY b.pos) FILTER (WHERE b.in_target), []::INTEGER[]) "
            f"    AS {schema.TARGET_ITEMS} "
            f"FROM {windows.BEHAVIOURS_TABLE} b JOIN {windows.USERS_TABLE} u USING (user_id) "
            f"JOIN {ITEM_INDEX_TABLE} x USING (item_id) "
            f"WHERE b.shard = {int(shard)} AND u.num_history > 0 "
            f"GROUP BY u.user_rank, u.id ORDER BY u.user_rank"
        )


def create_sequences(con, max_items_per_user):
    """Counts the sequence table's users; the rows come from ``Sequences.rows_sql``.

    Args:
      con: a DuckDB connection holding ``users`` and ``behaviours``
        (``windows.create_windows``) and ``item_index`` (``build_item_index``).
      max_items_per_user: history items kept per user, the most recent.

    Returns:
      ``Sequences``.
    """
    (num_users,) = first_row(
        con, f"SELECT count(*) FROM {windows.USERS_TABLE} WHERE num_history > 0"
    )
    return Sequences(num_users=int(num_users), max_items_per_user=int(max_items_per_user))
