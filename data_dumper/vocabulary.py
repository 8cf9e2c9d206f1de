"""The word vocabulary: counted from the behaviour log, written beside the tables.

Word ids: 0 is ``<pad>``, 1 is ``<oov>``, then the words of the log's behaviours
by descending count, ties in alphabetical (code point) order. A word counts once
per occurrence in a behaviour of the log, after ``--max_words_per_query`` cut the
behaviour (words that never reach a table get no id). Words seen fewer than
``--min_count`` times, or past ``--max_vocabulary``, map to ``<oov>``. Labels
never feed the vocabulary; a token spelled ``<pad>`` or ``<oov>`` maps to ``<oov>``.

Counting and id mapping run in the build's engine, in SQL both DuckDB and Spark
read (``sql_dialect``): ``build_vocabulary`` fills ``vocabulary`` (word, word_id,
count) and ``item_word_ids`` (item_id, word_ids INT32[], has_known_word: some
word of the item is not ``<oov>``).
"""

import dataclasses

from contracts import schema
from data_dumper import behaviour_log
from data_dumper.sql_dialect import INTEGER
from util.atomic import atomic_path

VOCABULARY_TABLE = "vocabulary"
ITEM_WORD_IDS_TABLE = "item_word_ids"
WORD_COUNTS_TABLE = "word_counts"


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


def build_vocabulary(engine, min_count=1, max_vocabulary=None):
    """Counts words over ``events`` x ``item_words`` and assigns ids.

    Args:
      engine: the build's table engine, holding ``events`` and ``item_words``.
      min_count: a word needs this many occurrences to get its own id.
      max_vocabulary: at most this many ids in all (``<pad>`` and ``<oov>``
        included), or None for no cap.

    Returns:
      ``VocabularyStats``.
    """
    dialect = engine.dialect
    limit = "" if max_vocabulary is None else f"LIMIT {int(max_vocabulary) - schema.FIRST_WORD_ID}"
    # An item's words count once per behaviour on that item: count items first,
    # then weight each item's words, so the work follows items, not events.
    engine.create_table(
        WORD_COUNTS_TABLE,
        f"SELECT word, CAST(sum(n) AS BIGINT) AS count FROM ("
        f"  SELECT {dialect.explode('w.words')} AS word, f.n FROM {behaviour_log.ITEM_WORDS_TABLE} w "
        f"  JOIN (SELECT item_id, count(*) AS n FROM {behaviour_log.EVENTS_TABLE} GROUP BY item_id) f "
        f"  ON f.item_id = w.item_id"
        f") GROUP BY word",
    )
    # Words are unique here, so (count DESC, word) orders them without ties; both
    # engines compare strings by their bytes (code point order).
    engine.create_table(
        VOCABULARY_TABLE,
        f"SELECT word, CAST(row_number() OVER (ORDER BY count DESC, word) + {schema.FIRST_WORD_ID - 1} "
        f"AS INTEGER) AS word_id, count FROM (SELECT word, count FROM {WORD_COUNTS_TABLE} "
        f"WHERE count >= {int(min_count)} "
        f"AND word NOT IN ({dialect.string(schema.PAD_TOKEN)}, {dialect.string(schema.OOV_TOKEN)}) "
        f"ORDER BY count DESC, word {limit})",
    )
    # Position p keeps each item's word order through the explode and re-aggregation.
    word_id = f"CAST(coalesce(v.word_id, {schema.OOV_ID}) AS {INTEGER})"
    engine.create_table(
        ITEM_WORD_IDS_TABLE,
        f"SELECT w.item_id, {dialect.ordered_list(word_id, 'w.p')} AS word_ids, "
        f"  max(CASE WHEN v.word_id IS NULL THEN 0 ELSE 1 END) = 1 AS has_known_word "
        f"FROM (SELECT item_id, {dialect.explode_with_position('words', 'p', 'word')} "
        f"      FROM {behaviour_log.ITEM_WORDS_TABLE}) w "
        f"LEFT JOIN {VOCABULARY_TABLE} v ON v.word = w.word GROUP BY w.item_id",
    )
    kept, distinct, occurrences, kept_occurrences = engine.first_row(
        f"SELECT (SELECT count(*) FROM {VOCABULARY_TABLE}), count(*), coalesce(sum(count), 0), "
        f"(SELECT coalesce(sum(count), 0) FROM {VOCABULARY_TABLE}) FROM {WORD_COUNTS_TABLE}"
    )
    return VocabularyStats(
        size=kept + schema.FIRST_WORD_ID,
        num_distinct_words=distinct,
        num_oov_words=distinct - kept,
        num_word_occurrences=int(occurrences),
        num_oov_occurrences=int(occurrences - kept_occurrences),
    )


def write_vocabulary(engine, path):
    """Writes ``vocabulary.txt``: one word per line, line number (from 0) = word id."""
    words = engine.to_arrow(
        f"SELECT word FROM {VOCABULARY_TABLE} ORDER BY word_id"
    ).column("word").to_pylist()
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join([schema.PAD_TOKEN, schema.OOV_TOKEN, *words]) + "\n")


def read_vocabulary(path):
    """The words of a vocabulary file, index = word id."""
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]
