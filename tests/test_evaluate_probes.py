"""Probes, metrics, splits and baselines of evaluation/probes.py."""

import numpy as np
import pytest
import scipy.sparse
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from evaluation import probes as probes
from util.errors import UserInputError

C_GRID = (0.1, 1.0, 10.0)


def synthetic_users(num_users=400, dim=8, seed=0):
    """Vectors where gender is linear in dimension 0 and a 3-class label in dimension 1."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(num_users, dim)).astype(np.float32)
    gender = np.where(vectors[:, 0] + 0.3 * rng.normal(size=num_users) > 0.4, "F", "M")
    group = np.digitize(vectors[:, 1], [-0.5, 0.5])
    return vectors, gender, group


@pytest.mark.parametrize("task", ["gender", "group"])
def test_probe_recovers_a_linear_label_and_random_vectors_stay_near_chance(task):
    vectors, gender, group = synthetic_users()
    labels = gender if task == "gender" else group
    random_vectors = np.random.default_rng(1).normal(size=vectors.shape).astype(np.float32)
    train, test = np.arange(300), np.arange(300, 400)
    results = probes.evaluate_task(task, labels, train, test, {"model": vectors, "random": random_vectors},
                                   c_grid=C_GRID)
    by_model = {result.model: result for result in results}
    assert list(by_model) == ["model", "random", probes.MAJORITY]
    majority = by_model[probes.MAJORITY].accuracy
    assert by_model["model"].accuracy > majority + 0.15
    assert abs(by_model["random"].accuracy - majority) < 0.12
    if task == "gender":
        assert by_model["model"].auc > 0.9 and abs(by_model["random"].auc - 0.5) < 0.15
        assert by_model[probes.MAJORITY].auc == 0.5
    assert by_model["model"].C in C_GRID and by_model["model"].n_train == 300 and by_model["model"].n_test == 100


def test_mlp_probe_recovers_a_linear_label():
    vectors, gender, _ = synthetic_users()
    result = probes.probe_vectors(vectors[:300], gender[:300], vectors[300:], gender[300:], probe=probes.MLP,
                                  c_grid=(1.0,))
    assert result.auc > 0.9 and result.method == "probe:mlp" and result.cv_score is None


def test_choice_of_c_never_looks_at_test_labels():
    vectors, _, group = synthetic_users()
    shuffled = np.random.default_rng(2).permutation(group[300:])
    first = probes.probe_vectors(vectors[:300], group[:300], vectors[300:], group[300:], c_grid=(0.001, 0.1, 10.0))
    second = probes.probe_vectors(vectors[:300], group[:300], vectors[300:], shuffled, c_grid=(0.001, 0.1, 10.0))
    assert (first.C, first.cv_score) == (second.C, second.cv_score)
    assert first.accuracy != second.accuracy


def test_metrics_match_sklearn_on_a_small_case():
    classes = np.array(["a", "b", "c"])
    y_true = np.array(["a", "b", "c", "a", "b", "c", "a", "c"])
    proba = np.random.default_rng(3).dirichlet(np.ones(3), size=len(y_true))
    metrics = probes.classification_metrics(y_true, proba, classes)
    predicted = classes[proba.argmax(axis=1)]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, predicted, average="macro"))
    assert metrics["auc"] == pytest.approx(roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))

    binary_proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    binary = probes.classification_metrics(np.array([0, 1, 1, 0]), binary_proba, [0, 1])
    assert binary["auc"] == pytest.approx(roc_auc_score([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.7]))
    assert binary["accuracy"] == pytest.approx(0.5)


def test_multiclass_auc_uses_the_classes_present_in_test():
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    metrics = probes.classification_metrics(np.array([0, 1, 0, 1]), proba, np.array([0, 1, 2]))
    assert metrics["auc"] == pytest.approx(1.0)
    assert probes.classification_metrics(np.array([0, 0]), proba[:2], np.array([0, 1]))["auc"] is None


def test_tfidf_baseline_beats_majority_on_an_informative_bag():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, size=300)
    # Class 1 users watch items 2..11 more often, class 0 users items 12..21.
    rates = np.where(labels[:, None] == 1, np.r_[np.full(10, 0.5), np.full(10, 0.1)],
                     np.r_[np.full(10, 0.1), np.full(10, 0.5)])
    counts = scipy.sparse.csr_matrix(np.hstack([np.zeros((300, 2)), rng.random((300, 20)) < rates]).astype(np.float32))
    result = probes.tfidf_baseline(counts[:240], labels[:240], counts[240:], labels[240:], c_grid=C_GRID)
    assert result.auc > 0.9 and result.method == "tfidf+logistic"


def test_lsa_vectors_keep_the_bag_signal_at_the_asked_width_and_refuse_a_wider_one():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=300)
    rates = np.where(labels[:, None] == 1, np.r_[np.full(10, 0.5), np.full(10, 0.1)],
                     np.r_[np.full(10, 0.1), np.full(10, 0.5)])
    counts = scipy.sparse.csr_matrix((rng.random((300, 20)) < rates).astype(np.float32))
    vectors = probes.lsa_vectors(counts, 4)
    assert vectors.shape == (300, 4) and vectors.dtype == np.float32
    result = probes.probe_vectors(vectors[:240], labels[:240], vectors[240:], labels[240:], c_grid=C_GRID)
    assert result.auc > 0.9
    with pytest.raises(UserInputError, match=r"--lsa_dim=20 must be between 1 and the vocabulary size minus one \(19\)"):
        probes.lsa_vectors(counts, 20)


def test_canonical_split_puts_ids_divisible_by_5_in_test():
    ids = np.array(["1", "5", "10", "12", "6040", "-5"])
    mask = probes.canonical_test_mask(ids, "users.dat")
    np.testing.assert_array_equal(mask, [False, True, True, False, True, True])
    with pytest.raises(UserInputError, match=r"needs integer user ids, but users\.dat has user id 'u7'"):
        probes.canonical_test_mask(np.array(["1", "u7"]), "users.dat")


def test_column_split_reads_train_and_test():
    mask = probes.column_test_mask(np.array(["train", "Test", "TRAIN"]), np.ones(3, bool), "l.csv", "fold")
    np.testing.assert_array_equal(mask, [False, True, False])
    with pytest.raises(UserInputError, match=r"l\.csv: split column 'fold' holds 'dev'"):
        probes.column_test_mask(np.array(["train", "dev"]), np.ones(2, bool), "l.csv", "fold")


def test_task_users_exclude_missing_labels_and_sample_train_users():
    present = np.array([True, True, False, True, True, True])
    is_test = np.array([False, False, False, True, False, False])
    train, test = probes.split_task_users(present, is_test, task="t", source="l.csv")
    np.testing.assert_array_equal(train, [0, 1, 4, 5])
    np.testing.assert_array_equal(test, [3])
    sampled, _ = probes.split_task_users(present, is_test, task="t", source="l.csv", max_train_users=2, seed=0)
    assert len(sampled) == 2 and set(sampled) <= {0, 1, 4, 5}


def test_a_task_with_one_train_class_is_rejected_naming_file_and_column():
    with pytest.raises(UserInputError, match=r"label file users\.dat: column 'gender' has a single class \('M'\)"):
        probes.check_task_labels(np.array(["M"] * 20), task="gender", source="users.dat")


def test_mlp_probe_needs_enough_users_per_class_for_early_stopping():
    labels = np.array(["a"] * 50 + ["b"] * 50 + ["c"] * 2)
    probes.check_task_labels(labels, task="job", source="users.dat")
    with pytest.raises(UserInputError, match=r"users\.dat: column 'job' has too few train users per class for the MLP"):
        probes.check_task_labels(labels, task="job", source="users.dat", probe=probes.MLP)
