"""Every entry point answers --help: usage, and a help text for every flag."""

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
    assert "Traceback" not in result.stderr
    # A flag line without help text ends right after its metavar.
    flags = re.findall(r"^  (--\w+)(?: \S+)?\n(?! {6,})", result.stdout, flags=re.MULTILINE)
    assert not flags, f"flags without help: {flags}"
