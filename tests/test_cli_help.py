"""Every entry point answers --help: usage, a help text for every flag, defaults as flags, a quiet stderr."""

import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# Every script of main/ (its __init__.py makes main/ a package for main/flags, and runs nothing).
SCRIPTS = sorted(path for path in glob.glob(os.path.join(REPO_ROOT, "main", "*.py"))
                 if os.path.basename(path) != "__init__.py")


def test_every_entry_point_is_covered():
    names = {os.path.basename(script) for script in SCRIPTS}
    assert {"build_tables.py", "train.py", "inference.py", "evaluate.py", "finetune.py"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_help_prints_usage_and_exits_zero(script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")
    # Nothing on stderr: no TensorFlow start-up noise (util/quiet_tensorflow.py), no warnings.
    assert result.stderr == ""
    # Defaults as the flag takes them (main/flags/common.py, FlagHelpFormatter):
    # 1/0, not True/False; 512 or 1,2,4,8, not a Python tuple; no "None" or empty default.
    python_values = re.findall(r"^.*(?:\b(?:True|False|None)\b|\(default: (?:\(|\[|\))).*$",
                               result.stdout, flags=re.MULTILINE)
    assert not python_values, f"help lines showing Python values: {python_values}"
    # A flag line without help text ends right after its metavar.
    flags = re.findall(r"^  (--\w+)(?: \S+)?\n(?! {6,})", result.stdout, flags=re.MULTILINE)
    assert not flags, f"flags without help: {flags}"
