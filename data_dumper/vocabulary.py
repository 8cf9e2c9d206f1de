"""The word vocabulary: counted from the behaviour log, written beside the tables.

Word ids: 0 is ``<pad>``, 1 is ``<oov>``, then the words of the log's behaviours
by descending count, ties in alphabetical (code point) order. A word counts once
per occurrence in a behaviour of the log, after ``--max_words_per_query`` cut the
behaviour (words that never reach a table get no id). Words seen fewer than
``--min_count`` times, or past ``--max_vocabulary``, map to ``<oov>``. Labels
never feed the vocabulary; a token spelled ``<pad>`` or ``<oov>`` maps to ``<oov>``.

Counting and id mapping run in DuckDB: ``build_vocabulary`` fills ``vocabulary``
(word, word_id, count) and ``item_word_ids`` (item_id, word_ids INT32[]).
"""

import dataclasses

from contracts import schema
from data_dumper import behaviour_log
from data_dumper.sql import first_row
from util.atomic import atomic_path

VOCABULARY_TABLE = "vocabulary"
ITEM_WORD_IDS_TABLE = "item_word_ids"


@dataclasses.dataclass(frozen=True)
class VocabularyStats:
    """Sizes of a built vocabulary.

    Attributes:
      size: number of ids, ``<pad>`` and ``<oov>`` included (the model's num_vocabulary).
      num_distinct_words: distinct words in the log's behaviours.
      num_oov_words: distinct words mapped to ``<oov>``.
      num_word_occurrences: words over all behaviours of the log.
      num_oov_occurrences: of which mapped to ``<oov>``.
    """

    size: int
    num_distinct_words: int
    num_oov_words: int
    num_word_occurrences: int
    num_oov_occurrences: int


def build_vocabulary(con, min_count=1, max_vocabulary=None):
    """Counts words over ``events`` x ``item_words`` and assigns ids.

    Args:
      con: a DuckDB connection holding ``events`` and ``item_words``.
      min_count: a word needs this many occurrences to get its own id.
      max_vocabulary: at most this many ids in all (``<pad>`` and ``<oov>``
        included), or None for no cap.

    Returns:
      ``VocabularyStats``.
    """
    limit = "" if max_vocabulary is None else f"LIMIT {int(max_vocabulary) - schema.FIRST_WORD_ID}"
    # An item's words count once per behaviour on that item: count items first,
    # then weight each item's words, so the work follows items, not events.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE word_counts AS "
        f"SELECT word, sum(n)::BIGINT AS count FROM ("
        f"  SELECT unnest(w.words) AS word, f.n FROM {behaviour_log.ITEM_WORDS_TABLE} w "
        f"  JOIN (SELECT item_id, count(*) AS n FROM {behaviour_log.EVENTS_TABLE} GROUP BY item_id) f "
        f"  USING (item_id)"
        f") GROUP BY word"
    )
    con.execute(
        f"CREATE OR REPLACE TABLE {VOCABULARY_TABLE} AS "
        f"SELECT word, (row_number() OVER (ORDER BY count DESC, word) + {schema.FIRST_WORD_ID - 1})::INTEGER "
        f"AS word_id, count FROM (SELECT * FROM word_counts WHERE count >= {int(min_count)} "
        f"AND word NOT IN ('{schema.PAD_TOKEN}', '{schema.OOV_TOKEN}') "
        f"ORDER BY count DESC, word {limit})"
    )
    # Position p keeps each item's word order through the unnest and re-aggregation.
    con.execute(
        f"CREATE OR REPLACE TABLE {ITEM_WORD_IDS_TABLE} AS "
        f"SELECT w.item_id, list(coalesce(v.word_id, {schema.OOV_ID})::INTEGER ORDER BY w.p) AS word_ids "
        f"FROM (SELECT item_id, unnest(words) AS word, unnest(range(len(words))) AS p "
        f"      FROM {behaviour_log.ITEM_WORDS_TABLE}) w "
        f"LEFT JOIN {VOCABULARY_TABLE} v USING (word) GROUP BY w.item_id"
    )
    kept, distinct, occurrences, kept_occurrences = first_row(
        con,
        f"SELECT (SELECT count(*) FROM {VOCABULARY_TABLE}), count(*), coalesce(sum(count), 0), "
        f"(SELECT coalesce(sum(count), 0) FROM {VOCABULARY_TABLE}) FROM word_counts"
    )
    return VocabularyStats(
        size=kept + schema.FIRST_WORD_ID,
        num_distinct_words=distinct,
        num_oov_words=distinct - kept,
        num_word_occurrences=int(occurrences),
        num_oov_occurrences=int(occurrences - kept_occurrences),
    )


def write_vocabulary(con, path):
    """Writes ``vocabulary.txt``: one word per line, line number (from 0) = word id."""
    words = con.sql(
        f"SELECT word FROM {VOCABULARY_TABLE} ORDER BY word_id"
    ).to_arrow_table().column("word").to_pylist()
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join([schema.PAD_TOKEN, schema.OOV_TOKEN, *words]) + "\n")


def read_vocabulary(path):
    """The words of a vocabulary file, index = word id."""
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]
