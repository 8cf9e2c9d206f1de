"""Bad inputs and bad flags: one clear sentence naming the file, column, row or flag.

Also the command line: exit status 2, ``error: ...``, no traceback, no output folder.
"""

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from util.errors import UserInputError


def build(tmp_path, **flags):
    settings = dict(
        output_dir=str(tmp_path / "tables"), log_user_column="user", log_order_column="ts",
        log_item_column="item",
    )
    settings.update(flags)
    return build_tables(BuildConfig(**settings), log=lambda line: None)


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.fixture
def good_log(tmp_path):
    return write(tmp_path / "log.csv", "user,ts,item\n1,1,10\n1,2,11\n2,1,10\n")


def assert_fails(tmp_path, pattern, **flags):
    with pytest.raises(UserInputError, match=pattern) as raised:
        build(tmp_path, **flags)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(tmp_path / "tables")
    return str(raised.value)


def test_missing_log_file(tmp_path):
    missing = str(tmp_path / "nowhere.parquet")
    assert_fails(tmp_path, f"behaviour log --log {missing} does not exist", log=missing)


def test_empty_log_file(tmp_path):
    path = write(tmp_path / "log.csv", "")
    assert_fails(tmp_path, f"{path} is empty", log=path)


def test_log_with_header_only(tmp_path):
    path = str(tmp_path / "log.parquet")
    pq.write_table(pa.table({"user": pa.array([], pa.int64()), "ts": pa.array([], pa.int64()),
                             "item": pa.array([], pa.int64())}), path)
    assert_fails(tmp_path, f"behaviour log {path} has no rows", log=path)


def test_missing_column_names_file_flag_and_column(tmp_path, good_log):
    message = assert_fails(tmp_path, "has no column 'when'", log=good_log, log_order_column="when")
    assert good_log in message and "--log_order_column" in message
    assert "its columns are: item, ts, user" in message


def test_wrong_column_type(tmp_path):
    path = write(tmp_path / "log.csv", "user,ts,item\n1,yesterday,10\n1,today,11\n")
    message = assert_fails(tmp_path, r"column 'ts' of .*log.csv has type VARCHAR", log=path)
    assert "--log_order_column needs numbers, dates or timestamps" in message


def test_float_ids_are_refused(tmp_path):
    path = write(tmp_path / "log.csv", "user,ts,item\n1.5,1,10\n")
    assert_fails(tmp_path, r"column 'user' of .*log.csv has type DOUBLE", log=path)


def test_null_value_names_column_and_row(tmp_path):
    path = write(tmp_path / "log.csv", "user,ts,item\n1,1,10\n1,2,11\n,3,12\n")
    assert_fails(tmp_path, r"column 'user' of .*log.csv is empty \(null\) at line 4", log=path)


def test_null_value_in_parquet_names_row(tmp_path):
    path = str(tmp_path / "log.parquet")
    pq.write_table(pa.table({"user": [1, 2, 3], "ts": [1, None, 3], "item": [1, 2, 3]}), path)
    assert_fails(tmp_path, r"column 'ts' of .*log.parquet is empty \(null\) at row 2", log=path)


def test_truncated_parquet(tmp_path):
    good = str(tmp_path / "good.parquet")
    pq.write_table(pa.table({"user": list(range(100)), "ts": list(range(100)), "item": list(range(100))}), good)
    path = tmp_path / "log.parquet"
    path.write_bytes(open(good, "rb").read()[:200])
    assert_fails(tmp_path, f"could not read {path}", log=str(path))


def test_bad_value_late_in_csv_names_line_and_column(tmp_path):
    # Past DuckDB's type-sniffing sample, so it fails while reading, with the line.
    rows = "".join(f"{i},{i},{i}\n" for i in range(30000))
    path = write(tmp_path / "log.csv", "user,ts,item\n" + rows + "7,soon,3\n")
    message = assert_fails(tmp_path, f"could not read {path}", log=path)
    assert "30002" in message and '"ts"' in message


def test_missing_item_table(tmp_path, good_log):
    missing = str(tmp_path / "items.csv")
    assert_fails(tmp_path, f"item table --items {missing} does not exist",
                 log=good_log, items=missing, item_text_column="title")


def test_item_table_missing_column(tmp_path, good_log):
    items = write(tmp_path / "items.csv", "item_id,name\n10,Red apple\n")
    message = assert_fails(tmp_path, "has no column 'title'", log=good_log, items=items,
                           item_text_column="title")
    assert items in message and "--item_text_column" in message


def test_item_table_text_column_must_be_text(tmp_path, good_log):
    items = write(tmp_path / "items.csv", "item_id,title\n10,5\n")
    assert_fails(tmp_path, r"column 'title' of .*items.csv has type BIGINT, but --item_text_column needs strings",
                 log=good_log, items=items, item_text_column="title")


def test_item_table_duplicate_ids(tmp_path, good_log):
    items = write(tmp_path / "items.csv", "item_id,title\n10,a\n11,b\n10,c\n")
    assert_fails(tmp_path, r"column 'item_id' of .*items.csv holds item id 10 more than once",
                 log=good_log, items=items, item_text_column="title")


def test_item_tokens_with_line_breaks(tmp_path, good_log):
    items = str(tmp_path / "items.parquet")
    pq.write_table(pa.table({"item_id": [10], "tags": [["a\nb"]]}), items)
    assert_fails(tmp_path, r"column 'tags' \(--item_tokens_column\) of .*items.parquet holds a token with a line break",
                 log=good_log, items=items, item_tokens_column="tags")


@pytest.mark.parametrize(
    "flags, pattern",
    [
        ({"target_fraction": 1.5}, r"--target_fraction=1.5 must be between 0 and 1"),
        ({"target_fraction": 0.0}, r"--target_fraction=0.0 must be between 0 and 1"),
        ({"num_shards": 0}, r"--num_shards=0 must be at least 1"),
        ({"max_query_per_week": 0}, r"--max_query_per_week=0 must be at least 1"),
        ({"max_words_per_query": -1}, r"--max_words_per_query=-1 must be at least 1"),
        ({"target_length": 0}, r"--target_length=0 must be at least 1"),
        ({"min_count": 0}, r"--min_count=0 must be at least 1"),
        ({"max_vocabulary": 2}, r"--max_vocabulary=2 must be more than 2"),
        ({"format": "csv"}, r"--format=csv is not one of parquet, tfrecord"),
        ({"target_fraction": 0.5, "split_time": "3"}, r"--target_fraction or --split_time, not both"),
        ({"demo": True}, r"give only one source of behaviours; got --demo and --log"),
        ({"items": "x.csv"}, r"--items needs exactly one of --item_text_column or --item_tokens_column"),
        ({"duckdb_memory_limit": "lots"}, r"--duckdb_memory_limit=lots is not a memory size"),
        ({"split_time": "soon"}, r"--split_time=soon is not a value of the log's order column \(type BIGINT\)"),
        ({"output_dir": ""}, r"--output_dir is required"),
    ],
)
def test_bad_flags_name_the_flag(tmp_path, good_log, flags, pattern):
    assert_fails(tmp_path, pattern, **{"log": good_log, **flags})


def test_output_dir_that_is_a_file(tmp_path, good_log):
    target = write(tmp_path / "tables", "not a folder")
    with pytest.raises(UserInputError, match=r"--output_dir=.*tables is a file"):
        build(tmp_path, log=good_log, output_dir=target)


def run_cli(repo_root, *args):
    return subprocess.run(
        [sys.executable, os.path.join("main", "build_tables.py"), *args],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )


def test_cli_missing_file_exits_2_without_traceback(tmp_path, repo_root):
    output = tmp_path / "out"
    result = run_cli(repo_root, f"--log={tmp_path / 'missing.csv'}", f"--output_dir={output}")
    assert result.returncode == 2
    assert result.stderr.startswith("error: behaviour log --log ")
    assert "missing.csv does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_cli_bad_flag_value_exits_2(tmp_path, repo_root):
    output = tmp_path / "out"
    result = run_cli(repo_root, "--demo", "--target_fraction=2", f"--output_dir={output}")
    assert result.returncode == 2
    assert "error: --target_fraction=2.0 must be between 0 and 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_cli_unknown_flag_exits_2(tmp_path, repo_root):
    result = run_cli(repo_root, "--demo", "--shards=3", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2
    assert "unrecognized arguments: --shards=3" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_builds_a_small_demo(tmp_path, repo_root):
    output = tmp_path / "out"
    result = run_cli(repo_root, "--demo", "--demo_users=60", "--num_shards=2", f"--output_dir={output}")
    assert result.returncode == 0, result.stderr
    assert "done in" in result.stdout and "60 training" in result.stdout
    assert sorted(os.listdir(output)) == [
        "inference", "items.txt", "labels.parquet", "manifest.json", "sequences", "train", "vocabulary.txt"]
