"""Checks every entry point runs on its output folder before any work starts.

``check_writable`` catches a folder that cannot be written (a path that is a
file, a read-only folder, a missing permission) in the first second of a
job, not after an hour of training or probing. ``check_overwritable`` is the
rule of ``--overwrite``: only a folder that one of our tools wrote (it holds
that kind's marker file, ``contracts.run_folder.FolderKind``) and that holds
nothing else may be emptied or replaced.
"""

import os
import shutil
import tempfile

from contracts.run_folder import WRITE_CHECK_PREFIX
from util.errors import UserInputError

_MAX_LISTED = 3


def named(flag, path):
    """``--flag=path`` as the user typed it; ``description path`` for a folder no flag named."""
    return f"{flag} {path}" if " " in flag else f"{flag}={path}"


def _probe(folder):
    """The reason ``folder`` cannot take a new file, or None where it can.

    A real file is created and removed: ``os.access`` answers for the user's
    permission bits only, not for read-only mounts or for root.
    """
    try:
        handle, path = tempfile.mkstemp(prefix=WRITE_CHECK_PREFIX, dir=folder)
    except OSError as error:
        return error.strerror or str(error)
    os.close(handle)
    os.remove(path)
    return None


def check_writable(folder, flag):
    """Raises unless ``folder`` (existing or to be created) and its parent can be written.

    The parent matters too: the folder's lock and ``util.atomic``'s staging
    folders are made beside it.

    Raises:
        UserInputError: one line naming ``flag`` and the path that is in the way.
    """
    given, folder = folder, os.path.abspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserInputError(f"{named(flag, given)} is a file, not a folder; pass a folder")
    ancestor = folder if os.path.isdir(folder) else os.path.dirname(folder)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserInputError(f"{named(flag, given)} cannot be created: {ancestor} is a file, not a folder")
    problem = _probe(ancestor)
    if problem:
        what = "cannot be written" if ancestor == folder else f"cannot be created in {ancestor}"
        raise UserInputError(f"{named(flag, given)} {what} ({problem})")
    parent = os.path.dirname(folder)
    if ancestor == folder and parent != folder and (problem := _probe(parent)):
        raise UserInputError(
            f"{named(flag, given)}: its parent folder {parent} cannot be written ({problem}); the "
            f"folder's lock file goes there")


def foreign_entries(folder, kind):
    """Top-level names in ``folder`` that ``kind``'s tool does not write, sorted."""
    return sorted(name for name in os.listdir(folder) if not kind.is_ours(name))


def check_overwritable(folder, kind, flag):
    """Raises unless ``--overwrite`` may remove what ``folder`` holds.

    A missing or empty folder is fine. Otherwise the folder must hold one of
    ``kind.markers`` and nothing but ``kind.entries``.

    Raises:
        UserInputError: one line naming ``flag``, the folder and what is not ours.
    """
    if not os.path.isdir(folder) or not os.listdir(folder):
        return
    if not any(os.path.exists(os.path.join(folder, marker)) for marker in kind.markers):
        raise UserInputError(
            f"{named(flag, folder)} holds no {' or '.join(kind.markers)}, so it is not {kind.what} "
            f"{kind.written_by} wrote; --overwrite only replaces those (choose another folder, or "
            f"empty it yourself)")
    foreign = foreign_entries(folder, kind)
    if foreign:
        listed = ", ".join(foreign[:_MAX_LISTED]) + (", ..." if len(foreign) > _MAX_LISTED else "")
        raise UserInputError(
            f"{named(flag, folder)} holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
            f"{kind.written_by} did not write ({listed}); --overwrite would delete them, so move "
            f"them or choose another folder")


def remove_for_overwrite(folder, kind, flag):
    """Deletes ``folder`` after ``check_overwritable`` allowed it (a missing folder is fine)."""
    check_overwritable(folder, kind, flag)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
