"""Helpers for tests that kill a training job with SIGKILL and resume it."""

import os
import re
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recorded_step(checkpoint_dir):
    """The step of the checkpoint the run folder's state file names (0 if none yet).

    The ``.index`` file appears before the state file is updated, so only the state file
    says which checkpoint a restart will use.
    """
    try:
        with open(os.path.join(checkpoint_dir, "checkpoint")) as handle:
            state = handle.read()
    except OSError:
        return 0
    match = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state, re.MULTILINE)
    return int(match.group(1)) if match else 0


def train_until_killed(argv, checkpoint_dir, kill_at_step, timeout_s=120):
    """Runs ``main/train.py argv`` in its own process and SIGKILLs it once a checkpoint of
    ``kill_at_step`` or later is recorded (or after ``timeout_s``).

    Returns:
        The step of the checkpoint the killed run's folder records.
    """
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen([sys.executable, "main/train.py", *argv], cwd=REPO, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while time.time() < deadline and recorded_step(checkpoint_dir) < kill_at_step and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return recorded_step(checkpoint_dir)
