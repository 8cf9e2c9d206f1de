"""``--engine=spark`` writes the tables ``--engine=duckdb`` writes, and fails the same way on bad input.

Every build here shares one local[2] SparkSession (the ``spark`` fixture), and
inputs are tiny, so the file costs well under a minute. The MovieLens-1M
comparison is marked ``ml1m``.
"""

import json
import os
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import schema
from data_dumper import spark_session, spark_shard_writer
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from test_build_tables import write_log
from util.errors import UserInputError

pytestmark = pytest.mark.spark

TABLES = (
    (schema.TRAIN_SUBDIR, schema.TRAINING_SCHEMA),
    (schema.INFERENCE_SUBDIR, schema.INFERENCE_SCHEMA),
    (schema.SEQUENCES_SUBDIR, schema.SEQUENCE_SCHEMA),
)
# Manifest entries that name the engine (or the folder), the only ones allowed to differ.
ENGINE_KEYS = ("engine", "engine_version")
ENGINE_FLAGS = ("engine", "spark_master", "spark_driver_memory", "output_dir")


def build_both(tmp_path, **flags):
    """Builds the same tables with DuckDB and with Spark; returns both folders and manifests."""
    built = {}
    for engine in ("duckdb", "spark"):
        folder = str(tmp_path / engine)
        manifest = build_tables(
            BuildConfig(output_dir=folder, engine=engine, **flags), log=lambda line: None
        )
        built[engine] = (folder, manifest)
    return built


def without_engine(manifest):
    manifest = {key: value for key, value in manifest.items() if key not in ENGINE_KEYS}
    manifest["flags"] = {
        key: value for key, value in manifest["flags"].items() if key not in ENGINE_FLAGS
    }
    return manifest


def assert_same_tables(built):
    """Same files, vocabulary, item index, labels, manifest (but the engine) and shard rows."""
    (duck, duck_manifest), (spark, spark_manifest) = built["duckdb"], built["spark"]
    assert spark_manifest["engine"] == "spark" and duck_manifest["engine"] == "duckdb"
    assert without_engine(spark_manifest) == without_engine(duck_manifest)
    with open(os.path.join(spark, schema.MANIFEST_FILE)) as handle:
        assert json.load(handle) == spark_manifest
    assert sorted(os.listdir(spark)) == sorted(os.listdir(duck))
    for name in (schema.VOCABULARY_FILE, schema.ITEM_INDEX_FILE):
        with open(os.path.join(spark, name), "rb") as ours, open(os.path.join(duck, name), "rb") as theirs:
            assert ours.read() == theirs.read(), name
    if duck_manifest["labels_file"]:
        assert pq.read_table(os.path.join(spark, schema.LABELS_FILE)).equals(
            pq.read_table(os.path.join(duck, schema.LABELS_FILE)))
    for subdir, table_schema in TABLES:
        assert sorted(os.listdir(os.path.join(spark, subdir))) == [
            os.path.basename(path) for path in spark_manifest["files"][subdir]]
        for path in spark_manifest["files"][subdir]:
            if spark_manifest["format"] == schema.PARQUET:
                assert pq.read_schema(os.path.join(spark, path)).equals(table_schema), path
                ours, theirs = pq.read_table(os.path.join(spark, path)), pq.read_table(os.path.join(duck, path))
                assert ours.equals(theirs), path  # same rows in the same order
            else:
                with open(os.path.join(spark, path), "rb") as ours, open(os.path.join(duck, path), "rb") as theirs:
                    assert ours.read() == theirs.read(), path


def test_demo_tables_are_identical_and_load(spark, tmp_path):
    built = build_both(tmp_path, demo=True, demo_users=60, demo_items=40, num_shards=3)
    assert_same_tables(built)
    assert built["spark"][1]["num_training_users"] == 60

    # The loaders read Spark's folder as they are.
    from data_loader.dataset import make_dataset
    from data_loader.reader_options import ReaderOptions
    from data_loader.table_files import resolve_table_files
    from data_loader.validation import validate_table

    table = resolve_table_files(built["spark"][0])
    assert validate_table(table, with_target=True, vocabulary_size=table.vocabulary_size) == 60
    ids = [i for batch in make_dataset(table, ReaderOptions(batch_size=64)) for i in batch["id"].numpy()]
    assert sorted(i.decode() for i in ids) == sorted(str(user) for user in range(1, 61))


def random_log(folder, seed):
    """A small random log and item table, with ties in time, repeated items and unrated items."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "Ünïcode", "日本"]
    item_text = {item: " ".join(rng.choices(words, k=rng.randint(0, 5))) for item in range(30)}
    events = [(rng.randint(1, 25), rng.randint(0, 40), rng.randint(0, 34)) for _ in range(400)]
    return write_log(folder, events=events, item_text=item_text)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(dict(target_fraction=0.3, max_query_per_week=6, max_words_per_query=4,
                          target_length=5, min_count=2, max_items_per_user=3), id="fraction"),
        pytest.param(dict(split_time="20", max_vocabulary=9, format=schema.TFRECORD), id="time-tfrecord"),
    ],
)
def test_generic_logs_are_identical(spark, tmp_path, flags):
    log_path, items_path = random_log(str(tmp_path), seed=len(flags))
    built = build_both(
        tmp_path, log=log_path, log_user_column="user", log_order_column="ts",
        log_item_column="item", items=items_path, item_id_column="id", item_text_column="title",
        num_shards=4, **flags,
    )
    assert_same_tables(built)


def test_csv_log_with_string_ids_and_token_lists_is_identical(spark, tmp_path):
    (tmp_path / "log.csv").write_text(
        "u,t,i\nann,3,b\nann,1,a\nann,2,c\nbob,1,a\nbob,1,c\nbob,5,a\ncy,1,b\n"
    )
    (tmp_path / "items.csv").write_text("item,tags\na,Rock| pop \nb,\nc,jazz|rock|\n")
    built = build_both(
        tmp_path, log=str(tmp_path / "log.csv"), log_user_column="u", log_order_column="t",
        log_item_column="i", items=str(tmp_path / "items.csv"), item_id_column="item",
        item_tokens_column="tags", target_fraction=0.34, num_shards=2,
    )
    assert_same_tables(built)


def test_both_dialects_quote_any_text_and_name(spark):
    import duckdb

    from data_dumper.sql_dialect import DUCKDB, SPARK

    text = "it's a \\ backslash, \\' an escaped quote, \\n no newline, 'quoted' and \"double\""
    name = 'we`ird "col" name'
    con = duckdb.connect()
    duck = con.execute(f"SELECT {DUCKDB.string(text)} AS {DUCKDB.name_of(name)}")
    assert duck.fetchone()[0] == text and duck.description[0][0] == name
    row = spark.sql(f"SELECT {SPARK.string(text)} AS {SPARK.name_of(name)}").first()
    assert row[0] == text and row.asDict() == {name: text}


def build_spark(tmp_path, **flags):
    settings = dict(output_dir=str(tmp_path / "tables"), engine="spark", log_user_column="user",
                    log_order_column="ts", log_item_column="item")
    settings.update(flags)
    return build_tables(BuildConfig(**settings), log=lambda line: None)


def assert_fails(tmp_path, pattern, **flags):
    with pytest.raises(UserInputError, match=pattern) as raised:
        build_spark(tmp_path, **flags)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(tmp_path / "tables")


@pytest.mark.parametrize(
    "text, flags, pattern",
    [
        ("user,ts,item\n1,1,10\n", {"log_order_column": "when"},
         r"log.csv has no column 'when' \(named by --log_order_column\); its columns are: item, ts, user"),
        ("user,ts,item\n1,soon,10\n", {},
         r"column 'ts' of .*log.csv has type string, but --log_order_column needs numbers, dates"),
        ("user,ts,item\n1,1,10\n,2,11\n", {}, r"column 'user' of .*log.csv is empty \(null\) in 1 of its rows"),
        ("", {}, r"behaviour log --log .*log.csv is empty"),
    ],
    ids=["missing-column", "bad-type", "null", "empty-file"],
)
def test_bad_logs_fail_in_one_line_naming_the_column(spark, tmp_path, text, flags, pattern):
    (tmp_path / "log.csv").write_text(text)
    assert_fails(tmp_path, pattern, log=str(tmp_path / "log.csv"), **flags)


def test_log_without_rows(spark, tmp_path):
    path = str(tmp_path / "log.parquet")
    pq.write_table(pa.table({"user": pa.array([], pa.int64()), "ts": pa.array([], pa.int64()),
                             "item": pa.array([], pa.int64())}), path)
    assert_fails(tmp_path, r"behaviour log .*log.parquet has no rows", log=path)


def test_missing_and_unreadable_logs(spark, tmp_path):
    assert_fails(tmp_path, r"behaviour log --log .*nowhere.parquet does not exist",
                 log=str(tmp_path / "nowhere.parquet"))
    good = str(tmp_path / "good.parquet")
    pq.write_table(pa.table({"user": list(range(100)), "ts": list(range(100)), "item": list(range(100))}), good)
    (tmp_path / "log.parquet").write_bytes(open(good, "rb").read()[:200])
    assert_fails(tmp_path, r"could not read .*log.parquet", log=str(tmp_path / "log.parquet"))


def test_split_time_of_the_wrong_type_names_the_flag(spark, tmp_path):
    log_path, _ = write_log(str(tmp_path))
    assert_fails(tmp_path, r"--split_time=soon is not a value of the log's order column \(type bigint\)",
                 log=log_path, split_time="soon")


def test_a_failed_spark_write_leaves_no_output(spark, tmp_path, monkeypatch):
    log_path, items_path = write_log(str(tmp_path))
    real = spark_session.SparkTables.write_table_shards
    calls = []

    def fails_on_the_second_table(self, *args):
        calls.append(real(self, *args))  # the training table's shards are really written
        if len(calls) == 2:
            raise OSError("disk full")
        return calls[-1]

    monkeypatch.setattr(spark_session.SparkTables, "write_table_shards", fails_on_the_second_table)
    with pytest.raises(OSError, match="disk full"):
        build_spark(tmp_path, log=log_path)
    assert sorted(os.listdir(tmp_path)) == ["items.parquet", "log.parquet"]


def test_a_task_that_fails_mid_shard_leaves_only_finished_shards(tmp_path):
    """Task commit: a shard appears complete or not at all (no Spark needed: this is the task's code)."""
    rows = pa.RecordBatch.from_pydict(
        {schema.ID: ["1", "2", "3"], schema.ITEMS: [[3], [4], [5]], schema.ITEMS_LENGTH: [1, 1, 1],
         schema.TARGET_ITEMS: [[], [3], []], "shard": [0, 1, 1], "user_rank": [0, 1, 3]},
    )

    def batches():
        yield rows.slice(0, 2)  # shard 0 complete, shard 1 begun
        raise RuntimeError("executor lost")

    reports = spark_shard_writer.write_partition(
        batches(), schema.SEQUENCE_SCHEMA, str(tmp_path), 2, schema.PARQUET)
    with pytest.raises(RuntimeError, match="executor lost"):
        list(reports)
    assert os.listdir(tmp_path) == ["part-00000-of-00002.parquet"]
    assert pq.read_table(tmp_path / "part-00000-of-00002.parquet")[schema.ID].to_pylist() == ["1"]


def test_entry_point_builds_the_demo_on_spark(spark, tmp_path, capsys):
    """main/build_tables.py's flags reach the Spark engine (in this process: one JVM is enough)."""
    from main.build_tables import main

    output = tmp_path / "tables_spark"
    assert main(["--engine=spark", "--spark_master=local[2]", "--demo", "--demo_users=40",
                 "--num_shards=2", f"--output_dir={output}"]) == 0
    printed = capsys.readouterr().out
    assert "with spark" in printed and "40 training" in printed
    with open(output / schema.MANIFEST_FILE) as handle:
        manifest = json.load(handle)
    assert manifest["engine"] == "spark" and manifest["flags"]["spark_master"] == "local[2]"


def test_cluster_executors_get_the_drivers_code():
    """Outside local mode the package travels with the job; the zip must hold what the writer imports."""
    import zipfile

    with zipfile.ZipFile(spark_session.package_archive()) as archive:
        names = set(archive.namelist())
    assert {"data_dumper/spark_shard_writer.py", "data_dumper/table_writer.py", "util/atomic.py"} <= names
    assert not any(name.startswith("tests/") for name in names)


def run_cli(repo_root, *args, env=None):
    return subprocess.run(
        [sys.executable, os.path.join("main", "build_tables.py"), *args],
        cwd=repo_root, capture_output=True, text=True, timeout=300, env=env,
    )


def test_cli_without_java_says_how_to_install_it(tmp_path, repo_root):
    pytest.importorskip("pyspark", reason="PySpark is not installed (pip install '.[spark]')")
    env = dict(os.environ, JAVA_HOME=str(tmp_path / "no-java"))
    result = run_cli(repo_root, "--engine=spark", "--demo", f"--output_dir={tmp_path / 'out'}", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --engine=spark needs Java: no Java runtime was found in JAVA_HOME")
    assert "apt-get install openjdk-17-jre-headless" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.fixture
def ml1m_sample(tmp_path, ml1m_dir):
    """Every 20th user of MovieLens-1M (about 300 users, 50k ratings), in the events layout.

    The movie and user files are linked, not copied; the sample lives in the test's tmp folder.
    """
    folder = tmp_path / "ml-1m-sample"
    folder.mkdir()
    events = pq.read_table(os.path.join(ml1m_dir, "events.parquet"))
    every_20th = events["user_id"].to_numpy() % 20 == 0
    pq.write_table(events.filter(pa.array(every_20th)), folder / "events.parquet")
    for name in ("users.dat", "movies.dat"):
        os.symlink(os.path.join(ml1m_dir, name), folder / name)
    return folder


@pytest.mark.ml1m
def test_movielens_1m_sample_tables_are_identical(spark, tmp_path, ml1m_sample):
    built = build_both(tmp_path, movielens=str(ml1m_sample), num_shards=4)
    assert 200 < built["spark"][1]["num_users"] < 400
    assert_same_tables(built)


@pytest.mark.ml1m
@pytest.mark.slow
def test_movielens_1m_tables_are_identical(spark, tmp_path, ml1m_dir):
    built = build_both(tmp_path, movielens=ml1m_dir, num_shards=4)
    assert built["spark"][1]["num_events"] == built["duckdb"][1]["num_events"] > 900_000
    assert_same_tables(built)
