"""The data contract between the table builders and the loaders.

A *table folder* written by ``main/build_tables.py`` looks like::

    <tables_dir>/
      manifest.json            MANIFEST_FILE: schema version, sizes, every flag used
      vocabulary.txt           VOCABULARY_FILE: one word per line; line number = word id
      train/part-00000-of-00004.parquet      training table shards (history + target)
      inference/part-00000-of-00004.parquet  inference table shards (history only)
      labels.parquet           optional: per-user labels (demo traits, MovieLens profiles)

Word ids: 0 is padding, 1 is out-of-vocabulary, real words start at 2.

Training table row (one user):
  id              string                    the user id
  history         list<list<int32>>         behaviours oldest -> newest, each a list of
                                            word ids (no zeros inside)
  history_length  int32                     number of behaviours in ``history``
  target_words    list<int32>               distinct word ids of the target window,
                                            most frequent first
  target_counts   list<int32>               occurrences of each target word (>= 1)

Inference table row: ``id``, ``history``, ``history_length`` (no target columns).

TFRecord shards hold one ``tf.train.Example`` per row with the same data,
flattened because Example features cannot nest:
  id                    bytes_list[1]
  history_words         int64_list   every word id of every behaviour, in order
  history_word_counts   int64_list   words per behaviour (its length = history_length)
  target_words          int64_list   (training table only)
  target_counts         int64_list   (training table only)
"""

import pyarrow as pa

SCHEMA_VERSION = 1

MANIFEST_FILE = "manifest.json"
VOCABULARY_FILE = "vocabulary.txt"
LABELS_FILE = "labels.parquet"
TRAIN_SUBDIR = "train"
INFERENCE_SUBDIR = "inference"

PAD_ID = 0
OOV_ID = 1
PAD_TOKEN = "<pad>"
OOV_TOKEN = "<oov>"
FIRST_WORD_ID = 2

PARQUET = "parquet"
TFRECORD = "tfrecord"
FORMATS = (PARQUET, TFRECORD)
FILE_SUFFIX = {PARQUET: ".parquet", TFRECORD: ".tfrecord"}

ID = "id"
HISTORY = "history"
HISTORY_LENGTH = "history_length"
TARGET_WORDS = "target_words"
TARGET_COUNTS = "target_counts"

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


def shard_name(index, count, file_format):
    """``part-00003-of-00008.parquet``: the name of shard ``index`` of ``count``."""
    return f"part-{index:05d}-of-{count:05d}{FILE_SUFFIX[file_format]}"
