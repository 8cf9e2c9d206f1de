"""Shared fixtures: quiet TensorFlow, the repository root, and the shared MovieLens data."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ML1M_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "ml-1m"))

if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture
def ml1m_dir():
    """The shared MovieLens-1M folder; tests using it skip where it is absent."""
    if not os.path.exists(os.path.join(ML1M_DIR, "events.parquet")):
        pytest.skip(f"MovieLens-1M is not present at {ML1M_DIR} (it is never copied into the project)")
    return ML1M_DIR


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for every Spark test; they skip, saying why, without PySpark or Java."""
    pytest.importorskip("pyspark", reason="PySpark is not installed (pip install '.[spark]')")
    from data_dumper import java_runtime, spark_session

    reason = java_runtime.missing_java_reason()
    if reason:
        pytest.skip(f"Spark needs Java: {reason}")
    session = spark_session.start_session("local[2]")
    session.sparkContext.setLogLevel("ERROR")
    # The tests' inputs are tiny: two shuffle partitions halve a build's time.
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


# A tiny NextItNet on a 400-item demo table folder: the backbone the continual tests
# (Conure, TERACON) start their folders from. Built once per test session.
TINY_NEXTITNET = ["--model=nextitnet", "--model_dim=8", "--dilations=1,2", "--batch_size=16",
                  "--max_items_per_user=20", "--max_steps=4", "--snapshot=4", "--log_every=2"]


@pytest.fixture(scope="session")
def tiny_nextitnet(tmp_path_factory):
    """{"root", "tables", "run"}: a demo table folder and a 4-step NextItNet run trained on it."""
    from data_dumper.build_config import BuildConfig
    from data_dumper.build_tables import build_tables
    from main import train

    root = tmp_path_factory.mktemp("tiny_nextitnet")
    tables = str(root / "tables")
    # 400 items (not the demo's 2,000): item heads and softmaxes stay small.
    build_tables(BuildConfig(output_dir=tables, demo=True, demo_users=300, demo_items=400,
                             num_shards=1, max_items_per_user=20), log=lambda line: None)
    run = str(root / "nin")
    assert train.main([f"--tables={tables}", f"--checkpoint_dir={run}", *TINY_NEXTITNET]) == 0
    return {"root": root, "tables": tables, "run": run}
