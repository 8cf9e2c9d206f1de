"""Table building: DuckDB against Spark local[2], on MovieLens-1M and on logs 10x and 100x its size.

    python bench/tables.py                              # ML-1M, 10x, 100x; report in bench/results/tables.md
    python bench/tables.py --scales=1,10 --engines=spark --spark_driver_memory=6g
    python bench/tables.py --max_minutes=5 --json

Each build is ``main/build_tables.py`` run as a user runs it, in its own
process, one at a time:

  * scale 1 is MovieLens-1M itself (``--movielens=../shared/data/ml-1m``:
    movie ids, genres, title words and years as words);
  * scale k > 1 is a synthetic log made at run time under ``--work_dir``
    (never committed): ML-1M's ratings copied k times, each copy's users under
    new ids, read as a generic Parquet log (``--log``) with an item table
    holding every movie's ML-1M words (``--items``), so a behaviour has the
    same words at every scale.

Reported per build: wall seconds (JVM start included for Spark), behaviours
per second, and the peak resident memory of the build's process tree, sampled
every 0.2 s from /proc: all of it, and the JVM's part (Spark's driver, which in
local mode runs the executors too). No build may run past ``--max_minutes``:
one that does is stopped. One is not even started when the same engine's
previous scale, scaled linearly, says it would take over 3x that long (the
linear estimate overshoots a lot: Spark's start-up and per-stage costs, half
a minute on two idle cores and some minutes on busy ones, do not grow with
the log); the report says which were skipped and why.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq

from common import REPO_ROOT, WORK_DIR, print_json, run_description

DEFAULT_ML1M = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "ml-1m"))
DEFAULT_REPORT = os.path.join(REPO_ROOT, "bench", "results", "tables.md")
SAMPLE_SECONDS = 0.2


def parse_flags(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movielens", default=DEFAULT_ML1M,
                        help="the MovieLens-1M folder (events layout) (default: %(default)s)")
    parser.add_argument("--scales", default="1,10,100",
                        help="log sizes as multiples of ML-1M, comma-separated (default: %(default)s)")
    parser.add_argument("--engines", default="duckdb,spark",
                        help="engines to compare, comma-separated (default: %(default)s)")
    parser.add_argument("--spark_master", default="local[2]",
                        help="Spark master of the Spark builds (default: %(default)s)")
    parser.add_argument("--spark_driver_memory", default="4g",
                        help="Spark driver memory; in local mode it holds the executors too "
                             "(default: %(default)s, the same as the DuckDB limit)")
    parser.add_argument("--duckdb_memory_limit", default="4GB",
                        help="DuckDB memory limit of the DuckDB builds (default: %(default)s)")
    parser.add_argument("--num_shards", type=int, default=8,
                        help="shards per table in every build (default: %(default)s)")
    parser.add_argument("--max_minutes", type=float, default=20.0,
                        help="longest a single build may run, in minutes (default: %(default)s)")
    parser.add_argument("--work_dir", default=os.path.join(WORK_DIR, "tables"),
                        help="where the synthetic logs and the tables go (default: %(default)s)")
    parser.add_argument("--report", default=DEFAULT_REPORT,
                        help="Markdown report to write (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    return parser.parse_args(argv)


def write_synthetic_log(movielens, scale, folder):
    """ML-1M's ratings copied ``scale`` times under new user ids, plus ML-1M's item words.

    Returns:
      ``(log path, items path, number of behaviours)``; files already there are reused.
    """
    os.makedirs(folder, exist_ok=True)
    log_path = os.path.join(folder, f"log_x{scale}.parquet")
    items_path = os.path.join(folder, "items.parquet")
    events = pq.read_table(os.path.join(movielens, "events.parquet"))
    if not os.path.exists(items_path):
        _write_item_words(movielens, items_path)
    if not os.path.exists(log_path):
        users = events["user_id"].to_numpy()
        user_stride = int(users.max()) + 1
        temporary = log_path + ".tmp"
        with pq.ParquetWriter(temporary, pa.schema([
                ("user_id", pa.int64()), ("position", pa.int32()), ("item_id", pa.int64())])) as writer:
            for copy in range(scale):
                writer.write_table(pa.table({
                    "user_id": users + copy * user_stride,
                    "position": events["seq_pos"],
                    "item_id": events["item_id"],
                }))
        os.replace(temporary, log_path)
    return log_path, items_path, events.num_rows * scale


def _write_item_words(movielens, path):
    """Every movie's words as the MovieLens reader makes them (genres, title words, year)."""
    from data_dumper import behaviour_log, duckdb_session, movielens as movielens_reader

    with duckdb_session.duckdb_connection() as con:
        movielens_reader.load_movielens(con, movielens)
        table = con.sql(
            f"SELECT CAST(item_key AS BIGINT) AS item_id, words FROM {behaviour_log.ITEM_TEXT_TABLE}"
        ).to_arrow_table()
    pq.write_table(table, path)


def _descendants(pid):
    """``pid`` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    queue.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def _rss_bytes(pid):
    """(resident bytes, whether the process is a JVM) of one process, or (0, False) once gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            rss = next((int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:")), 0)
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().split(b"\0")[0]
        return rss, os.path.basename(command) == b"java"
    except OSError:
        return 0, False


class PeakMemory:
    """Samples the resident memory of a process tree until stopped; keeps the peaks."""

    def __init__(self, pid):
        self.pid, self.total, self.jvm = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.is_set():
            total = jvm = 0
            for pid in _descendants(self.pid):
                rss, is_jvm = _rss_bytes(pid)
                total += rss
                jvm += rss if is_jvm else 0
            self.total, self.jvm = max(self.total, total), max(self.jvm, jvm)
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self):
        self._stop.set()
        self._thread.join()


def run_build(arguments, max_seconds):
    """Runs main/build_tables.py; returns (seconds or None if stopped, peak total, peak JVM, stdout)."""
    command = [sys.executable, os.path.join(REPO_ROOT, "main", "build_tables.py"), *arguments]
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment, start_new_session=True)
    memory = PeakMemory(process.pid)
    try:
        stdout, stderr = process.communicate(timeout=max_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        memory.stop()
        return None, memory.total, memory.jvm, ""
    seconds = time.perf_counter() - started
    memory.stop()
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(command)}\n{stderr[-3000:]}")
    return seconds, memory.total, memory.jvm, stdout


def engine_flags(engine, flags):
    if engine == "spark":
        return ["--engine=spark", f"--spark_master={flags.spark_master}",
                f"--spark_driver_memory={flags.spark_driver_memory}"]
    return ["--engine=duckdb", f"--duckdb_memory_limit={flags.duckdb_memory_limit}"]


def source_flags(flags, scale):
    """The build's source flags and its number of behaviours."""
    if scale == 1:
        events = pq.ParquetFile(os.path.join(flags.movielens, "events.parquet")).metadata.num_rows
        return [f"--movielens={flags.movielens}"], events
    log_path, items_path, events = write_synthetic_log(
        flags.movielens, scale, os.path.join(flags.work_dir, "logs"))
    return [f"--log={log_path}", "--log_order_column=position", f"--items={items_path}",
            "--item_tokens_column=words"], events


def measure(flags):
    scales = [int(scale) for scale in flags.scales.split(",")]
    engines = flags.engines.split(",")
    max_seconds = flags.max_minutes * 60
    results, spent = [], {}
    previous = {}  # engine -> (scale, seconds) of its last finished build
    for scale in scales:
        sources, events = source_flags(flags, scale)
        for engine in engines:
            row = {"scale": scale, "engine": engine, "events": events}
            if engine in previous:
                earlier_scale, earlier_seconds = previous[engine]
                estimate = earlier_seconds * scale / earlier_scale
                if estimate > 3 * max_seconds:
                    row["skipped"] = (f"estimated {estimate / 60:.0f} min from the {earlier_scale}x build "
                                      f"({earlier_seconds / 60:.1f} min), over --max_minutes={flags.max_minutes:g}")
                    print(f"{engine} x{scale}: {row['skipped']}", flush=True)
                    results.append(row)
                    continue
            output = os.path.join(flags.work_dir, f"{engine}_x{scale}")
            print(f"{engine} x{scale}: building {events:,} behaviours", flush=True)
            seconds, peak, jvm, stdout = run_build(
                [*sources, *engine_flags(engine, flags), f"--num_shards={flags.num_shards}",
                 f"--output_dir={output}", "--overwrite"], max_seconds)
            row.update(peak_bytes=peak, jvm_peak_bytes=jvm)
            if seconds is None:
                row["skipped"] = f"stopped after --max_minutes={flags.max_minutes:g}"
                spent[f"{engine} x{scale}"] = max_seconds
            else:
                row.update(seconds=seconds, events_per_second=events / seconds)
                previous[engine] = (scale, seconds)
                spent[f"{engine} x{scale}"] = seconds
            print(f"  {row}", flush=True)
            results.append(row)
    return results, spent


def _gigabytes(count):
    return f"{count / 2**30:.2f}"


def report_lines(flags, results, spent):
    lines = [
        "# Table building: DuckDB vs Spark local[2]",
        "",
        run_description(spent),
        f"Every build: `main/build_tables.py --num_shards={flags.num_shards}`, default windows "
        f"(20% target, 900 behaviours, 24 words), Parquet. DuckDB with "
        f"`--duckdb_memory_limit={flags.duckdb_memory_limit}`; Spark with "
        f"`--spark_master={flags.spark_master} --spark_driver_memory={flags.spark_driver_memory}`. "
        "Scale 1 is ML-1M read with `--movielens`; scale k is ML-1M's ratings copied k times "
        "under new user ids, read with `--log` and an item table of ML-1M's words.",
        "Peak memory is the resident memory of the build's whole process tree (Spark: the Python "
        "driver, the JVM and its Python workers), sampled every 0.2 s; the JVM column is its part.",
        "",
        "| scale | behaviours | engine | seconds | behaviours/s | peak memory (GiB) | of which JVM (GiB) |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in results:
        if "seconds" in row:
            timing = f"{row['seconds']:.0f} | {row['events_per_second']:,.0f}"
        else:
            timing = f"- | {row['skipped']}"
        memory = (f"{_gigabytes(row['peak_bytes'])} | {_gigabytes(row['jvm_peak_bytes'])}"
                  if "peak_bytes" in row else "- | -")
        lines.append(f"| {row['scale']}x | {row['events']:,} | {row['engine']} | {timing} | {memory} |")
    lines.append("")
    by_scale = {}
    for row in results:
        if "seconds" in row:
            by_scale.setdefault(row["scale"], {})[row["engine"]] = row["seconds"]
    ratios = [f"{scale}x: Spark takes {times['spark'] / times['duckdb']:.1f}x DuckDB's time"
              for scale, times in sorted(by_scale.items()) if {"spark", "duckdb"} <= set(times)]
    if ratios:
        lines += ["Spark / DuckDB time, same machine: " + "; ".join(ratios) + ".", ""]
    return lines


def main(argv=None):
    flags = parse_flags(argv)
    results, spent = measure(flags)
    lines = report_lines(flags, results, spent)
    os.makedirs(os.path.dirname(flags.report), exist_ok=True)
    with open(flags.report, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"wrote {flags.report}")
    if flags.json:
        print_json({"results": results, "seconds": spent})


if __name__ == "__main__":
    main()
