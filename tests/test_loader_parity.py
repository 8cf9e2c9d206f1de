"""Parquet and TFRecord tables built from the same log read as identical batches."""


import numpy as np
import pytest

from contracts import schema
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from data_loader.dataset import make_dataset
from data_loader.reader_options import ReaderOptions
from data_loader.table_files import resolve_table_files
from data_loader.validation import validate_table
from util.errors import UserInputError


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    folders = {}
    for file_format in schema.FORMATS:
        folder = str(root / file_format)
        build_tables(BuildConfig(output_dir=folder, demo=True, demo_users=300, demo_items=60,
                                 num_shards=3, format=file_format), log=lambda line: None)
        folders[file_format] = folder
    return folders


def _batches(folder, subdir, **options):
    table = resolve_table_files(folder, default_subdir=subdir)
    return list(make_dataset(table, ReaderOptions(**options)))


@pytest.mark.parametrize("subdir, with_target", [
    (schema.TRAIN_SUBDIR, True), (schema.INFERENCE_SUBDIR, False)], ids=["train", "inference"])
@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
def test_same_batches_from_both_formats(both_formats, subdir, with_target, weighted):
    options = dict(batch_size=32, with_target=with_target, weighted_target=weighted,
                   max_behaviours=20, max_words=4, max_targets=30)
    parquet = _batches(both_formats["parquet"], subdir, **options)
    tfrecord = _batches(both_formats["tfrecord"], subdir, **options)
    assert len(parquet) == len(tfrecord) > 1
    for left, right in zip(parquet, tfrecord):
        assert set(left) == set(right)
        np.testing.assert_array_equal(left["id"].numpy(), right["id"].numpy())
        np.testing.assert_array_equal(left["history_length"].numpy(), right["history_length"].numpy())
        assert left["history"].to_list() == right["history"].to_list()
        assert left["history"].dtype == right["history"].dtype
        if with_target:
            assert left["target_words"].to_list() == right["target_words"].to_list()
            np.testing.assert_allclose(left["target_weights"].flat_values.numpy(),
                                       right["target_weights"].flat_values.numpy(), rtol=1e-6)


def test_tfrecord_shuffle_is_deterministic_and_complete(both_formats):
    options = dict(batch_size=50, shuffle=True, shuffle_buffer=100, seed=3)
    ids = [[i for b in _batches(both_formats["tfrecord"], "train", **options)
            for i in b["id"].numpy()] for _ in range(2)]
    assert ids[0] == ids[1]
    plain = [i for b in _batches(both_formats["tfrecord"], "train", batch_size=50)
             for i in b["id"].numpy()]
    assert sorted(ids[0]) == sorted(plain) and ids[0] != plain


def test_truncated_tfrecord_names_the_file(both_formats, tmp_path):
    source = resolve_table_files(both_formats["tfrecord"]).files[0]
    damaged = tmp_path / "damaged.tfrecord"
    damaged.write_bytes(open(source, "rb").read()[:-25])
    with pytest.raises(UserInputError, match=f"file {damaged} is truncated or corrupt"):
        validate_table(resolve_table_files(str(damaged)), with_target=True)


def test_tfrecord_id_outside_vocabulary_names_file_column_and_row(both_formats):
    table = resolve_table_files(both_formats["tfrecord"])
    with pytest.raises(UserInputError, match=r"column history, row \d+: word id \d+ is outside "
                                             r"the vocabulary of 5 words"):
        validate_table(table, with_target=True, vocabulary_size=5)


def test_inference_table_lacks_training_columns(both_formats):
    inference = resolve_table_files(both_formats["tfrecord"], default_subdir="inference")
    with pytest.raises(UserInputError, match="column target_words, row 0: is empty .*inference table"):
        validate_table(inference, with_target=True)
    parquet = resolve_table_files(both_formats["parquet"], default_subdir="inference")
    with pytest.raises(UserInputError, match="has no column target_words"):
        validate_table(parquet, with_target=True)
    assert validate_table(inference, with_target=False) == 300


def test_tfrecord_length_grouping_keeps_every_user(both_formats):
    grouped = _batches(both_formats["tfrecord"], "train", batch_size=25, shuffle=True,
                       shuffle_buffer=300, seed=2, group_by_length=True)
    ids = sorted(i for b in grouped for i in b["id"].numpy())
    plain = sorted(i for b in _batches(both_formats["tfrecord"], "train", batch_size=25)
                   for i in b["id"].numpy())
    assert ids == plain
    shuffled = _batches(both_formats["tfrecord"], "train", batch_size=25, shuffle=True,
                        shuffle_buffer=300, seed=2)

    def mean_spread(batches):
        return np.mean([np.ptp(b["history_length"].numpy()) for b in batches])

    assert mean_spread(grouped) < 0.3 * mean_spread(shuffled)
