"""Gallery storage: the SQLite file, its schema, transactions, people, enrolment rows and
the change log that the ANN index catches up from.

One SQLite file (WAL mode, busy timeout, `secure_delete`): every enrolment, forget and
rename is one `BEGIN IMMEDIATE` transaction, so concurrent writers wait for each other
instead of failing, and a process killed mid-enrolment loses only that enrolment. Reads that
combine several queries run in one read transaction (one snapshot). The file's format,
header checks and opening are in schema.py; a new gallery file is created only by the first
write that succeeds. A gallery remembers the encoder's `model_id` and refuses embeddings of
another. Every vector read is checked against its row checksum (rows.py).

`GalleryStore` is the storage interface the rest of the gallery uses (another backend
implements the same public methods): reading — `meta`, `model_id`, `dim`, `people`, `count`,
`person_id`, `person_vectors`, `vectors_by_person`, `vectors_by_id`, `fetch`, `last_change`,
`changes_since`, `version`, `read`, `meta_value`, `traces`, `erasure_pending`; writing —
`write`, `enroll_embeddings`, `enroll_batch`, `forget`, `rename`, `store_threshold`,
`scrub`, `erasure_done`; `check_model`, `check_name`, `close`.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces.gallery.enrolment import EnrolmentRows, drop_if_empty
from convlens.faces.gallery.rows import DB_ERRORS, ROW_COLUMNS, NoSuchPerson, db_error, unpack
from convlens.faces.gallery.schema import (
    BUSY_TIMEOUT_S,
    check_gallery_file,
    connect,
    create_file,
    now,
    retry,
)


@dataclass
class Person:
    id: int
    name: str
    created: str
    photos: int


@dataclass
class Photo:
    """One enrolled embedding: its id, the photo's path (None for an image sent as pixels),
    its SHA-256, the face box and when it was stored."""

    id: int
    source: str | None
    sha256: str | None
    box: list[int] | None
    created: str


def _found(path: Path, needles: Sequence[bytes]) -> bool:
    """Whether any of the byte strings occurs in the file (searched without reading it all
    into memory)."""
    if not needles or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return any(m.find(n) >= 0 for n in needles)


class GalleryStore(EnrolmentRows):
    """The gallery file: open (checking it first), transactions, people and embedding rows.

    `commits` counts this connection's own commits: SQLite's data_version only moves for
    other connections' commits, so caches key on both. A file that does not exist yet is
    created by the first successful write (until then an empty in-memory gallery answers
    reads), so a failed command leaves nothing behind. `busy_timeout`: seconds to wait for
    other processes' locks (writers, and readers that a forget's checkpoint waits for).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        create: bool = True,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ):
        self.path = Path(path)
        self.commits = 0
        self.busy_timeout = float(busy_timeout)
        self.on_disk = check_gallery_file(self.path)
        if not self.on_disk and not create:
            raise ConvlensError(f"{self.path}: no such gallery")
        self.con = connect(self.path if self.on_disk else None, self.busy_timeout)

    def close(self) -> None:
        self.con.close()

    def _materialize(self) -> None:
        """Before the first write to a gallery that had no file: create it (or join the one
        another process just created) and move over to it."""
        create_file(self.path)
        check_gallery_file(self.path)
        con = connect(self.path, self.busy_timeout)
        self.con.close()
        self.con, self.on_disk = con, True

    # -- reading and writing -----------------------------------------------------------------

    def one(self, sql: str, args: Sequence = ()):
        try:
            return self.con.execute(sql, args).fetchone()
        except DB_ERRORS as e:
            raise db_error(self.path, e) from None

    def all(self, sql: str, args: Sequence = ()):
        try:
            return self.con.execute(sql, args).fetchall()
        except DB_ERRORS as e:
            raise db_error(self.path, e) from None

    def read(self, fn):
        """Run fn(con) in one read transaction: every query in it sees the same snapshot."""
        con = self.con
        try:
            con.execute("BEGIN")
            try:
                return fn(con)
            finally:
                con.execute("COMMIT")
        except DB_ERRORS as e:
            raise db_error(self.path, e) from None

    def write(self, fn):
        """Run fn(con) in one IMMEDIATE transaction (writers queue on the busy timeout)."""
        if not self.on_disk:
            self._materialize()
        con = self.con
        try:
            retry(lambda: con.execute("BEGIN IMMEDIATE"))
            try:
                result = fn(con)
                con.execute("COMMIT")
                self.commits += 1
            except BaseException:
                # SQLite may have rolled back already (a full disk does): keep the first error.
                if con.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        con.execute("ROLLBACK")
                raise
        except DB_ERRORS as e:
            raise db_error(self.path, e) from None
        return result

    def meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def version(self) -> tuple[int, int]:
        """Changes by other connections (data_version) and by this one (commits)."""
        return self.one("PRAGMA data_version")[0], self.commits

    # -- the encoder -------------------------------------------------------------------------

    @property
    def model_id(self) -> str | None:
        return self.meta("model_id")

    @property
    def dim(self) -> int | None:
        value = self.meta_value("dim", int)
        if value is not None and value <= 0:
            raise ConvlensError(f"{self.path}: damaged gallery metadata (dim {value})")
        return value

    def meta_value(self, key: str, parse):
        """A meta value parsed by `parse` (int, float, json.loads); None when absent. A value
        that does not parse is damage, reported as such."""
        raw = self.meta(key)
        if raw is None:
            return None
        try:
            return parse(raw)
        except (ValueError, TypeError):
            raise ConvlensError(f"{self.path}: damaged gallery metadata ({key})") from None

    def check_model(self, model_id: str) -> None:
        stored = self.meta("model_id")
        if stored is not None and stored != model_id:
            raise ConvlensError(
                f"{self.path}: gallery was built with encoder {stored!r}, not {model_id!r}; "
                "embeddings of different encoders are not comparable (use another gallery)"
            )

    def store_threshold(self, tau: float, info: dict) -> None:
        def tx(con):
            con.execute("INSERT OR REPLACE INTO meta VALUES ('threshold', ?)", (repr(tau),))
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('threshold_info', ?)",
                (json.dumps({**info, "set": now()}),),
            )

        self.write(tx)

    # -- people ------------------------------------------------------------------------------

    # What people, count and person_id ask; PostgresStore borrows them with its own SQL.
    _PEOPLE_SQL = (
        "SELECT p.id, p.name, p.created, COUNT(e.id) FROM people p "
        "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id ORDER BY p.name"
    )
    _COUNT_SQL = "SELECT COUNT(*) FROM embeddings"
    _PERSON_ID_SQL = "SELECT id FROM people WHERE name = ?"

    def people(self) -> list[Person]:
        return [Person(*r) for r in self.all(self._PEOPLE_SQL)]

    def count(self) -> int:
        return int(self.one(self._COUNT_SQL)[0])

    def person_id(self, name: str) -> int:
        row = self.one(self._PERSON_ID_SQL, (name,))
        if row is None:
            raise NoSuchPerson(f"no one called {name!r} in the gallery {self.path}")
        return int(row[0])

    @staticmethod
    def check_name(name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ConvlensError("a person's name must be a non-empty string")
        return name.strip()

    def person_vectors(self, name: str) -> np.ndarray:
        def rows(con):
            row = con.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NoSuchPerson(f"no one called {name!r} in the gallery {self.path}")
            sql = f"SELECT {ROW_COLUMNS} FROM embeddings e WHERE e.person_id = ?"
            return con.execute(sql, row).fetchall()

        return self._unpack(self.read(rows))

    def _unpack(self, rows) -> np.ndarray:
        return unpack(rows, self.dim or 0, self.path, self._name_of)

    def _name_of(self, person_id: int) -> str | None:
        row = self.one("SELECT name FROM people WHERE id = ?", (person_id,))
        return row[0] if row else None

    # -- erasure -----------------------------------------------------------------------------

    def forget(self, name: str) -> list[int]:
        """Delete the person and their embeddings (logged); returns the erased ids.

        The deleted rows are zeroed in their pages (secure_delete) but older copies stay in
        the WAL, and in the main file while a reader's snapshot needs them, until `scrub`
        succeeds; the `erasure_pending` mark (no name in it) records that it has not yet.
        """
        name = self.check_name(name)

        def tx(con):
            row = con.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NoSuchPerson(f"no one called {name!r} in the gallery {self.path}")
            ids = [r[0] for r in con.execute("SELECT id FROM embeddings WHERE person_id = ?", row)]
            con.executemany(
                "INSERT INTO change_log (embedding_id, op) VALUES (?, -1)", [(i,) for i in ids]
            )
            con.execute("DELETE FROM embeddings WHERE person_id = ?", row)
            con.execute("DELETE FROM people WHERE id = ?", row)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('erasure_pending', ?)", (now(),))
            return ids

        return self.write(tx)

    def erasure_pending(self) -> bool:
        return self.on_disk and self.meta("erasure_pending") is not None

    def traces(self, name: str) -> list[bytes]:
        """What erasure must leave nowhere: the person's vector bytes, photo paths and name
        (a name under 4 bytes is left out: it occurs by chance in other data)."""

        def rows(con):
            sql = "SELECT e.vector, e.source FROM embeddings e JOIN people p ON p.id = e.person_id"
            return con.execute(sql + " WHERE p.name = ?", (name,)).fetchall()

        found = self.read(rows)
        out = {r[0] for r in found if isinstance(r[0], bytes)}
        out |= {r[1].encode() for r in found if isinstance(r[1], str) and r[1]}
        return sorted(out) + ([name.encode()] if len(name.encode()) >= 4 else [])

    def scrub(self, traces: Sequence[bytes] = ()) -> str | None:
        """Overwrite what deleted rows left in the files: checkpoint the WAL into the main
        file and truncate it, then look for the `traces` in the main file; SQLite's
        secure_delete misses stale copies that page rebalancing left in free space, so a
        trace found there is removed by VACUUM (rebuilding the file). None when done;
        otherwise what remains and why. Run again later to finish.
        """
        if not self.on_disk:
            return None
        busy = self._checkpoint()
        if busy:
            return busy
        if _found(self.path, traces):
            try:
                self.con.execute("VACUUM")
            except sqlite3.Error as e:
                return f"stale copies remain in {self.path.name} (VACUUM failed: {e})"
            busy = self._checkpoint()
            if busy:
                return busy
            if _found(self.path, [t for t in traces if len(t) >= 16]):
                return f"stale copies remain in {self.path.name} after VACUUM"
        return None

    def _checkpoint(self) -> str | None:
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            busy = self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as e:
            busy = str(e)
        if busy or (wal.exists() and wal.stat().st_size):
            return (
                f"deleted rows are not yet overwritten in {self.path.name} and {wal.name} "
                f"(another connection kept an older snapshot open for over "
                f"{self.busy_timeout:g} s)"
            )
        return None

    def erasure_done(self) -> None:
        """Clear the pending-erasure mark once every copy is overwritten."""
        if self.meta("erasure_pending") is not None:
            self.write(lambda con: con.execute("DELETE FROM meta WHERE key = 'erasure_pending'"))
            with contextlib.suppress(sqlite3.Error):  # the mark's page holds nothing personal
                self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    _PHOTOS_SQL = (  # borrowed by PostgresStore, as people is
        "SELECT id, source, sha256, box, created FROM embeddings WHERE person_id = ? ORDER BY id"
    )

    def photos(self, name: str) -> list[Photo]:
        rows = self.all(self._PHOTOS_SQL, (self.person_id(self.check_name(name)),))
        return [Photo(i, src, h, json.loads(b) if b else None, c) for i, src, h, b, c in rows]

    def forget_photo(self, name: str, photo_id: int) -> np.ndarray:
        """Delete one embedding of `name` (logged, erasure marked pending as by `forget`);
        the person goes with their last one. Returns the deleted vector (to scrub)."""
        name = self.check_name(name)

        def tx(con):
            row = con.execute(
                "SELECT e.person_id, e.vector FROM embeddings e JOIN people p "
                "ON p.id = e.person_id WHERE e.id = ? AND p.name = ?",
                (int(photo_id), name),
            ).fetchone()
            if row is None:
                raise NoSuchPerson(f"no photo {photo_id} of {name!r} in the gallery {self.path}")
            con.execute("INSERT INTO change_log (embedding_id, op) VALUES (?, -1)", (photo_id,))
            con.execute("DELETE FROM embeddings WHERE id = ?", (int(photo_id),))
            drop_if_empty(con, row[0])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('erasure_pending', ?)", (now(),))
            return np.frombuffer(row[1], np.float32)

        return self.write(tx)

    def rename(self, old: str, new: str) -> None:
        old, new = self.check_name(old), self.check_name(new)

        def tx(con):
            if con.execute("SELECT 1 FROM people WHERE name = ?", (old,)).fetchone() is None:
                raise NoSuchPerson(f"no one called {old!r} in the gallery {self.path}")
            if old != new and con.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise ConvlensError(f"{new!r} is already in the gallery; forget them first")
            con.execute("UPDATE people SET name = ? WHERE name = ?", (new, old))

        self.write(tx)

    # -- what the ANN index catches up from ---------------------------------------------------

    def last_change(self) -> int:
        return int(self.one("SELECT COALESCE(MAX(seq), 0) FROM change_log")[0])

    def changes_since(self, seq: int) -> list[tuple[int, int, int]]:
        """(log seq, embedding id, +1 added | -1 erased) logged after `seq`, in order."""
        return self.all(
            "SELECT seq, embedding_id, op FROM change_log WHERE seq > ? ORDER BY seq", (seq,)
        )

    def vectors_by_person(self) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Every embedding: (person ids, float32 vectors), grouped by person, and names; one
        snapshot, so every person id has its name."""

        def rows(con):
            sql = f"SELECT {ROW_COLUMNS} FROM embeddings e ORDER BY e.person_id, e.id"
            return con.execute(sql).fetchall(), dict(con.execute("SELECT id, name FROM people"))

        rows, names = self.read(rows)
        pids = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        return pids, self._unpack(rows), names

    def vectors_by_id(self) -> tuple[np.ndarray, np.ndarray]:
        """Every embedding: (ids, float32 vectors) in id order."""
        rows = self.all(f"SELECT {ROW_COLUMNS} FROM embeddings e ORDER BY e.id")
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return ids, self._unpack(rows)

    def fetch(self, ids: np.ndarray, dim: int) -> tuple[np.ndarray, list[str | None]]:
        """float32 vectors and person names of these embedding ids, in order; an id deleted
        meanwhile gives an infinite vector and name None."""
        marks = ",".join("?" * len(ids))
        rows = self.all(
            f"SELECT {ROW_COLUMNS}, p.name FROM embeddings e JOIN people p "
            f"ON p.id = e.person_id WHERE e.id IN ({marks})",
            [int(i) for i in ids],
        )
        found = self._unpack([r[:4] for r in rows])
        by_id = {r[0]: (found[j], r[4]) for j, r in enumerate(rows)}
        vecs = np.full((len(ids), dim), np.inf, np.float32)
        names: list[str | None] = []
        for j, i in enumerate(ids):
            vec, name = by_id.get(int(i), (None, None))
            if vec is not None:
                vecs[j] = vec
            names.append(name)
        return vecs, names
