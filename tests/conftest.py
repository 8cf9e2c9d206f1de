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
