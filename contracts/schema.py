"""The data contract between the table builders and the loaders.

A *table folder* written by ``main/build_tables.py`` looks like::

    <tables_dir>/
      manifest.json            MANIFEST_FILE: schema version, sizes, every flag used
      vocabulary.txt           VOCABULARY_FILE: one word per line; line number = word id
      items.txt                ITEM_INDEX_FILE: one item id per line; line number = item index
      train/part-00000-of-00004.parquet      training table shards (history + target)
      inference/part-00000-of-00004.parquet  inference table shards (history only)
      sequences/part-00000-of-00004.parquet  item-sequence shards (PeterRec, NextItNet, GRec)
      labels.parquet           optional: per-user labels (demo traits, MovieLens profiles)

Word ids: 0 is padding, 1 is out-of-vocabulary, real words start at 2.

Item indices (one index shared by pretraining and every downstream task): 0 is
``<pad>``, 1 is ``<mask>`` (GRec's masked positions), 2 is ``<cls>`` (the
fine-tuning summary position); real items start at 3, the most frequent first.

Training table row (one user; no value is null):
  id              string                    the user id, unique in the table
  history         list<list<int32>>         behaviours oldest -> newest, each a list of
                                            word ids (no zeros inside)
  history_length  int32                     number of behaviours in ``history``
  target_words    list<int32>               distinct word ids of the target window
                                            (at least one, no padding), most frequent first
  target_counts   list<int32>               occurrences of each target word (>= 1, one
                                            per target word, so non-increasing)

Inference table row: ``id``, ``history``, ``history_length`` (no target columns).

Sequence table row (one user with at least one history behaviour; no value is null):
  id              string                    the user id, unique in the table
  items           list<int32>               real item indices (>= FIRST_ITEM_ID) of the
                                            history window (the training table's split),
                                            oldest -> newest, the most recent
                                            ``--max_items_per_user``
  items_length    int32                     number of items in ``items`` (>= 1)
  target_items    list<int32>               real item indices of the target window, in
                                            order (may be empty)

Any Parquet writer's spelling of these types reads the same (nullable or
non-nullable fields and list items, items named ``element``, int64 for int32,
large lists and strings): see data_loader/table_schema.py.

TFRecord shards hold one ``tf.train.Example`` per row with the same data,
flattened because Example features cannot nest:
  id                    bytes_list[1]
  history_words         int64_list   every word id of every behaviour, in order
  history_word_counts   int64_list   words per behaviour (its length = history_length)
  target_words          int64_list   (training table only)
  target_counts         int64_list   (training table only)
A sequence table's Examples hold ``id`` (bytes_list[1]), ``items`` and
``target_items`` (int64_list each); ``items_length`` is the length of ``items``.
"""

import pyarrow as pa

from contracts.run_folder import FolderKind

SCHEMA_VERSION = 1

MANIFEST_FILE = "manifest.json"
VOCABULARY_FILE = "vocabulary.txt"
LABELS_FILE = "labels.parquet"
ITEM_INDEX_FILE = "items.txt"
TRAIN_SUBDIR = "train"
INFERENCE_SUBDIR = "inference"
SEQUENCES_SUBDIR = "sequences"
# What main/build_tables.py --overwrite may replace (util/output_folder.py).
TABLE_FOLDER = FolderKind(
    what="a table folder", written_by="main/build_tables.py",
    markers=(MANIFEST_FILE,),
    entries=(MANIFEST_FILE, VOCABULARY_FILE, LABELS_FILE, ITEM_INDEX_FILE, TRAIN_SUBDIR,
             INFERENCE_SUBDIR, SEQUENCES_SUBDIR))

PAD_ID = 0
OOV_ID = 1
PAD_TOKEN = "<pad>"
OOV_TOKEN = "<oov>"
FIRST_WORD_ID = 2

# SUMN's limits of a history: behaviours per user x words per behaviour (the
# --max_query_per_week / --max_words_per_query defaults of every stage).
DEFAULT_MAX_BEHAVIOURS = 900
DEFAULT_MAX_WORDS = 24

ITEM_PAD_ID = 0
ITEM_MASK_ID = 1
ITEM_CLS_ID = 2
ITEM_PAD_TOKEN = "<pad>"
ITEM_MASK_TOKEN = "<mask>"
ITEM_CLS_TOKEN = "<cls>"
# The special tokens on lines 0..2 of items.txt, in index order.
ITEM_SPECIAL_TOKENS = (ITEM_PAD_TOKEN, ITEM_MASK_TOKEN, ITEM_CLS_TOKEN)
# Real items follow by DESCENDING frequency in the log (ties by item id)
# because tf.nn.log_uniform_candidate_sampler, the negative sampler of the
# pretraining's sampled softmax, assumes classes sorted by decreasing
# frequency: its Zipfian proposal gives the lowest indices the most samples.
FIRST_ITEM_ID = 3

PARQUET = "parquet"
TFRECORD = "tfrecord"
FORMATS = (PARQUET, TFRECORD)
FILE_SUFFIX = {PARQUET: ".parquet", TFRECORD: ".tfrecord"}

ID = "id"
HISTORY = "history"
HISTORY_LENGTH = "history_length"
TARGET_WORDS = "target_words"
TARGET_COUNTS = "target_counts"

ITEMS = "items"
ITEMS_LENGTH = "items_length"
TARGET_ITEMS = "target_items"

# TFRecord-only flattened feature names.
HISTORY_WORDS = "history_words"
HISTORY_WORD_COUNTS = "history_word_counts"

INFERENCE_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(HISTORY, pa.list_(pa.list_(pa.int32())), nullable=False),
        pa.field(HISTORY_LENGTH, pa.int32(), nullable=False),
    ]
)

TRAINING_SCHEMA = INFERENCE_SCHEMA.append(
    pa.field(TARGET_WORDS, pa.list_(pa.int32()), nullable=False)
).append(pa.field(TARGET_COUNTS, pa.list_(pa.int32()), nullable=False))

SEQUENCE_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(ITEMS, pa.list_(pa.int32()), nullable=False),
        pa.field(ITEMS_LENGTH, pa.int32(), nullable=False),
        pa.field(TARGET_ITEMS, pa.list_(pa.int32()), nullable=False),
    ]
)


def shard_name(index, count, file_format):
    """``part-00003-of-00008.parquet``: the name of shard ``index`` of ``count``."""
    return f"part-{index:05d}-of-{count:05d}{FILE_SUFFIX[file_format]}"
