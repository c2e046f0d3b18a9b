"""Reading embedding rows back: every vector checked against its row checksum; the gallery's
error types, and SQLite errors turned into one-line ConvlensErrors (a full disk said so).

A damaged row raises DamagedRow naming the row and the person: a flipped byte inside a
vector is invisible to SQLite's integrity check and would otherwise change answers silently.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces.gallery.schema import row_checksum

# The columns `unpack` expects, in order, for a query over `embeddings e`.
ROW_COLUMNS = "e.id, e.person_id, e.vector, e.checksum"


class DamagedRow(ConvlensError):
    """An embedding row whose bytes no longer match its checksum."""


class NoSuchPerson(ConvlensError):
    """The name is not in the gallery."""


class ErasureIncomplete(ConvlensError):
    """A forget deleted the person's rows but could not yet overwrite every copy on disk;
    the message says what remains. Forgetting again finishes it."""


class DiskFull(ConvlensError):
    """The disk (or the database's size limit) is full; the transaction was rolled back."""


# What reading or writing the database raises: SQLite's errors, and text columns whose bytes
# are damaged (sqlite3 decodes them as UTF-8).
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


def db_error(path: Path, e: Exception) -> ConvlensError:
    """One line for an SQLite error; a full disk is said so (nothing of it was stored)."""
    text = " ".join(str(e).split())  # one line, whatever damaged text it quotes
    if isinstance(e, UnicodeDecodeError) or "decode" in text:
        return ConvlensError(f"{path}: corrupt gallery database (damaged text)")
    code = getattr(e, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return DiskFull(f"{path}: disk full; nothing of this change was stored")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return ConvlensError(f"{path}: corrupt gallery database ({text})")
    return ConvlensError(f"{path}: gallery database error ({text})")


def _intact(row: Sequence, width: int) -> bool:
    rid, pid, blob, checksum = row
    return (
        isinstance(rid, int)
        and isinstance(pid, int)
        and isinstance(blob, bytes)
        and len(blob) == width
        and checksum == row_checksum(rid, pid, blob)
    )


def unpack(
    rows: Sequence[Sequence],
    dim: int,
    path: Path,
    name_of: Callable[[int], str | None],
) -> np.ndarray:
    """(n, dim) float32 vectors of rows (id, person_id, vector, checksum), each verified."""
    width = 4 * dim
    for row in rows:
        if not _intact(row, width):
            rid, pid = row[0], row[1]
            try:
                who = repr(name_of(pid)) if isinstance(pid, int) else None
            except ConvlensError:
                who = None
            who = who if who and who != "None" else f"person id {pid!r}"
            raise DamagedRow(
                f"{path}: embedding row {rid!r} of {who} is damaged (checksum mismatch); "
                "forget that person and enrol them again, or restore the gallery from a backup"
            )
    if not rows:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), dim)
