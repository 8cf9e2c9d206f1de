"""The demo data: deterministic, with planted traits a linear probe can find (but not perfectly)."""

import filecmp
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from contracts import schema
from data_dumper import demo_data
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from util.errors import UserInputError


def build_demo(folder, **flags):
    settings = {"demo": True, "num_shards": 2, **flags}
    return build_tables(BuildConfig(output_dir=str(folder), **settings), log=lambda line: None)


def table_files(folder):
    """Every file of a table folder, as paths relative to it."""
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder) for name in names
    )


def test_same_seed_gives_identical_files(tmp_path):
    first = build_demo(tmp_path / "a", demo_users=300, seed=3)
    second = build_demo(tmp_path / "b", demo_users=300, seed=3)
    files = table_files(tmp_path / "a")
    assert files == table_files(tmp_path / "b")
    assert schema.LABELS_FILE in files
    for name in files:
        if name != schema.MANIFEST_FILE:
            assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
    first["flags"].pop("output_dir")
    second["flags"].pop("output_dir")
    assert first == second


def test_other_seed_gives_other_data():
    events_a, _, labels_a = demo_data.generate_demo(seed=1, num_users=200)
    events_b, _, labels_b = demo_data.generate_demo(seed=2, num_users=200)
    assert not events_a.equals(events_b)
    assert not labels_a.equals(labels_b)


def test_traits_are_written_as_labels(tmp_path):
    manifest = build_demo(tmp_path, demo_users=400)
    labels = pq.read_table(tmp_path / schema.LABELS_FILE)
    assert manifest["labels_file"] == schema.LABELS_FILE
    assert labels.schema.names == ["id", "segment", "age_group", "interest"]
    assert labels.num_rows == manifest["num_users"] == manifest["num_inference_users"] == 400
    for name, probabilities in demo_data.TRAITS.items():
        classes = labels.column(name).to_numpy()
        assert sorted(set(classes)) == list(range(len(probabilities))), name
    # Label ids are the tables' user ids.
    inference = pq.read_table(tmp_path / manifest["files"][schema.INFERENCE_SUBDIR][0])
    assert set(inference.column(schema.ID).to_pylist()) <= set(labels.column("id").to_pylist())


def test_demo_shape():
    events, items, labels = demo_data.generate_demo()
    lengths = np.bincount(events.column("user_id").to_numpy())[1:]
    assert labels.num_rows == demo_data.DEFAULT_USERS and items.num_rows == demo_data.DEFAULT_ITEMS
    assert lengths.min() >= demo_data.MIN_HISTORY and lengths.max() <= demo_data.MAX_HISTORY
    assert np.median(lengths) < 100 < lengths.max()  # varied lengths, skewed short
    assert len(np.unique(events.column("item_id").to_numpy())) == demo_data.DEFAULT_ITEMS
    # Positions run 0..n-1 within each user.
    positions = events.column("position").to_numpy()
    assert positions.max() == lengths.max() - 1 and (positions >= 0).all()


def test_segment_is_learnable_but_not_trivially():
    """A bag-of-items probe finds the binary trait clearly above chance, not perfectly."""
    events, items, labels = demo_data.generate_demo()
    users = events.column("user_id").to_numpy() - 1
    item_index = events.column("item_id").to_numpy() - 1
    counts = scipy.sparse.csr_matrix(
        (np.ones(len(users)), (users, item_index)), shape=(labels.num_rows, items.num_rows)
    )
    features = np.log1p(counts.toarray())
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    segment = labels.column("segment").to_numpy()
    test = (np.arange(labels.num_rows) + 1) % 5 == 0
    probe = LogisticRegression(C=1.0, max_iter=1000).fit(features[~test], segment[~test])
    auc = roc_auc_score(segment[test], probe.predict_proba(features[test])[:, 1])
    assert 0.72 < auc < 0.95, auc


def test_demo_is_the_default_source(tmp_path):
    manifest = build_tables(
        BuildConfig(output_dir=str(tmp_path / "t"), demo_users=50), log=lambda line: None
    )
    assert manifest["source"].startswith("demo data")
    with open(tmp_path / "t" / schema.MANIFEST_FILE) as handle:
        assert json.load(handle)["num_users"] == 50


@pytest.mark.parametrize("flags, pattern", [({"demo_items": 5}, "--demo_items=5 must be at least 12"),
                                            ({"demo_users": 0}, "--demo_users=0 must be at least 1")])
def test_bad_demo_flags(tmp_path, flags, pattern):
    with pytest.raises(UserInputError, match=pattern):
        build_demo(tmp_path / "t", **flags)
