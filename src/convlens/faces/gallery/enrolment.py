"""Writing enrolment rows: one person's photos, or a bulk load, each in one transaction,
every row checksummed (schema.row_checksum) inside the transaction that adds it.

`EnrolmentRows` is part of GalleryStore (storage.py); it uses the store's `write`,
`check_model`, `check_name`, `dim` and `path`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import search as _search
from convlens.faces.gallery.schema import now


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


def _last_id(con: sqlite3.Connection) -> int:
    return con.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings").fetchone()[0]


def _seal(con: sqlite3.Connection, after: int) -> None:
    """Inside the enrolment's transaction: checksum the rows it added (ids above `after`)."""
    con.execute(
        "UPDATE embeddings SET checksum = convlens_row_checksum(id, person_id, vector) "
        "WHERE id > ?",
        (after,),
    )


def drop_if_empty(con: sqlite3.Connection, pid: int) -> None:
    """In a write: delete the person `pid` if none of their embeddings is left."""
    con.execute(
        "DELETE FROM people WHERE id = ? AND NOT EXISTS "
        "(SELECT 1 FROM embeddings WHERE person_id = ?)",
        (pid, pid),
    )


def new_rows(
    result: EnrollResult, vecs, sources, hashes, boxes, owner: Callable[[str], str | None]
) -> Iterator[tuple[np.ndarray, str | None, str | None, str | None]]:
    """(vector, source, hash, box as JSON) for each embedding to add to `result.name`, in order.

    `owner(hash)` names whoever has that photo hash stored, or None. A photo stored for this
    person, or twice in this call, is skipped (its source, else its hash, goes to
    result.skipped); one stored for someone else is refused. Lazy: a store that inserts row
    by row sees its own earlier rows in `owner`.
    """
    seen = set()
    for vec, src, digest, box in zip(vecs, sources, hashes, boxes, strict=True):
        if digest is not None:
            other = owner(digest)
            if other is not None and other != result.name:
                raise ConvlensError(
                    f"{src or 'photo'}: already enrolled as {other!r}, not enrolling "
                    f"it as {result.name!r}"
                )
            if other is not None or digest in seen:
                result.skipped.append(src or digest)
                continue
            seen.add(digest)
        yield vec, src, digest, json.dumps([int(v) for v in box]) if box is not None else None


class EnrolmentRows:
    """GalleryStore's enrolment writes (records the encoder, adds rows)."""

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

    def _enrolment(self, model_id: str, dim: int, fn):
        """fn(connection, timestamp) in one write transaction that first records the encoder
        (or refuses another one): how every enrolment starts, on either backend."""

        def tx(con):
            self._claim_model(con, model_id, dim)
            return fn(con, now())

        return self.write(tx)

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
        """The rows of Gallery.enroll_embeddings (which says what is skipped and what refused),
        written in one transaction."""
        name, vecs, sources, hashes, boxes = checked_enrolment(
            self, name, embeddings, model_id, sources, hashes, boxes
        )
        result = EnrollResult(name)

        def tx(con, stamp):
            con.execute("INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)", (name, stamp))
            pid = con.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]

            def owner(digest):
                row = con.execute(
                    "SELECT p.name FROM embeddings e JOIN people p ON p.id = e.person_id "
                    "WHERE e.sha256 = ? LIMIT 1",
                    (digest,),
                ).fetchone()
                return row[0] if row else None

            rows = [
                (pid, src, digest, box_json, vec.tobytes(), stamp)
                for vec, src, digest, box_json in new_rows(
                    result, vecs, sources, hashes, boxes, owner
                )
            ]
            first = _last_id(con)
            for row in rows:
                cur = con.execute(
                    "INSERT INTO embeddings (person_id, source, sha256, box, vector, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                result.added.append(int(cur.lastrowid))
            _seal(con, first)
            con.executemany(
                "INSERT INTO change_log (embedding_id, op) VALUES (?, 1)",
                [(i,) for i in result.added],
            )
            if not result.added:  # nothing new: do not leave an empty person behind
                drop_if_empty(con, pid)

        self._enrolment(model_id, vecs.shape[1], tx)
        return result

    def enroll_batch(
        self, names: Sequence[str], embeddings: np.ndarray, model_id: str
    ) -> list[int]:
        """Bulk load: one embedding per name (people created as needed), one transaction."""
        names, vecs = checked_batch(self, names, embeddings, model_id)

        def tx(con, stamp):
            con.executemany(
                "INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)",
                ((n, stamp) for n in names),
            )
            first = _last_id(con)
            con.executemany(
                "INSERT INTO embeddings (person_id, vector, created) "
                "SELECT id, ?, ? FROM people WHERE name = ?",
                ((v.tobytes(), stamp, n) for v, n in zip(vecs, names, strict=True)),
            )
            _seal(con, first)
            ids = [
                r[0]
                for r in con.execute("SELECT id FROM embeddings WHERE id > ? ORDER BY id", (first,))
            ]
            con.executemany(
                "INSERT INTO change_log (embedding_id, op) VALUES (?, 1)", ((i,) for i in ids)
            )
            return ids

        return self._enrolment(model_id, vecs.shape[1], tx)


def checked_enrolment(store, name, embeddings, model_id, sources, hashes, boxes):
    """enroll_embeddings' arguments checked against a store (SQLite or PostgreSQL): the name,
    the encoder, the vectors' shape, and one source, hash and box (or None) per vector."""
    name = store.check_name(name)
    if not model_id:
        raise ConvlensError("enroll_embeddings needs the encoder's model_id")
    store.check_model(model_id)
    vecs = _search.check_vectors(embeddings, store.dim)
    n = len(vecs)
    sources = list(sources) if sources is not None else [None] * n
    hashes = list(hashes) if hashes is not None else [None] * n
    boxes = list(boxes) if boxes is not None else [None] * n
    if not (len(sources) == len(hashes) == len(boxes) == n):
        raise ConvlensError("sources, hashes and boxes must match the embeddings in number")
    return name, vecs, sources, hashes, boxes


def checked_batch(store, names, embeddings, model_id):
    """enroll_batch's arguments checked against a store: the encoder, the vectors' shape, and
    one valid name per vector."""
    if not model_id:
        raise ConvlensError("enroll_batch needs the encoder's model_id")
    store.check_model(model_id)
    vecs = _search.check_vectors(embeddings, store.dim)
    names = [store.check_name(n) for n in names]
    if len(names) != len(vecs):
        raise ConvlensError("enroll_batch needs one name per embedding")
    return names, vecs
