"""The demo data: deterministic, with planted traits that co-consumption reveals best."""

import filecmp
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

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


def _probe_score(features, y, train, test):
    """Test AUC (binary) or accuracy (multi-class) of a logistic regression fitted on ``train``."""
    probe = LogisticRegression(C=1.0, max_iter=1000).fit(features[train], y[train])
    proba = probe.predict_proba(features[test])
    return roc_auc_score(y[test], proba[:, 1]) if proba.shape[1] == 2 else accuracy_score(y[test], proba.argmax(1))


@pytest.fixture(scope="module")
def default_demo():
    """The default demo data, its bag-of-items and true community-share features, and the split."""
    events, items, labels, truth = demo_data.generate_demo(with_truth=True)
    users = events.column("user_id").to_numpy() - 1
    item_index = events.column("item_id").to_numpy() - 1
    counts = scipy.sparse.csr_matrix(
        (np.ones(len(users)), (users, item_index)), shape=(labels.num_rows, items.num_rows)
    ).toarray()
    bag_of_items = np.log1p(counts)
    bag_of_items /= np.linalg.norm(bag_of_items, axis=1, keepdims=True)
    shares = np.zeros((labels.num_rows, demo_data.NUM_TOPICS))
    np.add.at(shares, (users, truth["item_topic"][item_index]), 1.0)
    shares /= shares.sum(axis=1, keepdims=True)
    test = (np.arange(labels.num_rows) + 1) % 5 == 0
    train = np.flatnonzero(~test)
    few = np.sort(np.random.default_rng(0).choice(train, size=200, replace=False))
    return {"items": items, "labels": labels, "truth": truth, "bag_of_items": bag_of_items,
            "shares": shares, "train": train, "few": few, "test": np.flatnonzero(test)}


def test_segment_is_learnable_but_not_trivially(default_demo):
    """A bag-of-items probe on every train user finds the binary trait clearly above chance, not perfectly."""
    segment = default_demo["labels"].column("segment").to_numpy()
    auc = _probe_score(default_demo["bag_of_items"], segment, default_demo["train"], default_demo["test"])
    assert 0.8 < auc < 0.97, auc


def test_title_words_are_shared_across_communities(default_demo):
    """No title word marks a community: its items spread over communities as all items do."""
    item_topic = default_demo["truth"]["item_topic"]
    words = default_demo["items"].column("words").combine_chunks()
    word_item = np.repeat(np.arange(len(words)), np.diff(words.offsets.to_numpy()))
    names, word = np.unique(words.values.to_numpy(zero_copy_only=False), return_inverse=True)
    per_word = np.zeros((len(names), demo_data.NUM_TOPICS))
    np.add.at(per_word, (word, item_topic[word_item]), 1.0)
    frequent = per_word.sum(axis=1) >= 100
    assert frequent.sum() >= 8
    # Uniform spread is 1/20 = 0.05 per community; a topic word would put most of its items in one.
    largest_share = per_word[frequent].max(axis=1) / per_word[frequent].sum(axis=1)
    assert largest_share.max() < 0.2, largest_share.max()


def test_community_shares_beat_the_bag_of_items_with_few_labels(default_demo):
    """What a co-consumption model can recover (each user's community shares) needs fewer labels
    than per-item weights: with 200 labelled users it beats a bag-of-items probe on every trait."""
    for name in demo_data.TRAITS:
        y = default_demo["labels"].column(name).to_numpy()
        shares = _probe_score(default_demo["shares"], y, default_demo["few"], default_demo["test"])
        items = _probe_score(default_demo["bag_of_items"], y, default_demo["few"], default_demo["test"])
        assert shares > items + 0.025, (name, shares, items)
        # The bag of items still learns something: the traits are in the log, not only in the truth.
        chance = 0.5 if len(demo_data.TRAITS[name]) == 2 else max(demo_data.TRAITS[name])
        assert items > chance + 0.05, (name, items)


def test_demo_is_the_default_source(tmp_path):
    manifest = build_tables(
        BuildConfig(output_dir=str(tmp_path / "t"), demo_users=50), log=lambda line: None
    )
    assert manifest["source"].startswith("demo data")
    with open(tmp_path / "t" / schema.MANIFEST_FILE) as handle:
        assert json.load(handle)["num_users"] == 50


@pytest.mark.parametrize("flags, pattern", [({"demo_items": 5}, "--demo_items=5 must be at least 20"),
                                            ({"demo_users": 0}, "--demo_users=0 must be at least 1")])
def test_bad_demo_flags(tmp_path, flags, pattern):
    with pytest.raises(UserInputError, match=pattern):
        build_demo(tmp_path / "t", **flags)
