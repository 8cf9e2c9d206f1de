"""What the benchmark scripts share: quiet TensorFlow, repeated timing, and output.

The machines these run on are shared and noisy, so every script measures a
thing and its baseline in the same process, repeats both, and reports the
median and the ratio of medians (DESIGN.md, "Performance principles").
"""

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK_DIR = os.path.join(REPO_ROOT, "bench", "work")  # git-ignored

if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def median_seconds(run, repeats):
    """Runs ``run()`` ``repeats`` times; returns (median seconds, every time in seconds)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def print_table(header, rows):
    """Prints rows (lists of str) under a header as aligned columns."""
    widths = [max(len(str(row[index])) for row in [header, *rows]) for index in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)))


def print_json(payload):
    """One JSON document on stdout (for ``--json``)."""
    print(json.dumps(payload, indent=2, sort_keys=True))


def command_line(command):
    """``command`` (a list of arguments) as one shell line."""
    return " ".join(shlex.quote(part) for part in command)


def run_command(command, log):
    """Runs one CLI command as a user would (no GPU, quiet TF); returns (seconds, stdout).

    The command line is appended to ``log`` (the report lists them); a failure
    exits with the command and the tail of its stderr.
    """
    log.append(command_line(command))
    started = time.perf_counter()
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {log[-1]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def run_description(seconds):
    """"Run <date> on <machine> ...; N minutes in all." for a report's first lines."""
    total = sum(seconds.values())
    return (f"Run {datetime.date.today().isoformat()} on {platform.machine()} with "
            f"{os.cpu_count()} CPU cores ({platform.processor() or 'CPU'}), "
            f"Python {platform.python_version()}; {total / 60:.1f} minutes in all.")


def write_markdown_report(path, lines, seconds, commands):
    """Writes a Markdown report: ``lines``, then the time per stage and the commands run."""
    lines = [
        *lines,
        "## Time per stage (seconds)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {stage} | {value:.0f} |" for stage, value in seconds.items()],
        "",
        "## Commands",
        "",
        "```",
        *commands,
        "```",
        "",
    ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {path}", flush=True)


def build_and_pretrain_nextitnet(flags, tables, pretrained, commands, seconds, table_items=0):
    """ML-1M tables from ``flags.data`` into ``tables``, then a NextItNet run in ``pretrained``.

    The first stages of the PeterRec and continual benchmarks; ``flags`` carries
    ``data``, ``max_items_per_user``, ``steps``, ``batch_size``, ``model_dim``
    and ``dilations``. The tables keep ``table_items`` items per user where that
    is more (for tasks that read a longer history than pretraining). Each command
    is logged in ``commands``, its time in ``seconds``.
    """
    python = sys.executable
    print(f"building tables into {tables}", flush=True)
    seconds["build tables"], _ = run_command(
        [python, "main/build_tables.py", f"--movielens={flags.data}", f"--output_dir={tables}",
         f"--max_items_per_user={max(flags.max_items_per_user, table_items)}", "--overwrite"],
        commands)
    print(f"pretraining NextItNet for {flags.steps} steps", flush=True)
    seconds["pretrain nextitnet"], stdout = run_command(
        [python, "main/train.py", "--model=nextitnet", f"--tables={tables}",
         f"--checkpoint_dir={pretrained}", f"--max_steps={flags.steps}",
         f"--snapshot={flags.steps}", f"--batch_size={flags.batch_size}",
         f"--model_dim={flags.model_dim}", f"--dilations={flags.dilations}",
         f"--max_items_per_user={flags.max_items_per_user}", "--log_every=100",
         "--overwrite"], commands)
    print("  " + stdout.strip().splitlines()[-2], flush=True)
