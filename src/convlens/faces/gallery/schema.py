"""The gallery file format: SQLite header checks, the schema, and its version.

Before SQLite touches an existing file its header is checked (SQLite magic, then our
`application_id`); a foreign or corrupt file raises ConvlensError and is left byte-for-byte
as it was.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from convlens.errors import ConvlensError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x636C6E73  # "clns" in the SQLite header, offset 68
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    source TEXT,
    sha256 TEXT,
    box TEXT,
    vector BLOB NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX embeddings_person ON embeddings(person_id);
CREATE INDEX embeddings_sha256 ON embeddings(sha256);
CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    embedding_id INTEGER NOT NULL,
    op INTEGER NOT NULL
);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_gallery_file(path: Path) -> bool:
    """True when `path` is an existing convlens gallery, False when it is absent or empty.

    Raises ConvlensError (touching nothing) for anything else: a foreign file, another SQLite
    database, a gallery whose header is damaged.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if path.is_dir():
        raise ConvlensError(f"{path}: is a folder, not a gallery file")
    if size == 0:
        return False
    for _ in range(3):
        with open(path, "rb") as f:
            header = f.read(100)
        if header.startswith(SQLITE_MAGIC):
            break
        time.sleep(0.05)  # a concurrent creator may be writing the first page right now
    if not header.startswith(SQLITE_MAGIC):
        raise ConvlensError(
            f"{path}: not a convlens gallery (not an SQLite database, or its header is "
            "corrupt); refusing to touch it"
        )
    app_id = int.from_bytes(header[68:72], "big") if len(header) >= 72 else 0
    if app_id == APPLICATION_ID:
        return True
    # The header may be mid-write by a concurrent creator; ask SQLite under its locks.
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise ConvlensError(f"{path}: not a readable convlens gallery ({e})") from None
    if app_id != APPLICATION_ID:
        raise ConvlensError(
            f"{path}: an SQLite database but not a convlens gallery; refusing to touch it"
        )
    return True


def connect(path: Path, exists: bool) -> sqlite3.Connection:
    """Open (creating the schema in a new file) a checked gallery file."""
    try:
        con = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as e:
        raise ConvlensError(f"{path}: cannot open gallery ({e})") from None
    try:
        _setup(con, path, exists)
    except sqlite3.DatabaseError as e:
        con.close()
        raise ConvlensError(f"{path}: corrupt gallery database ({e})") from None
    except BaseException:
        con.close()
        raise
    return con


def _setup(con: sqlite3.Connection, path: Path, exists: bool) -> None:
    con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("PRAGMA secure_delete = ON")
    if not exists:
        _create(con, path)
    row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
    version = row[0] if row else None
    if version is None:
        raise ConvlensError(f"{path}: gallery has no schema version; corrupt")
    if version > SCHEMA_VERSION:
        raise ConvlensError(
            f"{path}: gallery schema {version} is newer than this convlens "
            f"understands ({SCHEMA_VERSION}); upgrade convlens"
        )
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    if mode.lower() != "wal":
        retry(lambda: con.execute("PRAGMA journal_mode = WAL"))
    con.execute("PRAGMA synchronous = NORMAL")


def _create(con: sqlite3.Connection, path: Path) -> None:
    # Rollback-journal mode while creating, so the header (application_id) lands in the
    # main file at commit; WAL is switched on right after.
    con.execute("BEGIN IMMEDIATE")
    try:
        has = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone()
        if has is None:
            others = con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if others:
                raise ConvlensError(f"{path}: not a convlens gallery; refusing to touch it")
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    con.execute(stmt)
            con.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION, now()))
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("gallery_uuid", uuid.uuid4().hex), ("created", now())],
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def retry(fn, attempts: int = 200):
    for i in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or i == attempts - 1:
                raise
            time.sleep(0.05)
