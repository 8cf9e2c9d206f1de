"""Downstream probes on frozen user vectors, their metrics, and the baselines beside them.

A probe is a small classifier trained on the frozen vectors of the train users
and scored on the test users: ``StandardScaler`` + ``LogisticRegression`` (or
an ``MLPClassifier``). Its regularisation ``C`` is chosen by stratified k-fold
cross-validation on the TRAIN users only; test users are never used to choose
anything. Baselines get the same treatment:

* majority class (``DummyClassifier``): the chance level;
* TF-IDF over each user's bag of words + ``LogisticRegression``: a supervised
  sparse baseline;
* vectors from a randomly initialised encoder: just another vector matrix;
* LSA user vectors (``lsa_vectors``: the same TF-IDF matrix reduced by
  ``TruncatedSVD``, fitted without labels): the unsupervised anchor at the
  model's own width, probed like any vector matrix.

Metrics are scikit-learn's: accuracy, macro-F1, ROC AUC (binary), and
one-vs-rest macro AUC for multi-class tasks. The headline metric of a task is
AUC when it is binary and accuracy otherwise.

Example:
    train, test = split_task_users(present, is_test, task="gender", source="users.dat")
    results = evaluate_task("gender", y, train, test, {"sumn": vectors}, bag=counts)
"""

import dataclasses
import warnings

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, label_binarize
from threadpoolctl import threadpool_limits

from util.errors import UserInputError

LOGISTIC = "logistic"
MLP = "mlp"
PROBES = (LOGISTIC, MLP)
DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0)
CV_FOLDS = 5
# A task with more classes than this is almost surely a number or an id column.
MAX_CLASSES = 200
MAJORITY = "majority"
TFIDF = "tfidf_logistic"
MLP_HIDDEN_UNITS = (256,)
MLP_VALIDATION_FRACTION = 0.1


@dataclasses.dataclass
class ProbeResult:
    """Scores of one model on one task (``auc`` is None where it is undefined)."""

    model: str
    task: str
    method: str
    accuracy: float
    macro_f1: float
    auc: float | None
    n_train: int
    n_test: int
    n_classes: int
    C: float | None = None
    cv_score: float | None = None
    warnings: list = dataclasses.field(default_factory=list)

    def as_dict(self):
        return dataclasses.asdict(self)


def headline_metric(n_classes):
    """``"auc"`` for a binary task, ``"accuracy"`` for a multi-class one."""
    return "auc" if n_classes == 2 else "accuracy"


CANONICAL_SPLIT = "canonical"
SPLIT_COLUMN_PREFIX = "column:"


def split_column(flag):
    """A ``--split`` value -> None for ``canonical``, else NAME of ``column:NAME``.

    Raises:
        UserInputError: anything else.
    """
    if flag == CANONICAL_SPLIT:
        return None
    if flag.startswith(SPLIT_COLUMN_PREFIX) and len(flag) > len(SPLIT_COLUMN_PREFIX):
        return flag[len(SPLIT_COLUMN_PREFIX):]
    raise UserInputError(f"--split must be '{CANONICAL_SPLIT}' or column:NAME, not '{flag}'.")


def canonical_test_mask(ids, source):
    """The canonical split: users whose integer id is divisible by 5 are test users.

    Args:
        ids: np.ndarray[str], [num_users].
        source: the file the ids came from, named in errors.
    Returns:
        np.ndarray[bool], [num_users], True for test users.
    """
    ids = np.asarray(ids, dtype=str)
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    digits = np.char.isdigit(np.char.lstrip(ids, "-")) & (np.char.str_len(ids) <= 18)
    if not digits.all():
        raise UserInputError(
            f"--split canonical needs integer user ids, but {source} has user id "
            f"'{ids[~digits][0]}'; use --split column:NAME."
        )
    return ids.astype(np.int64) % 5 == 0


def column_test_mask(values, present, source, column):
    """A split column with values ``train``/``test`` (any case) -> bool test mask."""
    if not present.all():
        raise UserInputError(f"label file {source}: split column '{column}' is empty for some users.")
    words = np.char.lower(np.char.strip(np.asarray(values).astype(str)))
    unknown = ~np.isin(words, ("train", "test"))
    if unknown.any():
        raise UserInputError(
            f"label file {source}: split column '{column}' holds '{np.asarray(values)[unknown][0]}'; "
            "expected 'train' or 'test'."
        )
    return words == "test"


def rows_of(ids, wanted):
    """Positions in ``ids`` of every id in ``wanted`` (all must be present), vectorised."""
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids, wanted, sorter=order)]


def split_task_users(present, is_test, *, task, source, max_train_users=None, seed=0):
    """Train and test row indices of the users with a known label.

    Args:
        present: np.ndarray[bool], [num_users], the label is known.
        is_test: np.ndarray[bool], [num_users], the user is a test user.
        max_train_users: keep at most this many train users (a seeded sample).
    Returns:
        (train, test): np.ndarray[int64] row indices, sorted.
    """
    train = np.flatnonzero(present & ~is_test)
    test = np.flatnonzero(present & is_test)
    if max_train_users is not None and len(train) > max_train_users:
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(train, size=max_train_users, replace=False))
    if len(train) == 0 or len(test) == 0:
        raise UserInputError(
            f"label file {source}: task '{task}' has {len(train)} train and {len(test)} test users "
            "with a label; both must be non-zero."
        )
    return train, test


def check_task_labels(y_train, *, task, source, folds=CV_FOLDS, probe=LOGISTIC):
    """Raises UserInputError where the train labels of a task cannot train a probe.

    ``folds`` is the number of CV folds (1: no cross-validation).
    """
    classes, counts = np.unique(y_train, return_counts=True)
    if len(classes) < 2:
        raise UserInputError(
            f"label file {source}: column '{task}' has a single class ('{classes[0]}') among "
            f"the {len(y_train)} train users; a probe needs at least two."
        )
    if len(classes) > MAX_CLASSES:
        raise UserInputError(
            f"label file {source}: column '{task}' has {len(classes)} distinct values among the "
            f"train users (at most {MAX_CLASSES}); probes are classifiers, so bucket it or leave it "
            "out of --tasks."
        )
    if counts.max() < folds:
        raise UserInputError(
            f"label file {source}: column '{task}' has fewer than {folds} train users in every "
            f"class, too few for {folds}-fold selection of C; add users or give a single --C."
        )
    if probe == MLP:
        # The MLP's early stopping holds out a stratified slice of every (CV) train set:
        # each class needs 2 users there, and the slice one user per class.
        fit_rows = len(y_train) * (folds - 1) // folds if folds > 1 else len(y_train)
        rare = classes[np.argmin(counts)]
        if counts.min() < (3 if folds > 1 else 2) or MLP_VALIDATION_FRACTION * fit_rows < len(classes):
            raise UserInputError(
                f"label file {source}: column '{task}' has too few train users per class for the MLP "
                f"probe's early stopping (class '{rare}' has {counts.min()}); use --probe logistic."
            )


def evaluate_task(task, labels, train, test, features, bag=None, *, probe=LOGISTIC,
                  c_grid=DEFAULT_C_GRID, seed=0, folds=CV_FOLDS):
    """Probes every feature matrix on one task, then the TF-IDF and majority baselines.

    Args:
        task: the task (label column) name.
        labels: np.ndarray, [num_users], the task's labels (rows outside
            ``train``/``test`` are ignored).
        train, test: np.ndarray[int] row indices.
        features: {model name: np.ndarray[float32] [num_users, dim]}, rows
            aligned with ``labels``.
        bag: optional scipy.sparse matrix [num_users, vocabulary_size] of word
            counts, rows aligned with ``labels``; None skips the TF-IDF baseline.
    Returns:
        list of ProbeResult: the feature matrices in order, then TF-IDF, then majority.
    """
    y_train, y_test = labels[train], labels[test]
    results = []
    for name, matrix in features.items():
        result = probe_vectors(matrix[train], y_train, matrix[test], y_test,
                               probe=probe, c_grid=c_grid, seed=seed, folds=folds)
        results.append(dataclasses.replace(result, model=name, task=task))
    if bag is not None:
        result = tfidf_baseline(bag[train], y_train, bag[test], y_test, c_grid=c_grid, seed=seed, folds=folds)
        results.append(dataclasses.replace(result, model=TFIDF, task=task))
    results.append(dataclasses.replace(majority_baseline(y_train, y_test), model=MAJORITY, task=task))
    return results


def probe_vectors(x_train, y_train, x_test, y_test, *, probe=LOGISTIC, c_grid=DEFAULT_C_GRID,
                  seed=0, folds=CV_FOLDS):
    """Standardised vectors -> logistic regression (or MLP); C by k-fold CV on the train rows.

    Args:
        x_train: [n_train, dim]; y_train: [n_train]; x_test: [n_test, dim]; y_test: [n_test].
        probe: ``"logistic"`` or ``"mlp"`` (its L2 weight ``alpha`` is ``1 / C``,
            the same penalty per sample as logistic regression's ``C``).
    """
    if probe == LOGISTIC:
        estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        parameter, values = "logisticregression__C", list(c_grid)
    elif probe == MLP:
        # Early stopping on a stratified 10% of the train rows: without it Adam ran to its
        # iteration cap and overfitted (ML-1M age: 14 s and acc 0.45 vs 0.7 s and acc 0.50).
        classifier = MLPClassifier(hidden_layer_sizes=MLP_HIDDEN_UNITS, early_stopping=True,
                                   validation_fraction=MLP_VALIDATION_FRACTION, max_iter=300, random_state=seed)
        estimator = make_pipeline(StandardScaler(), classifier)
        parameter, values = "mlpclassifier__alpha", [1.0 / c for c in c_grid]
    else:
        raise UserInputError(f"--probe must be one of {', '.join(PROBES)}, not '{probe}'.")
    return _select_fit_score(estimator, parameter, values, c_grid, x_train, y_train, x_test, y_test,
                             method=f"probe:{probe}", seed=seed, folds=folds)


def tfidf_baseline(counts_train, y_train, counts_test, y_test, *, c_grid=DEFAULT_C_GRID, seed=0, folds=CV_FOLDS):
    """TF-IDF over bag-of-words counts + logistic regression; C by k-fold CV on the train rows.

    The TF-IDF weights are fitted inside the pipeline, so on train folds only.
    """
    estimator = make_pipeline(TfidfTransformer(), LogisticRegression(max_iter=1000))
    return _select_fit_score(estimator, "logisticregression__C", list(c_grid), c_grid,
                             counts_train, y_train, counts_test, y_test,
                             method="tfidf+logistic", seed=seed, folds=folds)


def lsa_row(dim):
    """The report's row name of LSA vectors of width ``dim``: ``lsa_<dim>``."""
    return f"lsa_{dim}"


def lsa_vectors(counts, dim, seed=0):
    """LSA user vectors: TF-IDF of the word counts reduced to ``dim`` by a truncated SVD.

    The unsupervised anchor of ../shared/data/ml-1m/README.md (Deerwester et
    al., 1990): like our pretraining it reads every user's behaviours and no
    label, so it is fitted on all the rows given, train and test users alike.

    Args:
        counts: scipy.sparse matrix [num_users, vocabulary_size] of word counts.
        dim: the vectors' width; below the vocabulary size.
        seed: seed of the randomised SVD solver.
    Returns:
        np.ndarray[float32] [num_users, dim].
    Raises:
        UserInputError: ``dim`` is not below the vocabulary size.
    """
    if not 0 < dim < counts.shape[1]:
        raise UserInputError(f"--lsa_dim={dim} must be between 1 and the vocabulary size minus one "
                             f"({counts.shape[1] - 1}): an SVD cannot keep more dimensions than words.")
    pipeline = make_pipeline(TfidfTransformer(), TruncatedSVD(n_components=dim, random_state=seed))
    return pipeline.fit_transform(counts).astype(np.float32)


def majority_baseline(y_train, y_test):
    """Predicts the most frequent train class; its scores are the class priors (AUC 0.5)."""
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((len(y_train), 1)), y_train)
    proba = dummy.predict_proba(np.zeros((len(y_test), 1)))
    metrics = classification_metrics(y_test, proba, dummy.classes_)
    return ProbeResult(model=MAJORITY, task="", method=MAJORITY, n_train=len(y_train), n_test=len(y_test),
                       n_classes=len(dummy.classes_), **metrics)


def classification_metrics(y_true, proba, classes):
    """Accuracy, macro-F1 and AUC of class probabilities.

    Args:
        y_true: [n] labels.
        proba: [n, num_classes] probabilities, columns in the order of ``classes``.
        classes: [num_classes] the labels the columns stand for.
    Returns:
        {"accuracy", "macro_f1", "auc"}; ``auc`` is binary ROC AUC for two classes,
        one-vs-rest macro AUC otherwise, and None where fewer than two classes
        of ``classes`` occur in ``y_true``.
    """
    y_true = np.asarray(y_true)
    classes = np.asarray(classes)
    predicted = classes[np.argmax(proba, axis=1)]
    present = np.isin(classes, y_true)
    if present.sum() < 2:
        auc = None
    elif len(classes) == 2:
        auc = roc_auc_score(y_true == classes[1], proba[:, 1])
    elif present.all() and np.isin(y_true, classes).all():
        auc = roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
    else:
        # Some train classes are absent from the test users (or the reverse):
        # one-vs-rest macro AUC over the classes that do occur.
        indicator = label_binarize(y_true, classes=classes)[:, present]
        auc = roc_auc_score(indicator, proba[:, present], average="macro")
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "macro_f1": float(f1_score(y_true, predicted, average="macro", zero_division=0)),
        "auc": None if auc is None else float(auc),
    }


def _select_fit_score(estimator, parameter, values, c_grid, x_train, y_train, x_test, y_test, *,
                      method, seed, folds):
    """Chooses ``parameter`` among ``values`` by CV on the train rows, refits, scores the test rows."""
    n_classes = len(np.unique(y_train))
    scoring = "roc_auc" if n_classes == 2 else "accuracy"
    # One BLAS thread: these fits are many small solves, and threaded BLAS made them
    # up to 50x slower on a loaded 2-core machine (measured: ML-1M age probe 49 s -> 0.9 s).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("always")
        if len(values) == 1:
            estimator.set_params(**{parameter: values[0]}).fit(x_train, y_train)
            best, cv_score = 0, None
        else:
            search = GridSearchCV(
                estimator,
                {parameter: values},
                scoring=scoring,
                cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
                refit=True,
                error_score="raise",
            )
            search.fit(x_train, y_train)
            estimator, best, cv_score = search.best_estimator_, int(search.best_index_), float(search.best_score_)
            if not np.isfinite(cv_score):
                cv_score = None
        metrics = classification_metrics(y_test, estimator.predict_proba(x_test), estimator.classes_)
    notes = sorted({f"{item.category.__name__}: {str(item.message).strip().splitlines()[0]}"
                    for item in caught if not issubclass(item.category, DeprecationWarning)})
    return ProbeResult(model="", task="", method=method, n_train=len(y_train), n_test=len(y_test),
                       n_classes=n_classes, C=float(c_grid[best]), cv_score=cv_score, warnings=notes, **metrics)
