"""Files beside the gallery database: temporary names, stale-temp cleanup, one mode policy.

Every temporary file the gallery writes (a new database being created, an index being
saved) is named `<target>.<pid>.<random>.tmp` in the target's folder, so a later process can
tell a live writer's file from one a killed process left behind and remove the latter: such
residue may hold enrolled faces' codes, and erasure must reach it. Files beside the database
(the ANN index) take the database file's permission bits, so that no derived file is more,
or less, readable than the data it comes from.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

# A temporary file whose pid is unknown (written by an older convlens) or reused is treated
# as abandoned after this long: writing one takes seconds even at 10⁶ embeddings.
STALE_TEMP_S = 600.0
_TEMP = re.compile(r"^(?P<target>.+)\.(?P<pid>\d+)\.(?P<rand>[0-9a-z_]+)\.tmp$")
_OLD_TEMP = re.compile(r"^(?P<target>.+)\.(?P<rand>[0-9a-z_]{8})\.tmp$")  # before pids


def temp_path(target: Path) -> Path:
    """A fresh temporary name for `target`, in its folder, carrying this process's pid."""
    return target.with_name(f"{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def stale_temps(target: Path) -> list[Path]:
    """Temporary files for `target` left by processes that are gone (or abandoned long ago)."""
    found = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return found
    now = time.time()
    for p in entries:
        m = _TEMP.match(p.name) or _OLD_TEMP.match(p.name)
        if m is None or m["target"] != target.name:
            continue
        pid = int(m["pid"]) if "pid" in m.groupdict() else None
        with contextlib.suppress(OSError):
            old = now - p.stat().st_mtime > STALE_TEMP_S
            if old or (pid is not None and not _alive(pid)):
                found.append(p)
    return found


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove stale temporary files of `target`; returns those that could not be removed."""
    left = []
    for p in stale_temps(target):
        try:
            p.unlink(missing_ok=True)
        except OSError:
            left.append(p)
    return left


def follow_mode(path: Path, reference: Path) -> None:
    """Give `path` the permission bits of `reference` (the database file), when it exists."""
    with contextlib.suppress(OSError):
        os.chmod(path, reference.stat().st_mode & 0o777)
