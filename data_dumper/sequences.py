"""The item index and the item-sequence table, in SQL for DuckDB and Spark (PeterRec, NextItNet, GRec).

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
ordered by user rank; the row query is built like the training rows'
(``windows.py``: one shard, or every shard for Spark, then the placement columns).
"""

import dataclasses

from contracts import schema
from data_dumper import behaviour_log, windows
from data_dumper.sql_dialect import INTEGER
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


def build_item_index(engine):
    """Fills ``item_index`` (item_id, item_index INTEGER, count) from ``events``.

    Args:
      engine: the build's table engine, holding ``events``.

    Returns:
      ``ItemIndexStats``.
    """
    # Item ids are single-line text: the log readers refuse ids with a line
    # break, so items.txt can name one item per line.
    # Item ids are unique after the GROUP BY: (count DESC, item_id) has no ties.
    engine.create_table(
        ITEM_INDEX_TABLE,
        f"SELECT item_id, CAST(row_number() OVER (ORDER BY count DESC, item_id) "
        f"  + {schema.FIRST_ITEM_ID - 1} AS {INTEGER}) AS item_index, count "
        f"FROM (SELECT item_id, count(*) AS count FROM {behaviour_log.EVENTS_TABLE} GROUP BY item_id) "
        f"per_item",
    )
    (num_items,) = engine.first_row(f"SELECT count(*) FROM {ITEM_INDEX_TABLE}")
    return ItemIndexStats(num_item_ids=num_items + schema.FIRST_ITEM_ID, num_items=num_items)


def write_item_index(engine, path):
    """Writes ``items.txt``: ``<pad>``, ``<mask>``, ``<cls>``, then one item id per line.

    Line number (from 0) = item index.
    """
    item_ids = engine.to_arrow(
        f"SELECT CAST(item_id AS STRING) AS item_id FROM {ITEM_INDEX_TABLE} ORDER BY item_index"
    ).column("item_id").to_pylist()
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join([*schema.ITEM_SPECIAL_TOKENS, *item_ids]) + "\n")


def read_item_index(path):
    """The lines of an ``items.txt``: index = item index (0..2 are the special tokens)."""
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


@dataclasses.dataclass(frozen=True)
class Sequences:
    """Prepared sequence rows: their count, and the SQL that yields the rows.

    Attributes:
      num_users: users with a sequence row (at least one history behaviour).
      max_items_per_user: history items kept per user, the most recent.
      dialect: the engine's ``sql_dialect``.
    """

    num_users: int
    max_items_per_user: int
    dialect: object

    def rows_sql(self, shard=None):
        """SQL for the rows of one shard (by user rank) or of every shard (``shard=None``).

        Columns: those of ``schema.SEQUENCE_SCHEMA``, then ``windows.PLACEMENT_COLUMNS``.
        """
        dialect = self.dialect
        # The history is the prefix pos < num_history in both split modes
        # (windows.create_windows); keep its last max_items_per_user positions.
        in_items = (
            f"b.pos < u.num_history AND b.pos >= u.num_history - {int(self.max_items_per_user)}"
        )
        items = dialect.ordered_list("x.item_index", "b.pos", where=in_items)
        target_items = dialect.ordered_list("x.item_index", "b.pos", where="b.in_target")
        return (
            f"SELECT u.id AS {schema.ID}, {items} AS {schema.ITEMS}, "
            f"  CAST(count(*) FILTER (WHERE {in_items}) AS {INTEGER}) AS {schema.ITEMS_LENGTH}, "
            f"  coalesce({target_items}, {dialect.empty_array(INTEGER)}) AS {schema.TARGET_ITEMS}, "
            f"  {windows.placement_sql('u')} "
            f"FROM {windows.BEHAVIOURS_TABLE} b JOIN {windows.USERS_TABLE} u ON u.user_id = b.user_id "
            f"JOIN {ITEM_INDEX_TABLE} x ON x.item_id = b.item_id "
            f"WHERE {windows.shard_condition('b.shard', shard)} AND u.num_history > 0 "
            f"GROUP BY u.shard, u.user_rank, u.id" + windows.rank_order_sql(shard)
        )


def create_sequences(engine, max_items_per_user):
    """Counts the sequence table's users; the rows come from ``Sequences.rows_sql``.

    Args:
      engine: the build's table engine, holding ``users`` and ``behaviours``
        (``windows.create_windows``) and ``item_index`` (``build_item_index``).
      max_items_per_user: history items kept per user, the most recent.

    Returns:
      ``Sequences``.
    """
    (num_users,) = engine.first_row(
        f"SELECT count(*) FROM {windows.USERS_TABLE} WHERE num_history > 0"
    )
    return Sequences(
        num_users=int(num_users), max_items_per_user=int(max_items_per_user), dialect=engine.dialect
    )
