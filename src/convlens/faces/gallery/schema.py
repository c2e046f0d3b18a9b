"""The gallery file format: SQLite header checks, the schema, its version and migrations.

Before SQLite touches an existing file its header is checked (SQLite magic, then our
`application_id`); a foreign, empty or corrupt file raises ConvlensError and is left
byte-for-byte as it was. A new gallery file is built under a temporary name and linked into
place, so no process ever sees a half-made one.

Schema 2 adds a checksum to every embedding row (`row_checksum`: CRC-32 of the row id, the
person id and the vector bytes), verified whenever vectors are read: SQLite's own
integrity check does not look inside a row. A schema-1 file is migrated (checksums computed
in one transaction) the first time it is opened.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

from convlens.errors import ConvlensError
from convlens.faces.gallery.files import remove_stale_temps, temp_path

SCHEMA_VERSION = 2
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
    created TEXT NOT NULL,
    checksum INTEGER
);
CREATE INDEX embeddings_person ON embeddings(person_id);
CREATE INDEX embeddings_sha256 ON embeddings(sha256);
CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    embedding_id INTEGER NOT NULL,
    op INTEGER NOT NULL
);
"""


def row_checksum(row_id: int, person_id: int, vector: bytes) -> int:
    """CRC-32 of an embedding row's id, person id and vector bytes (schema 2)."""
    return zlib.crc32(vector, zlib.crc32(struct.pack("<qq", row_id, person_id)))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_gallery_file(path: Path) -> bool:
    """True when `path` is an existing convlens gallery, False when there is no such file.

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
        # An empty file is not a gallery (a new one never appears empty, see create_file):
        # refuse it like any other foreign file rather than write over it.
        raise ConvlensError(f"{path}: empty file, not a convlens gallery; refusing to touch it")
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
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
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


def connect(path: Path | None, busy_timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open a checked, existing gallery file (migrating an older schema); None: an empty
    gallery in memory, which stands in for a file not created yet."""
    try:
        con = sqlite3.connect(
            path or ":memory:",
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        con.create_function("convlens_row_checksum", 3, row_checksum, deterministic=True)
    except sqlite3.Error as e:
        raise ConvlensError(f"{path}: cannot open gallery ({e})") from None
    try:
        con.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if path is None:
            _create(con, Path(":memory:"))
        _setup(con, path)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        con.close()
        raise ConvlensError(f"{path}: corrupt gallery database ({e})") from None
    except BaseException:
        con.close()
        raise
    return con


def create_file(path: Path) -> None:
    """Make a new, empty gallery at `path` atomically (unless another process just did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            _create(con, tmp)
        finally:
            con.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: that one is used
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
    except sqlite3.Error as e:
        raise ConvlensError(f"{path}: cannot create gallery ({e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _setup(con: sqlite3.Connection, path: Path | None) -> None:
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("PRAGMA secure_delete = ON")
    version = _version(con, path)
    if version > SCHEMA_VERSION:
        raise ConvlensError(
            f"{path}: gallery schema {version} is newer than this convlens "
            f"understands ({SCHEMA_VERSION}); upgrade convlens"
        )
    if path is None:
        return
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    if mode.lower() != "wal":
        retry(lambda: con.execute("PRAGMA journal_mode = WAL"))
    con.execute("PRAGMA synchronous = NORMAL")
    if version < SCHEMA_VERSION:
        _migrate(con, path)


def _version(con: sqlite3.Connection, path: Path | None) -> int:
    row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
    if row is None or not isinstance(row[0], int):
        raise ConvlensError(f"{path}: gallery has no schema version; corrupt")
    return row[0]


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    """Schema 1 → 2 in one transaction: add and compute the embedding rows' checksums."""
    retry(lambda: con.execute("BEGIN IMMEDIATE"))
    try:
        if _version(con, path) < 2:  # another process may have migrated meanwhile
            con.execute("ALTER TABLE embeddings ADD COLUMN checksum INTEGER")
            con.execute(
                "UPDATE embeddings SET checksum = convlens_row_checksum(id, person_id, vector)"
            )
            con.execute("INSERT INTO schema_version VALUES (?, ?)", (2, now()))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


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
        if con.in_transaction:
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
