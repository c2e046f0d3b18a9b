"""Gallery storage: the SQLite file, its schema, transactions, people, enrolment rows and
the change log that the ANN index catches up from.

One SQLite file (WAL mode, busy timeout, `secure_delete`): every enrolment, forget and
rename is one `BEGIN IMMEDIATE` transaction, so concurrent writers wait for each other
instead of failing, and a process killed mid-enrolment loses only that enrolment. The file's
format, header checks and opening are in schema.py. A gallery remembers the encoder's
`model_id` and refuses embeddings of another.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import search as _search
from convlens.faces.gallery.schema import check_gallery_file, connect, now, retry


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


@dataclass
class EnrollResult:
    name: str
    added: list[int] = field(default_factory=list)  # embedding ids
    skipped: list[str] = field(default_factory=list)  # duplicate photos, already enrolled


def file_hash(photo) -> str | None:
    if isinstance(photo, str | os.PathLike):
        h = hashlib.sha256()
        with open(photo, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    if isinstance(photo, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(photo).tobytes()).hexdigest()
    return None


class GalleryStore:
    """The gallery file: open (checking it first), transactions, people and embedding rows.

    `commits` counts this connection's own commits: SQLite's data_version only moves for
    other connections' commits, so caches key on both.
    """

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        self.commits = 0
        exists = check_gallery_file(self.path)
        if not exists and not create:
            raise ConvlensError(f"{self.path}: no such gallery")
        if not exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = connect(self.path, exists)

    def close(self) -> None:
        self.con.close()

    # -- reading and writing -----------------------------------------------------------------

    def one(self, sql: str, args: Sequence = ()):
        try:
            return self.con.execute(sql, args).fetchone()
        except sqlite3.DatabaseError as e:
            raise ConvlensError(f"{self.path}: gallery database error ({e})") from None

    def all(self, sql: str, args: Sequence = ()):
        try:
            return self.con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise ConvlensError(f"{self.path}: gallery database error ({e})") from None

    def meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def write(self, fn):
        """Run fn(con) in one IMMEDIATE transaction (writers queue on the busy timeout)."""
        con = self.con
        try:
            retry(lambda: con.execute("BEGIN IMMEDIATE"))
            try:
                result = fn(con)
                con.execute("COMMIT")
                self.commits += 1
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            raise ConvlensError(f"{self.path}: gallery database error ({e})") from None
        return result

    def version(self) -> tuple[int, int]:
        """Changes by other connections (data_version) and by this one (commits)."""
        return self.one("PRAGMA data_version")[0], self.commits

    # -- the encoder -------------------------------------------------------------------------

    @property
    def model_id(self) -> str | None:
        return self.meta("model_id")

    @property
    def dim(self) -> int | None:
        value = self.meta("dim")
        return int(value) if value is not None else None

    def check_model(self, model_id: str) -> None:
        stored = self.meta("model_id")
        if stored is not None and stored != model_id:
            raise ConvlensError(
                f"{self.path}: gallery was built with encoder {stored!r}, not {model_id!r}; "
                "embeddings of different encoders are not comparable (use another gallery)"
            )

    def _claim_model(self, con, model_id: str, dim: int) -> None:
        """Inside a write transaction: record the encoder on first use, refuse another one."""
        stored = con.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()
        if stored is None:
            con.execute("INSERT INTO meta VALUES ('model_id', ?)", (model_id,))
            con.execute("INSERT INTO meta VALUES ('dim', ?)", (str(dim),))
            return
        if stored[0] != model_id:
            raise ConvlensError(
                f"{self.path}: gallery was built with encoder {stored[0]!r}, not {model_id!r}"
            )
        stored_dim = con.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        if stored_dim and int(stored_dim[0]) != dim:
            raise ConvlensError(f"embeddings have {dim} components; gallery has {stored_dim[0]}")

    def store_threshold(self, tau: float, info: dict) -> None:
        def tx(con):
            con.execute("INSERT OR REPLACE INTO meta VALUES ('threshold', ?)", (repr(tau),))
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('threshold_info', ?)",
                (json.dumps({**info, "set": now()}),),
            )

        self.write(tx)

    # -- people ------------------------------------------------------------------------------

    def people(self) -> list[Person]:
        rows = self.all(
            "SELECT p.id, p.name, p.created, COUNT(e.id) FROM people p "
            "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id ORDER BY p.name"
        )
        return [Person(*r) for r in rows]

    def count(self) -> int:
        return int(self.one("SELECT COUNT(*) FROM embeddings")[0])

    def person_id(self, name: str) -> int:
        row = self.one("SELECT id FROM people WHERE name = ?", (name,))
        if row is None:
            raise ConvlensError(f"no one called {name!r} in the gallery {self.path}")
        return int(row[0])

    @staticmethod
    def check_name(name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ConvlensError("a person's name must be a non-empty string")
        return name.strip()

    def person_vectors(self, name: str) -> np.ndarray:
        pid = self.person_id(name)
        rows = self.all("SELECT vector FROM embeddings WHERE person_id = ?", (pid,))
        return np.frombuffer(b"".join(r[0] for r in rows), np.float32).reshape(len(rows), -1)

    def forget(self, name: str) -> list[int]:
        """Delete the person and their embeddings (logged); returns the erased ids."""
        name = self.check_name(name)

        def tx(con):
            row = con.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise ConvlensError(f"no one called {name!r} in the gallery {self.path}")
            ids = [r[0] for r in con.execute("SELECT id FROM embeddings WHERE person_id = ?", row)]
            con.executemany(
                "INSERT INTO change_log (embedding_id, op) VALUES (?, -1)", [(i,) for i in ids]
            )
            con.execute("DELETE FROM embeddings WHERE person_id = ?", row)
            con.execute("DELETE FROM people WHERE id = ?", row)
            return ids

        return self.write(tx)

    def photos(self, name: str) -> list[Photo]:
        pid = self.person_id(self.check_name(name))
        rows = self.all(
            "SELECT id, source, sha256, box, created FROM embeddings WHERE person_id = ? "
            "ORDER BY id",
            (pid,),
        )
        return [Photo(i, src, h, json.loads(b) if b else None, c) for i, src, h, b, c in rows]

    def forget_photo(self, name: str, photo_id: int) -> None:
        """Delete one embedding of `name` (logged); the person goes with their last one."""
        name = self.check_name(name)

        def tx(con):
            row = con.execute(
                "SELECT e.person_id FROM embeddings e JOIN people p ON p.id = e.person_id "
                "WHERE e.id = ? AND p.name = ?",
                (int(photo_id), name),
            ).fetchone()
            if row is None:
                raise ConvlensError(f"no photo {photo_id} of {name!r} in the gallery {self.path}")
            con.execute("INSERT INTO change_log (embedding_id, op) VALUES (?, -1)", (photo_id,))
            con.execute("DELETE FROM embeddings WHERE id = ?", (int(photo_id),))
            con.execute(
                "DELETE FROM people WHERE id = ? AND NOT EXISTS "
                "(SELECT 1 FROM embeddings WHERE person_id = ?)",
                (row[0], row[0]),
            )

        self.write(tx)

    def truncate_wal(self) -> None:
        # Readers still active: the WAL is truncated at a later checkpoint.
        with contextlib.suppress(sqlite3.OperationalError):
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rename(self, old: str, new: str) -> None:
        old, new = self.check_name(old), self.check_name(new)

        def tx(con):
            if con.execute("SELECT 1 FROM people WHERE name = ?", (old,)).fetchone() is None:
                raise ConvlensError(f"no one called {old!r} in the gallery {self.path}")
            if old != new and con.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise ConvlensError(f"{new!r} is already in the gallery; forget them first")
            con.execute("UPDATE people SET name = ? WHERE name = ?", (new, old))

        self.write(tx)

    # -- enrolment rows ---------------------------------------------------------------------

    def enroll_embeddings(
        self,
        name: str,
        embeddings: np.ndarray,
        *,
        model_id: str,
        sources: Sequence[str | None] | None = None,
        hashes: Sequence[str | None] | None = None,
        boxes: Sequence[Sequence[int] | None] | None = None,
    ) -> EnrollResult:
        """Store embeddings for `name` (created if new) in one transaction.

        Rows whose hash is already stored for this person are skipped; a hash stored for
        someone else is refused (one photo cannot show two people's largest face).
        """
        name = self.check_name(name)
        if not model_id:
            raise ConvlensError("enroll_embeddings needs the encoder's model_id")
        self.check_model(model_id)
        vecs = _search.check_vectors(embeddings, self.dim)
        n = len(vecs)
        sources = list(sources) if sources is not None else [None] * n
        hashes = list(hashes) if hashes is not None else [None] * n
        boxes = list(boxes) if boxes is not None else [None] * n
        if not (len(sources) == len(hashes) == len(boxes) == n):
            raise ConvlensError("sources, hashes and boxes must match the embeddings in number")
        result = EnrollResult(name)

        def tx(con):
            self._claim_model(con, model_id, vecs.shape[1])
            stamp = now()
            con.execute("INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)", (name, stamp))
            pid = con.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
            rows = []
            seen = set()
            for vec, src, digest, box in zip(vecs, sources, hashes, boxes, strict=True):
                if digest is not None:
                    other = con.execute(
                        "SELECT p.name FROM embeddings e JOIN people p ON p.id = e.person_id "
                        "WHERE e.sha256 = ? LIMIT 1",
                        (digest,),
                    ).fetchone()
                    if other is not None and other[0] != name:
                        raise ConvlensError(
                            f"{src or 'photo'}: already enrolled as {other[0]!r}, not enrolling "
                            f"it as {name!r}"
                        )
                    if other is not None or digest in seen:
                        result.skipped.append(src or digest)
                        continue
                    seen.add(digest)
                box_json = json.dumps([int(v) for v in box]) if box is not None else None
                rows.append((pid, src, digest, box_json, vec.tobytes(), stamp))
            for row in rows:
                cur = con.execute(
                    "INSERT INTO embeddings (person_id, source, sha256, box, vector, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                result.added.append(int(cur.lastrowid))
            con.executemany(
                "INSERT INTO change_log (embedding_id, op) VALUES (?, 1)",
                [(i,) for i in result.added],
            )
            if not result.added:
                # Nothing new: do not leave an empty person behind.
                con.execute(
                    "DELETE FROM people WHERE id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM embeddings WHERE person_id = ?)",
                    (pid, pid),
                )

        self.write(tx)
        return result

    def enroll_batch(
        self, names: Sequence[str], embeddings: np.ndarray, model_id: str
    ) -> list[int]:
        """Bulk load: one embedding per name (people created as needed), one transaction."""
        if not model_id:
            raise ConvlensError("enroll_batch needs the encoder's model_id")
        self.check_model(model_id)
        vecs = _search.check_vectors(embeddings, self.dim)
        names = [self.check_name(n) for n in names]
        if len(names) != len(vecs):
            raise ConvlensError("enroll_batch needs one name per embedding")

        def tx(con):
            self._claim_model(con, model_id, vecs.shape[1])
            stamp = now()
            con.executemany(
                "INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)",
                ((n, stamp) for n in names),
            )
            first = con.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings").fetchone()[0]
            con.executemany(
                "INSERT INTO embeddings (person_id, vector, created) "
                "SELECT id, ?, ? FROM people WHERE name = ?",
                ((v.tobytes(), stamp, n) for v, n in zip(vecs, names, strict=True)),
            )
            ids = [
                r[0]
                for r in con.execute("SELECT id FROM embeddings WHERE id > ? ORDER BY id", (first,))
            ]
            con.executemany(
                "INSERT INTO change_log (embedding_id, op) VALUES (?, 1)", ((i,) for i in ids)
            )
            return ids

        ids = self.write(tx)
        return ids

    # -- what the ANN index catches up from ---------------------------------------------------

    def last_change(self) -> int:
        return int(self.one("SELECT COALESCE(MAX(seq), 0) FROM change_log")[0])

    def changes_since(self, seq: int) -> list[tuple[int, int]]:
        """(embedding id, +1 added | -1 erased) logged after `seq`, in order."""
        return self.all(
            "SELECT embedding_id, op FROM change_log WHERE seq > ? ORDER BY seq", (seq,)
        )

    def vectors_by_person(self) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Every embedding: (person ids, float32 vectors), grouped by person, and names."""
        rows = self.all("SELECT e.person_id, e.vector FROM embeddings e ORDER BY e.person_id, e.id")
        names = dict(self.all("SELECT id, name FROM people"))
        dim = self.dim or 0
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32), names
        pids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
        return pids, vecs, names

    def vectors_by_id(self) -> tuple[np.ndarray, np.ndarray]:
        """Every embedding: (ids, float32 vectors) in id order."""
        rows = self.all("SELECT id, vector FROM embeddings ORDER BY id")
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)
        return ids, vecs

    def fetch(self, ids: np.ndarray, dim: int) -> tuple[np.ndarray, list[str | None]]:
        """float32 vectors and person names of these embedding ids, in order; an id deleted
        meanwhile gives an infinite vector and name None."""
        marks = ",".join("?" * len(ids))
        rows = self.all(
            f"SELECT e.id, e.vector, p.name FROM embeddings e JOIN people p "
            f"ON p.id = e.person_id WHERE e.id IN ({marks})",
            [int(i) for i in ids],
        )
        by_id = {r[0]: r for r in rows}
        vecs = np.zeros((len(ids), dim), np.float32)
        names = []
        for j, i in enumerate(ids):
            r = by_id.get(int(i))
            if r is None:
                vecs[j] = np.inf
                names.append(None)
            else:
                vecs[j] = np.frombuffer(r[1], np.float32)
                names.append(r[2])
        return vecs, names
