"""main/evaluate.py end to end: report files, the printed table, and user errors (exit 2, no report)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.report import REPORT_FILES
from contracts.schema import INFERENCE_SCHEMA
from util.cli import run_cli

AGES = (1, 18, 25, 35, 45, 50, 56)
NUM_USERS = 300
DIM = 6


def load_entry_point(repo_root):
    path = os.path.join(repo_root, "main", "evaluate.py")
    spec = importlib.util.spec_from_file_location("evaluate_entry_point", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def workspace(tmp_path):
    """users.dat whose labels are linear in the vectors, model/random vectors, a table folder."""
    rng = np.random.default_rng(0)
    ids = np.arange(1, NUM_USERS + 1).astype(str)
    vectors = rng.normal(size=(NUM_USERS, DIM)).astype(np.float32)
    gender = np.where(vectors[:, 0] > 0.3, "F", "M")
    age = np.asarray(AGES)[np.digitize(vectors[:, 1], [-0.8, 0, 0.8])]
    occupation = np.digitize(vectors[:, 2], [-0.5, 0.5]) * 7
    with open(tmp_path / "users.dat", "w", encoding="latin-1") as handle:
        for row in zip(ids, gender, age, occupation):
            handle.write("::".join(map(str, row)) + "::12345\n")

    def write_vectors(name, matrix):
        folder = tmp_path / name
        folder.mkdir()
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), DIM)
        # Users 1..10 have no vector: evaluation runs on the intersection.
        pq.write_table(pa.table({"id": ids[10:], "embedding": embedding[10:],
                                 "length": pa.array(np.ones(NUM_USERS - 10), pa.int32())}),
                       folder / "part-00000-of-00001.parquet")
        return str(folder)

    history = [[[2 + int(g == "F")], [4 + int(a > 25)]] for g, a in zip(gender, age)]
    (tmp_path / "tables" / "inference").mkdir(parents=True)
    pq.write_table(pa.table({"id": ids, "history": history, "history_length": [2] * NUM_USERS},
                            schema=INFERENCE_SCHEMA),
                   tmp_path / "tables" / "inference" / "part-00000-of-00001.parquet")
    return {
        "root": tmp_path,
        "labels": str(tmp_path / "users.dat"),
        "vectors": write_vectors("vectors", vectors),
        "random": write_vectors("random", rng.normal(size=(NUM_USERS, DIM)).astype(np.float32)),
        "tables": str(tmp_path / "tables"),
        "output": str(tmp_path / "report"),
    }


def flags(workspace, *extra):
    return ["--vectors", workspace["vectors"], "--labels", workspace["labels"], "--output_dir",
            workspace["output"], "--C", "0.1,1", *extra]


def run_in_process(repo_root, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(load_entry_point(repo_root).main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_report_has_a_row_per_model_and_the_probe_beats_chance(repo_root, workspace, capsys):
    argv = flags(workspace, "--name", "sumn", "--baseline_vectors", f"random_encoder={workspace['random']}",
                 "--tables", workspace["tables"])
    status, out, err = run_in_process(repo_root, argv, capsys)
    assert status == 0, err
    assert sorted(os.listdir(workspace["output"])) == sorted(REPORT_FILES)

    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["sumn", "random_encoder", "tfidf_logistic",
                                                         "majority (chance level)"]
    assert out.splitlines()[0].startswith("| model | gender AUC | gender acc | age acc | age macro-F1")
    markdown = open(os.path.join(workspace["output"], "evaluation.md"), encoding="utf-8").read()
    assert all(row in markdown for row in rows) and "train users only" in markdown

    report = json.load(open(os.path.join(workspace["output"], "evaluation.json"), encoding="utf-8"))
    assert report["metadata"]["probe"] == "logistic" and report["metadata"]["date"]
    assert report["metadata"]["users"]["evaluated"] == NUM_USERS - 10
    gender = report["tasks"]["gender"]
    assert gender["headline_metric"] == "auc" and report["tasks"]["age"]["headline_metric"] == "accuracy"
    # Canonical split: 58 of users 11..300 have an id divisible by 5.
    assert (gender["n_train"], gender["n_test"]) == (232, 58)
    assert gender["results"]["sumn"]["auc"] > 0.9 > gender["results"]["random_encoder"]["auc"]
    assert gender["results"]["sumn"]["C"] in (0.1, 1.0)
    for task in ("age", "occupation"):
        results = report["tasks"][task]["results"]
        assert results["sumn"]["accuracy"] > results["majority"]["accuracy"] + 0.2
    with open(os.path.join(workspace["output"], "evaluation.png"), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_lsa_row_is_probed_like_vectors_at_the_asked_width(repo_root, workspace, capsys):
    argv = flags(workspace, "--name", "sumn", "--tables", workspace["tables"], "--lsa_dim", "2")
    status, out, err = run_in_process(repo_root, argv, capsys)
    assert status == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["sumn", "lsa_2", "tfidf_logistic",
                                                         "majority (chance level)"]
    report = json.load(open(os.path.join(workspace["output"], "evaluation.json"), encoding="utf-8"))
    assert "TruncatedSVD to 2 dimensions" in report["metadata"]["inputs"]["lsa_2"]
    # The two words a user holds are its gender and its age bracket, so LSA of them recovers gender.
    gender = report["tasks"]["gender"]["results"]
    assert gender["lsa_2"]["auc"] > 0.9 and gender["lsa_2"]["method"] == "probe:logistic"


def test_without_tables_the_tfidf_baseline_is_skipped_with_a_note(repo_root, workspace, capsys):
    status, out, err = run_in_process(repo_root, flags(workspace, "--tasks", "gender"), capsys)
    assert status == 0
    assert "--tables not given" in err and "tfidf_logistic" not in out


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_vectors", r"--vectors: user-vector path .*nowhere does not exist"),
        ("missing_embedding_column", r"--vectors: user-vector file .*part-0\.parquet has no column 'embedding'"),
        ("nan_vectors", r"--vectors: user-vector file .*part-0\.parquet: column 'embedding' has NaN"),
        ("baseline_dimension_differs", r"--baseline_vectors random_encoder: user-vector file .*b\.parquet: column 'embedding' has dimension 3, but .*a\.parquet has 2"),
        ("unknown_task", r"--tasks: label file .*users\.dat has no column 'salary'"),
        ("missing_labels", r"--labels: label file .*absent\.dat does not exist"),
        ("no_common_users", r"no user id of user-vector file .*part-00000-of-00001\.parquet \(column 'id'\) appears in label file .*labels\.csv \(column 'id'\)"),
        ("one_class_in_train", r"label file .*labels\.csv: column 'country' has a single class \('NL'\)"),
        ("non_integer_ids_for_canonical_split", r"--split canonical needs integer user ids, but label file .*labels\.csv \(column 'id'\) has user id 'u1"),
        ("bad_split_column_value", r"label file .*labels\.csv: split column 'fold' holds 'dev'"),
        ("lsa_without_tables", r"--lsa_dim=2 needs --tables"),
        ("lsa_wider_than_vocabulary", r"--lsa_dim=40 must be between 1 and the vocabulary size minus one \(5\)"),
    ],
)
def test_bad_input_exits_2_naming_file_and_column_and_writes_no_report(repo_root, workspace, capsys, case, pattern):
    root = workspace["root"]
    argv = flags(workspace)
    if case == "missing_vectors":
        argv[1] = str(root / "nowhere")
    elif case in ("missing_embedding_column", "nan_vectors"):
        (root / "bad").mkdir()
        vectors = [[1.0, float("nan")]] * 3 if case == "nan_vectors" else [[1.0, 2.0]] * 3
        column = "embedding" if case == "nan_vectors" else "vector"
        pq.write_table(pa.table({"id": ["11", "12", "13"], column: pa.array(vectors, pa.list_(pa.float32(), 2))}),
                       root / "bad" / "part-0.parquet")
        argv[1] = str(root / "bad")
    elif case == "baseline_dimension_differs":
        (root / "b").mkdir()
        pq.write_table(pa.table({"id": ["11"], "embedding": pa.array([[1.0, 2.0]], pa.list_(pa.float32(), 2))}),
                       root / "b" / "a.parquet")
        pq.write_table(pa.table({"id": ["12"], "embedding": pa.array([[1.0, 2.0, 3.0]], pa.list_(pa.float32(), 3))}),
                       root / "b" / "b.parquet")
        argv += ["--baseline_vectors", f"random_encoder={root / 'b'}"]
    elif case == "unknown_task":
        argv += ["--tasks", "gender,salary"]
    elif case == "missing_labels":
        argv[3] = str(root / "absent.dat")
    elif case == "lsa_without_tables":
        argv += ["--lsa_dim", "2"]
    elif case == "lsa_wider_than_vocabulary":
        argv += ["--lsa_dim", "40", "--tables", workspace["tables"]]
    elif case == "no_common_users":
        (root / "labels.csv").write_text("id,segment\n" + "".join(f"x{i},{i % 2}\n" for i in range(20)))
        argv[3] = str(root / "labels.csv")
    else:
        lines = []
        for user_id in range(11, 111):
            name = f"u{user_id}" if case == "non_integer_ids_for_canonical_split" else str(user_id)
            country = "NL" if user_id % 5 else "BE"
            fold = "dev" if case == "bad_split_column_value" and user_id == 50 else ("test" if user_id % 5 == 0 else "train")
            lines.append(f"{name},{country},{fold}\n")
        (root / "labels.csv").write_text("id,country,fold\n" + "".join(lines))
        argv[3] = str(root / "labels.csv")
        argv += ["--tasks", "country"]
        if case == "non_integer_ids_for_canonical_split":
            argv[1] = _vectors_with_ids(root, [f"u{i}" for i in range(11, 111)])
        if case == "bad_split_column_value":
            argv += ["--split", "column:fold"]
    status, out, err = run_in_process(repo_root, argv, capsys)
    assert status == 2
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in err
    assert re.search(pattern, err), err
    assert not os.path.exists(workspace["output"])


def _vectors_with_ids(root, ids):
    folder = root / "string_ids"
    folder.mkdir()
    embedding = pa.array(np.random.default_rng(0).normal(size=(len(ids), 2)).tolist(), pa.list_(pa.float32(), 2))
    pq.write_table(pa.table({"id": ids, "embedding": embedding}), folder / "part-0.parquet")
    return str(folder)


def test_command_line_prints_the_table_and_reports_errors_without_traceback(repo_root, workspace):
    script = os.path.join(repo_root, "main", "evaluate.py")
    environment = dict(os.environ, PYTHONPATH=repo_root)
    done = subprocess.run([sys.executable, script, *flags(workspace, "--tasks", "gender")],
                          capture_output=True, text=True, env=environment, cwd=workspace["root"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "| model | gender AUC | gender acc |"
    # Only the chance level beside the model: the last line says so instead of margins.
    assert done.stdout.splitlines()[-1] == (
        "look at: the model row against the chance level (no other baseline was probed).")
    assert sorted(os.listdir(workspace["output"])) == sorted(REPORT_FILES)

    failed = subprocess.run([sys.executable, script, *flags(workspace, "--tasks", "gender,salary"),
                             "--output_dir", str(workspace["root"] / "second")],
                            capture_output=True, text=True, env=environment, cwd=workspace["root"])
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        f"error: --tasks: label file {workspace['labels']} has no column 'salary' "
        "(label columns: gender, age, occupation, zip)."
    )
    assert not os.path.exists(workspace["root"] / "second")


def test_comparison_line_gives_the_model_margin_over_every_baseline():
    from evaluation.report import build_report, comparison_line

    results = [
        {"model": model, "task": task, "n_classes": classes, "method": "probe", "accuracy": accuracy,
         "macro_f1": accuracy, "auc": auc, "n_train": 8, "n_test": 2, "C": 1.0, "cv_score": None,
         "warnings": []}
        for model, task, classes, accuracy, auc in [
            ("sumn", "segment", 2, 0.8, 0.90), ("tfidf_logistic", "segment", 2, 0.7, 0.85),
            ("majority", "segment", 2, 0.5, 0.5), ("sumn", "age", 3, 0.60, 0.7),
            ("tfidf_logistic", "age", 3, 0.65, 0.7), ("majority", "age", 3, 0.4, 0.5)]
    ]
    line = comparison_line(build_report(results, {}), "sumn")
    assert line == ("look at: sumn minus each baseline on each task's headline metric (positive: sumn is "
                    "better): segment AUC +0.050 vs tfidf_logistic; age acc -0.050 vs tfidf_logistic.\n")
