"""API keys: created and revoked from the CLI, stored only as salted scrypt hashes.

A key reads `cl_<id>_<secret>`: the id finds the row, the secret is checked against its
scrypt hash (per-key random salt). The plain key is shown once, at creation, and never
stored or logged. Scopes are ordered: read < recognize < enroll < admin; a key may do what
its scope and every lower one allow.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from convlens.errors import ConvlensError

SCOPES = ("read", "recognize", "enroll", "admin")
# scrypt at n=2**14, r=8: ~16 MiB and tens of ms per check, so guessing is slow; a verified
# key is remembered in memory (by its SHA-256) so each request does not pay it again.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_MAX_NAME = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT
);
"""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scope: str
    created: str
    revoked: str | None = None

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created": self.created,
            "revoked": self.revoked,
        }


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore:
    """The key file (SQLite). Thread-safe: one connection per call, short transactions."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._verified: dict[bytes, str] = {}  # sha256(key) -> key id, checked this process
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: readers never wait on a revoke
            con.executescript(_SCHEMA)
        # Hashes are not secrets, but nobody else needs to read them.
        os.chmod(self.path, 0o600)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one short job (autocommit), closed after it."""
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise ConvlensError(f"{self.path}: cannot open the key file ({e})") from None
        try:
            yield con
        except sqlite3.DatabaseError as e:
            raise ConvlensError(f"{self.path}: key file error ({e})") from None
        finally:
            con.close()

    def create(self, name: str, scope: str) -> tuple[ApiKey, str]:
        """A new key: (its record, the plain key to show once)."""
        if scope not in SCOPES:
            raise ConvlensError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > _MAX_NAME or not name.isprintable():
            raise ConvlensError(f"a key's name must be 1..{_MAX_NAME} printable characters")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = ApiKey(key_id, name, scope, _now())
        with self._connect() as con:
            con.execute(
                "INSERT INTO api_keys (id, name, scope, salt, hash, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, scope, salt, _hash(secret, salt), record.created),
            )
        return record, f"cl_{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT id, name, scope, created, revoked FROM api_keys ORDER BY created, id"
            ).fetchall()
        return [ApiKey(*r) for r in rows]

    def revoke(self, key_id_or_name: str) -> list[ApiKey]:
        """Revoke the key with this id, or every live key with this name."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT id, name, scope, created, revoked FROM api_keys "
                "WHERE revoked IS NULL AND (id = ? OR name = ?)",
                (key_id_or_name, key_id_or_name),
            ).fetchall()
            if not rows:
                raise ConvlensError(f"no live key with id or name {key_id_or_name!r}")
            stamp = _now()
            con.executemany(
                "UPDATE api_keys SET revoked = ? WHERE id = ?", [(stamp, r[0]) for r in rows]
            )
        return [ApiKey(*r[:4], stamp) for r in rows]

    def check(self, presented: str | None) -> ApiKey | None:
        """The live key this string is, or None (unknown, malformed, wrong or revoked)."""
        if not presented or len(presented) > 200:
            return None
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "cl":
            return None
        key_id, secret = parts[1], parts[2]
        with self._connect() as con:
            row = con.execute(
                "SELECT id, name, scope, created, revoked, salt, hash FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
        if row is None or row[4] is not None:
            return None  # revocation is read from the file on every request
        digest = hashlib.sha256(presented.encode()).digest()
        with self._lock:
            known = self._verified.get(digest) == key_id
        if not known:
            if not hmac.compare_digest(_hash(secret, row[5]), row[6]):
                return None
            with self._lock:
                self._verified[digest] = key_id
        return ApiKey(*row[:5])
