"""A gallery in PostgreSQL with pgvector: `Gallery("postgresql://user@host/db")`.

Several processes on several machines share one gallery. The same guarantees as the SQLite
store (storage.py): every enrolment, forget and rename is one transaction; writers queue on
one advisory lock (as SQLite's BEGIN IMMEDIATE makes them), so the photo-hash checks cannot
race; the encoder's `model_id` is recorded on first use and other encoders are refused;
forgetting deletes the rows (VACUUM reclaims the pages; the WAL keeps them until recycled).
1:K search is exact below search.ANN_MIN_SIZE embeddings and uses pgvector's HNSW index
above, re-ranked by the min rule over a shortlist (as index.py does with FAISS).

Tables are prefixed `convlens_`; the pgvector extension must be available (CREATE
EXTENSION vector needs the right to create it once).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces.gallery.enrolment import (
    EnrollResult,
    EnrolmentRows,
    checked_batch,
    checked_enrolment,
    new_rows,
)
from convlens.faces.gallery.rows import NoSuchPerson
from convlens.faces.gallery.schema import now
from convlens.faces.gallery.storage import GalleryStore

WRITE_LOCK = 0x636C6E73  # pg_advisory_xact_lock key: "clns"

_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS convlens_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS convlens_people (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS convlens_embeddings (
    id BIGSERIAL PRIMARY KEY,
    person_id BIGINT NOT NULL REFERENCES convlens_people(id) ON DELETE CASCADE,
    source TEXT, sha256 TEXT, box TEXT, vector vector NOT NULL, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS convlens_embeddings_person ON convlens_embeddings(person_id);
CREATE INDEX IF NOT EXISTS convlens_embeddings_sha256 ON convlens_embeddings(sha256);
"""


def is_database_url(path) -> bool:
    return isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, rest = url.split("://", 1)
    if "@" not in rest:
        return url
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"


def vector_text(vec: np.ndarray) -> str:
    return "[" + ",".join(map(repr, vec.tolist())) + "]"


def _parse(texts: Sequence[str], dim: int) -> np.ndarray:
    if not texts:
        return np.zeros((0, dim), np.float32)
    flat = ",".join(t[1:-1] for t in texts)
    return np.fromstring(flat, dtype=np.float32, sep=",").reshape(len(texts), -1)


def _drop_if_empty(cur, pid: int) -> None:
    """In a write: delete the person `pid` if none of their embeddings is left."""
    cur.execute(
        "DELETE FROM convlens_people p WHERE id = %s AND NOT EXISTS "
        "(SELECT 1 FROM convlens_embeddings WHERE person_id = p.id)",
        (pid,),
    )


class PostgresStore:
    """The GalleryStore interface (storage.py) over one psycopg connection."""

    def __init__(self, url: str, create: bool = True):
        import psycopg

        self._errors = psycopg.Error
        self.path = shown_url(url)
        self.commits = 0
        try:
            self.con = psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            raise ConvlensError(f"{self.path}: cannot connect ({str(e).strip()})") from None
        exists = self.one("SELECT to_regclass('convlens_embeddings') IS NOT NULL")[0]
        if not exists and not create:
            self.close()
            raise ConvlensError(f"{self.path}: no such gallery")
        if not exists:
            self.write(lambda cur: cur.execute(_SCHEMA))

    def close(self) -> None:
        self.con.close()

    # -- reading and writing ----------------------------------------------------------------

    def _run(self, fn):
        try:
            return fn()
        except self._errors as e:
            raise ConvlensError(f"{self.path}: gallery database error ({str(e).strip()})") from None

    def one(self, sql: str, args: Sequence = ()):
        return self._run(lambda: self.con.execute(sql, args).fetchone())

    def all(self, sql: str, args: Sequence = ()):
        return self._run(lambda: self.con.execute(sql, args).fetchall())

    def write(self, fn):
        """fn(cursor) in one transaction, writers one at a time (advisory lock)."""

        def tx():
            with self.con.transaction(), self.con.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                return fn(cur)

        result = self._run(tx)
        self.commits += 1
        return result

    def meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM convlens_meta WHERE key = %s", (key,))
        return row[0] if row else None

    def meta_value(self, key: str, parse):
        return GalleryStore.meta_value(self, key, parse)

    def read(self, fn):
        """fn(connection) in one read-only snapshot (REPEATABLE READ)."""

        def tx():
            with self.con.transaction():
                self.con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return fn(self.con)

        return self._run(tx)

    def version(self) -> tuple[int, int]:
        return 0, self.commits

    # Erasure: PostgreSQL has no file convlens could scrub; deleted rows stay in the table's
    # pages until VACUUM reuses them and in its WAL until recycled (the server's business).
    def erasure_pending(self) -> bool:
        return False

    def traces(self, name: str) -> list[bytes]:
        return []

    def scrub(self, traces=()) -> str | None:
        return None

    def erasure_done(self) -> None:
        pass

    # -- the encoder ------------------------------------------------------------------------

    @property
    def model_id(self) -> str | None:
        return self.meta("model_id")

    @property
    def dim(self) -> int | None:
        value = self.meta("dim")
        return int(value) if value is not None else None

    def check_model(self, model_id: str) -> None:
        stored = self.model_id
        if stored is not None and stored != model_id:
            raise ConvlensError(
                f"{self.path}: gallery was built with encoder {stored!r}, not {model_id!r}; "
                "embeddings of different encoders are not comparable (use another gallery)"
            )

    def _claim_model(self, cur, model_id: str, dim: int) -> None:
        """In a write: record the encoder and fix the vector width (HNSW needs one)."""
        cur.execute("SELECT key, value FROM convlens_meta WHERE key IN ('model_id', 'dim')")
        stored = dict(cur.fetchall())
        if not stored:
            cur.execute("INSERT INTO convlens_meta VALUES ('model_id', %s), ('dim', %s)",
                        (model_id, str(dim)))  # fmt: skip
            cur.execute(f"ALTER TABLE convlens_embeddings ALTER COLUMN vector TYPE vector({dim})")
            return
        if stored["model_id"] != model_id:
            raise ConvlensError(
                f"{self.path}: gallery was built with encoder {stored['model_id']!r}, "
                f"not {model_id!r}"
            )
        if int(stored["dim"]) != dim:
            raise ConvlensError(f"embeddings have {dim} components; gallery has {stored['dim']}")

    def store_threshold(self, tau: float, info: dict) -> None:
        def tx(cur):
            for key, value in (("threshold", repr(tau)),
                               ("threshold_info", json.dumps({**info, "set": now()}))):  # fmt: skip
                cur.execute(
                    "INSERT INTO convlens_meta VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (key, value),
                )

        self.write(tx)

    # -- people -----------------------------------------------------------------------------

    _PEOPLE_SQL = (
        "SELECT p.id, p.name, p.created, COUNT(e.id) FROM convlens_people p LEFT JOIN "
        'convlens_embeddings e ON e.person_id = p.id GROUP BY p.id ORDER BY p.name COLLATE "C"'
    )
    _COUNT_SQL = "SELECT COUNT(*) FROM convlens_embeddings"
    _PERSON_ID_SQL = "SELECT id FROM convlens_people WHERE name = %s"
    people = GalleryStore.people
    count = GalleryStore.count
    person_id = GalleryStore.person_id
    check_name = staticmethod(GalleryStore.check_name)

    def person_vectors(self, name: str) -> np.ndarray:
        pid = self.person_id(name)
        rows = self.all("SELECT vector::text FROM convlens_embeddings WHERE person_id = %s", (pid,))
        return _parse([r[0] for r in rows], self.dim or 0)

    def forget(self, name: str) -> list[int]:
        name = self.check_name(name)

        def tx(cur):
            cur.execute("SELECT id FROM convlens_people WHERE name = %s", (name,))
            row = cur.fetchone()
            if row is None:
                raise NoSuchPerson(f"no one called {name!r} in the gallery {self.path}")
            cur.execute("DELETE FROM convlens_embeddings WHERE person_id = %s RETURNING id", row)
            ids = [r[0] for r in cur.fetchall()]
            cur.execute("DELETE FROM convlens_people WHERE id = %s", row)
            return ids

        return self.write(tx)

    def rename(self, old: str, new: str) -> None:
        old, new = self.check_name(old), self.check_name(new)

        def tx(cur):
            cur.execute("SELECT 1 FROM convlens_people WHERE name = %s", (old,))
            if cur.fetchone() is None:
                raise NoSuchPerson(f"no one called {old!r} in the gallery {self.path}")
            cur.execute("SELECT 1 FROM convlens_people WHERE name = %s", (new,))
            if old != new and cur.fetchone():
                raise ConvlensError(f"{new!r} is already in the gallery; forget them first")
            cur.execute("UPDATE convlens_people SET name = %s WHERE name = %s", (new, old))

        self.write(tx)

    _PHOTOS_SQL = (
        "SELECT id, source, sha256, box, created FROM convlens_embeddings "
        "WHERE person_id = %s ORDER BY id"
    )
    photos = GalleryStore.photos

    def forget_photo(self, name: str, photo_id: int) -> np.ndarray:
        name = self.check_name(name)

        def tx(cur):
            cur.execute(
                "DELETE FROM convlens_embeddings e USING convlens_people p WHERE e.id = %s "
                "AND p.id = e.person_id AND p.name = %s RETURNING e.person_id, e.vector::text",
                (int(photo_id), name),
            )
            row = cur.fetchone()
            if row is None:
                raise NoSuchPerson(f"no photo {photo_id} of {name!r} in the gallery {self.path}")
            _drop_if_empty(cur, row[0])
            return _parse([row[1]], self.dim or 0)[0]

        return self.write(tx)

    # -- enrolment rows ---------------------------------------------------------------------

    _enrolment = EnrolmentRows._enrolment  # the transaction, with this store's _claim_model

    def enroll_embeddings(
        self, name, embeddings, *, model_id, sources=None, hashes=None, boxes=None
    ) -> EnrollResult:
        """As GalleryStore.enroll_embeddings: one transaction, duplicates skipped, a photo
        already enrolled as someone else refused."""
        name, vecs, sources, hashes, boxes = checked_enrolment(
            self, name, embeddings, model_id, sources, hashes, boxes
        )
        result = EnrollResult(name)

        def tx(cur, stamp):
            cur.execute(
                "INSERT INTO convlens_people (name, created) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (name, stamp),
            )
            pid = cur.fetchone()[0]

            def owner(digest):
                cur.execute(
                    "SELECT p.name FROM convlens_embeddings e JOIN convlens_people p "
                    "ON p.id = e.person_id WHERE e.sha256 = %s LIMIT 1",
                    (digest,),
                )
                row = cur.fetchone()
                return row[0] if row else None

            for vec, src, digest, box_json in new_rows(result, vecs, sources, hashes, boxes, owner):
                cur.execute(
                    "INSERT INTO convlens_embeddings (person_id, source, sha256, box, vector, "
                    "created) VALUES (%s, %s, %s, %s, %s::vector, %s) RETURNING id",
                    (pid, src, digest, box_json, vector_text(vec), stamp),
                )
                result.added.append(int(cur.fetchone()[0]))
            if not result.added:
                _drop_if_empty(cur, pid)

        self._enrolment(model_id, vecs.shape[1], tx)
        return result

    def enroll_batch(self, names, embeddings, model_id) -> list[int]:
        """Bulk load: one embedding per name (people created as needed), one transaction."""
        names, vecs = checked_batch(self, names, embeddings, model_id)

        def tx(cur, stamp):
            cur.executemany(
                "INSERT INTO convlens_people (name, created) VALUES (%s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                [(n, stamp) for n in dict.fromkeys(names)],
            )
            cur.execute(
                "SELECT name, id FROM convlens_people WHERE name = ANY(%s)", (list(set(names)),)
            )
            ids = dict(cur.fetchall())
            with cur.copy("COPY convlens_embeddings (person_id, vector, created) FROM STDIN") as cp:
                for n, v in zip(names, vecs, strict=True):
                    cp.write_row((ids[n], vector_text(v), stamp))
            cur.execute(
                "SELECT id FROM convlens_embeddings ORDER BY id DESC LIMIT %s", (len(names),)
            )
            return sorted(r[0] for r in cur.fetchall())

        return self._enrolment(model_id, vecs.shape[1], tx)

    def vectors_by_person(self) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        rows = self.all(
            "SELECT person_id, vector::text FROM convlens_embeddings ORDER BY person_id, id"
        )
        names = dict(self.all("SELECT id, name FROM convlens_people"))
        pids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return pids, _parse([r[1] for r in rows], self.dim or 0), names


def open_gallery(url: str | os.PathLike, create: bool):
    """(store, index) for Gallery: the hook that makes `Gallery("postgresql://…")` work."""
    from convlens.faces.gallery.pgindex import PostgresIndex

    store = PostgresStore(str(url), create=create)
    return store, PostgresIndex(store)
