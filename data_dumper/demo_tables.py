"""The demo tables that ``main/train.py`` uses when no ``--tables`` is given.

Built once from the deterministic demo generator into a cache folder and
reused afterwards; the build is atomic, so an interrupted first run leaves no
half-built cache behind.
"""

import os

from contracts import schema
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from util.folder_lock import FolderLock


def ensure_demo_tables(output_dir, log=print):
    """Builds the demo tables into ``output_dir`` unless a complete build is there.

    Returns:
        ``output_dir``.
    """
    if _complete(output_dir):
        return output_dir
    # Two first runs (say --model=sumn and --model=nextitnet) must not build the cache at once.
    with FolderLock(output_dir, "the demo tables folder (no --tables given)"):
        if not _complete(output_dir):
            log(f"no --tables given: building the demo tables into {output_dir}")
            build_tables(BuildConfig(output_dir=output_dir, demo=True, overwrite=True), log=log)
    return output_dir


def _complete(output_dir):
    # A cache built by an older version lacks the sequence table: rebuild it.
    return os.path.isdir(os.path.join(output_dir, schema.SEQUENCES_SUBDIR)) and os.path.exists(
        os.path.join(output_dir, schema.MANIFEST_FILE))
