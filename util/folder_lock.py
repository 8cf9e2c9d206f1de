"""One job per output folder: a lock file naming its holder's pid and host.

Every entry point that writes a folder holds its lock for the whole job
(``with FolderLock(folder, "--output_dir"):``). The lock is a small JSON file
beside the folder (``contracts.run_folder.lock_path``), created with
``O_CREAT | O_EXCL`` so exactly one job can create it. A second job is
refused with one line naming the holder; a lock whose holder is gone (its
host is this host and its pid no longer runs, or now runs another program)
was left by a killed job and is taken over, with one line saying so. A lock
held on another host is never taken over: its holder cannot be checked from
here, so the message says which file to remove once that job is known dead.
"""

import datetime
import json
import os
import socket
import sys
import time
import uuid

from contracts.run_folder import lock_path
from util.errors import UserInputError
from util.output_folder import named

# A holder writes its JSON right after creating the file; an empty lock younger than
# this is a job starting up, an older one was left by a job killed at that moment.
_STARTUP_SECONDS = 10.0


def _process_start_ticks(pid):
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), or None.

    Recorded in the lock so that a pid reused by an unrelated program does not
    pass for the holder.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _is_running(pid, start_ticks):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    if start_ticks is None:
        return True
    current = _process_start_ticks(pid)
    return current is None or current == start_ticks


class FolderLock:
    """The lock of one output folder, held from ``acquire`` (or ``with``) to ``release``.

    Args:
        folder: the folder the job writes.
        flag: the flag that named it, for messages ("--checkpoint_dir").
        part: distinguishes locks of jobs that may share the folder (an
            inference slice); "" for one job per folder.
        enabled: False makes the lock do nothing (a non-chief worker, which
            does not write the folder).
        log: where the take-over line goes (default: stderr).
    """

    def __init__(self, folder, flag, part="", enabled=True, log=None):
        self.folder = folder
        self.flag = flag
        self.path = lock_path(folder, part)
        self.enabled = enabled
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._token = None
        self._created_dirs = []

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.release()
        return False

    def acquire(self):
        """Takes the lock, or raises ``UserInputError`` naming the job that holds it."""
        if not self.enabled or self._token:
            return
        self._make_parent()
        token = uuid.uuid4().hex
        content = json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "token": token,
            "process_start": _process_start_ticks(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.argv[0] or "python")] + sys.argv[1:])[:500],
        }).encode("utf-8")
        try:
            for _ in range(5):  # each round either takes the lock or removes one stale lock
                try:
                    descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                except OSError as error:
                    raise UserInputError(
                        f"{named(self.flag, self.folder)}: cannot create its lock file "
                        f"{self.path} ({error.strerror or error})") from None
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(content)
                self._token = token
                return
            raise UserInputError(
                f"{named(self.flag, self.folder)}: could not take its lock {self.path}; try again")
        except BaseException:
            self._remove_created_dirs()
            raise

    def release(self):
        """Removes the lock if it is still ours (a lock taken over by someone else stays)."""
        if not self._token:
            return
        holder, _ = self._read()
        if holder and holder.get("token") == self._token:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self._token = None
        self._remove_created_dirs()

    def _remove_created_dirs(self):
        for folder in reversed(self._created_dirs):
            try:
                os.rmdir(folder)  # only while empty: the job wrote nothing there
            except OSError:
                break
        self._created_dirs = []

    def _make_parent(self):
        parent = os.path.dirname(self.path)
        missing = []
        while not os.path.exists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError as error:
            raise UserInputError(
                f"{named(self.flag, self.folder)}: cannot create {os.path.dirname(self.path)} "
                f"({error.strerror or error})") from None
        self._created_dirs = list(reversed(missing))

    def _read(self):
        """(holder dict or None, raw bytes or None if the file is gone)."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None, None
        except OSError:
            return None, b""
        try:
            holder = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, raw
        return (holder if isinstance(holder, dict) else None), raw

    def _take_over_if_stale(self):
        holder, raw = self._read()
        if raw is None:
            return  # released meanwhile: try again
        if holder is None:
            try:
                age = time.time() - os.path.getmtime(self.path)
            except OSError:
                return
            if age < _STARTUP_SECONDS:
                raise UserInputError(
                    f"{named(self.flag, self.folder)} is being locked by another job starting up "
                    f"(lock file {self.path}); wait for it, or choose another folder")
            description = "an unreadable lock"
        else:
            pid, host = holder.get("pid"), holder.get("host")
            since = holder.get("started", "?")
            if host != socket.gethostname():
                raise UserInputError(
                    f"{named(self.flag, self.folder)} is in use by pid {pid} on host {host} (since "
                    f"{since}); wait for that job, or remove {self.path} if it is no longer running")
            if isinstance(pid, int) and _is_running(pid, holder.get("process_start")):
                raise UserInputError(
                    f"{named(self.flag, self.folder)} is in use by pid {pid} on host {host} (since "
                    f"{since}: {str(holder.get('command', '?'))[:120]}); wait for it to finish, or choose "
                    f"another folder")
            description = f"the lock of pid {pid} on host {host} (since {since}), which no longer runs"
        # Move the stale lock aside under a private name: of several jobs taking it over at
        # once only one rename succeeds. If what was moved is not what was judged stale (a
        # fresh lock appeared in between), it goes back.
        aside = f"{self.path}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        with open(aside, "rb") as handle:
            moved = handle.read()
        if moved != raw:
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            os.remove(aside)
            return
        os.remove(aside)
        self.log(f"note: {named(self.flag, self.folder)}: taking over {description} ({self.path})")
