"""Write-to-a-temporary-name-then-rename, so a killed job never leaves half a file.

A reader either sees the complete file or no file: ``os.replace`` is atomic on
one filesystem, and the temporary name sits in the same folder as the target.
"""

import contextlib
import glob
import os
import shutil
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_shareable(path, directory=False):
    # mkstemp/mkdtemp create private (0600/0700) entries; the final output
    # should carry the permissions any normally created file would.
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def temporary_path_for(path):
    """A fresh hidden sibling name for ``path`` (same folder, so rename is atomic)."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    return temporary


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path; on success it is renamed to ``path``, on error removed.

    Example:
        with atomic_path("out/part-0.parquet") as tmp:
            pyarrow.parquet.write_table(table, tmp)
    """
    temporary = temporary_path_for(path)
    try:
        yield temporary
        _make_shareable(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary folder that replaces ``path`` as a whole on success.

    An existing ``path`` is only removed once the new content is complete.
    """
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    try:
        yield temporary
        _make_shareable(temporary, directory=True)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def remove_abandoned_directories(path):
    """Removes what ``atomic_directory(path)`` left beside ``path`` when a job was killed in it.

    Only for a caller that holds ``path``'s lock (util/folder_lock.py): then
    no other job can be writing one of these right now. Returns the removed paths.
    """
    parent, name = os.path.split(os.path.abspath(path))
    removed = []
    for pattern in (f".{name}.*.tmp", f".{name}.*.old"):
        for leftover in glob.glob(os.path.join(glob.escape(parent), pattern)):
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed


def write_text_atomically(path, text):
    """Writes ``text`` to ``path`` via a temporary file and a rename."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
