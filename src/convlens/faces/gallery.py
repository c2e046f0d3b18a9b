"""A persistent face gallery: people, their embeddings, the encoder's id and the threshold.

Storage is one SQLite file (WAL mode, busy timeout, `secure_delete`): every enrolment,
forget and rename is one `BEGIN IMMEDIATE` transaction, so concurrent writers wait for each
other instead of failing, and a process killed mid-enrolment loses only that enrolment.
Before SQLite touches an existing file its header is checked (SQLite magic, then our
`application_id`); a foreign or corrupt file raises ConvlensError and is left byte-for-byte
as it was. A gallery remembers the encoder's `model_id` and refuses embeddings of another.

Photos of one person are combined by the *min* rule: a query's distance to a person is the
distance to that person's nearest enrolled embedding (measured against the mean embedding in
benchmarks/orl_accuracy.py; see benchmarks/results/orl_accuracy.md).

Search is exact (torch) up to search.ANN_MIN_SIZE embeddings, a FAISS IVF index beside the
database above (`<db>.index`), kept up to date from a change log; see search.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import search as _search

SCHEMA_VERSION = 1
APPLICATION_ID = 0x636C6E73  # "clns" in the SQLite header, offset 68
SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_THRESHOLD = 0.6  # dlib's convention for its ResNet encoder, until calibrated
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Verdict:
    """1:1 answer. `distance` is Euclidean, or 1 − p(same) when a verifier scored it."""

    match: bool
    distance: float
    threshold: float
    name: str = ""
    box: tuple[int, int, int, int] | None = None
    scorer: str = "distance"


@dataclass(frozen=True)
class Candidate:
    name: str
    distance: float


@dataclass
class FaceMatch:
    """1:K answer for one face: the best name (None when farther than the threshold)."""

    box: tuple[int, int, int, int] | None
    name: str | None
    distance: float | None
    candidates: list[Candidate]
    threshold: float
    scorer: str = "distance"

    def to_json(self) -> dict:
        return {
            "box": list(self.box) if self.box is not None else None,
            "name": self.name,
            "distance": None if self.distance is None else round(float(self.distance), 6),
            "candidates": [
                {"name": c.name, "distance": round(float(c.distance), 6)} for c in self.candidates
            ],
        }


@dataclass
class Person:
    id: int
    name: str
    created: str
    photos: int


@dataclass
class EnrollResult:
    name: str
    added: list[int] = field(default_factory=list)  # embedding ids
    skipped: list[str] = field(default_factory=list)  # duplicate photos, already enrolled


def _file_hash(photo) -> str | None:
    if isinstance(photo, str | os.PathLike):
        h = hashlib.sha256()
        with open(photo, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    if isinstance(photo, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(photo).tobytes()).hexdigest()
    return None


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


class Gallery:
    """Enrol, forget, rename, identify (1:K) and verify (1:1) against a gallery file.

    encoder: an nn.Module face encoder (with `model_id`) or a model path for
    `load_face_model`; None loads the default encoder when a photo first needs encoding.
    model_id: the encoder id for embedding-only use (`enroll_embeddings`, ...), e.g. in tests.
    verifier: a trained verifier (verifier.py) or its path; scores pairs instead of distance.
    encode_options: keyword arguments for `faces.encode` (detector, upsample, flip); the
    detector defaults to "auto".
    """

    def __init__(
        self,
        path: str | os.PathLike,
        encoder=None,
        *,
        model_id: str | None = None,
        verifier=None,
        encode_options: dict | None = None,
        create: bool = True,
    ):
        self.path = Path(path)
        self._encoder = encoder
        self._encoder_loaded = encoder is not None and not isinstance(encoder, str | os.PathLike)
        self._model_id = model_id
        if self._encoder_loaded:
            self._model_id = getattr(encoder, "model_id", model_id)
        # "auto": HOG first, more upsampling and then the CNN only when HOG finds nothing
        # (benchmarks/results/orl_accuracy.md: 400/400 ORL faces found instead of 394).
        self.encode_options = {"detector": "auto", **(encode_options or {})}
        self._verifier = verifier
        self._cache = None  # (data_version, person_idx, offsets, names, vectors, vec_sq)
        self._snap = None  # (data_version, Snapshot)
        self._ann: _search.AnnIndex | None = None
        exists = check_gallery_file(self.path)
        if not exists and not create:
            raise ConvlensError(f"{self.path}: no such gallery")
        if not exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise ConvlensError(f"{self.path}: cannot open gallery ({e})") from None
        try:
            self._setup(exists)
        except sqlite3.DatabaseError as e:
            self._con.close()
            raise ConvlensError(f"{self.path}: corrupt gallery database ({e})") from None
        except BaseException:
            self._con.close()
            raise
        if self._model_id is not None:
            try:
                self._check_model(self._model_id)
            except BaseException:
                self._con.close()
                raise

    # -- opening -----------------------------------------------------------------------------

    def _setup(self, exists: bool) -> None:
        con = self._con
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA secure_delete = ON")
        if not exists:
            self._create()
        row = self._one("SELECT MAX(version) FROM schema_version")
        version = row[0] if row else None
        if version is None:
            raise ConvlensError(f"{self.path}: gallery has no schema version; corrupt")
        if version > SCHEMA_VERSION:
            raise ConvlensError(
                f"{self.path}: gallery schema {version} is newer than this convlens "
                f"understands ({SCHEMA_VERSION}); upgrade convlens"
            )
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            self._retry(lambda: con.execute("PRAGMA journal_mode = WAL"))
        con.execute("PRAGMA synchronous = NORMAL")

    def _create(self) -> None:
        con = self._con
        # Rollback-journal mode while creating, so the header (application_id) lands in the
        # main file at commit; WAL is switched on right after.
        con.execute("BEGIN IMMEDIATE")
        try:
            has = con.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"
            ).fetchone()
            if has is None:
                others = con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
                if others:
                    raise ConvlensError(
                        f"{self.path}: not a convlens gallery; refusing to touch it"
                    )
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION, _now()))
                con.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("gallery_uuid", uuid.uuid4().hex), ("created", _now())],
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _retry(self, fn, attempts: int = 200):
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        if self._ann is not None and self._ann.dirty:
            # Catch up first: never write back codes that another process has forgotten.
            with contextlib.suppress(ConvlensError, sqlite3.Error):
                self._sync_index(build=False)
        self._con.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- small helpers -----------------------------------------------------------------------

    def _one(self, sql: str, args: Sequence = ()):
        try:
            return self._con.execute(sql, args).fetchone()
        except sqlite3.DatabaseError as e:
            raise ConvlensError(f"{self.path}: gallery database error ({e})") from None

    def _all(self, sql: str, args: Sequence = ()):
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise ConvlensError(f"{self.path}: gallery database error ({e})") from None

    def _meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def _write(self, fn):
        """Run fn(con) in one IMMEDIATE transaction (writers queue on the busy timeout)."""
        con = self._con
        try:
            self._retry(lambda: con.execute("BEGIN IMMEDIATE"))
            try:
                result = fn(con)
                con.execute("COMMIT")
                self._cache = self._snap = None  # own commits do not move data_version
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            raise ConvlensError(f"{self.path}: gallery database error ({e})") from None
        return result

    @property
    def model_id(self) -> str | None:
        """The encoder id stored in the gallery (None until the first enrolment)."""
        return self._meta("model_id")

    @property
    def dim(self) -> int | None:
        value = self._meta("dim")
        return int(value) if value is not None else None

    def _check_model(self, model_id: str) -> None:
        stored = self._meta("model_id")
        if stored is not None and stored != model_id:
            raise ConvlensError(
                f"{self.path}: gallery was built with encoder {stored!r}, not {model_id!r}; "
                "embeddings of different encoders are not comparable (use another --db)"
            )

    # -- threshold ---------------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        """τ for raw distances: calibrated if `set_threshold` stored one, else 0.6."""
        value = self._meta("threshold")
        return float(value) if value is not None else DEFAULT_THRESHOLD

    @property
    def threshold_info(self) -> dict:
        raw = self._meta("threshold_info")
        info = json.loads(raw) if raw else {"source": "default (dlib convention)"}
        info["threshold"] = self.threshold
        return info

    def set_threshold(self, tau: float, info: dict | None = None) -> None:
        tau = float(tau)
        if not np.isfinite(tau) or tau <= 0:
            raise ConvlensError(f"threshold must be a positive number, got {tau}")
        model_id = (info or {}).get("model_id")
        if model_id is not None:
            self._check_model(model_id)

        def tx(con):
            con.execute("INSERT OR REPLACE INTO meta VALUES ('threshold', ?)", (repr(tau),))
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('threshold_info', ?)",
                (json.dumps({**(info or {}), "set": _now()}),),
            )

        self._write(tx)

    # -- people ------------------------------------------------------------------------------

    def people(self) -> list[Person]:
        rows = self._all(
            "SELECT p.id, p.name, p.created, COUNT(e.id) FROM people p "
            "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id ORDER BY p.name"
        )
        return [Person(*r) for r in rows]

    def __len__(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM embeddings")[0])

    def _person_id(self, name: str) -> int:
        row = self._one("SELECT id FROM people WHERE name = ?", (name,))
        if row is None:
            raise ConvlensError(f"no one called {name!r} in the gallery {self.path}")
        return int(row[0])

    @staticmethod
    def _check_name(name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ConvlensError("a person's name must be a non-empty string")
        return name.strip()

    def forget(self, name: str) -> int:
        """Delete the person and every embedding of theirs (database and ANN index).

        Returns how many embeddings were erased. secure_delete overwrites the freed pages and
        the WAL is checkpointed and truncated, so the vectors do not linger in the files.
        """
        name = self._check_name(name)

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

        ids = self._write(tx)
        self._erase_from_index(np.asarray(ids, dtype=np.int64))
        # Readers still active: the WAL is truncated at a later checkpoint.
        with contextlib.suppress(sqlite3.OperationalError):
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(ids)

    def rename(self, old: str, new: str) -> None:
        old, new = self._check_name(old), self._check_name(new)

        def tx(con):
            if con.execute("SELECT 1 FROM people WHERE name = ?", (old,)).fetchone() is None:
                raise ConvlensError(f"no one called {old!r} in the gallery {self.path}")
            if old != new and con.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise ConvlensError(f"{new!r} is already in the gallery; forget them first")
            con.execute("UPDATE people SET name = ? WHERE name = ?", (new, old))

        self._write(tx)

    # -- enrolment ---------------------------------------------------------------------------

    def enroll_embeddings(
        self,
        name: str,
        embeddings: np.ndarray,
        *,
        model_id: str | None = None,
        sources: Sequence[str | None] | None = None,
        hashes: Sequence[str | None] | None = None,
        boxes: Sequence[Sequence[int] | None] | None = None,
    ) -> EnrollResult:
        """Store embeddings for `name` (created if new) in one transaction.

        Rows whose hash is already stored for this person are skipped; a hash stored for
        someone else is refused (one photo cannot show two people's largest face).
        """
        name = self._check_name(name)
        model_id = model_id or self._model_id
        if model_id is None:
            raise ConvlensError("enroll_embeddings needs the encoder's model_id")
        self._check_model(model_id)
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
            now = _now()
            con.execute("INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)", (name, now))
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
                rows.append((pid, src, digest, box_json, vec.tobytes(), now))
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

        self._write(tx)
        if self._model_id is None:
            self._model_id = model_id
        return result

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

    def enroll_batch(
        self, names: Sequence[str], embeddings: np.ndarray, model_id: str | None = None
    ) -> list[int]:
        """Bulk load: one embedding per name (people created as needed), one transaction."""
        model_id = model_id or self._model_id
        if model_id is None:
            raise ConvlensError("enroll_batch needs the encoder's model_id")
        self._check_model(model_id)
        vecs = _search.check_vectors(embeddings, self.dim)
        names = [self._check_name(n) for n in names]
        if len(names) != len(vecs):
            raise ConvlensError("enroll_batch needs one name per embedding")

        def tx(con):
            self._claim_model(con, model_id, vecs.shape[1])
            now = _now()
            con.executemany(
                "INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)",
                ((n, now) for n in names),
            )
            first = con.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings").fetchone()[0]
            con.executemany(
                "INSERT INTO embeddings (person_id, vector, created) "
                "SELECT id, ?, ? FROM people WHERE name = ?",
                ((v.tobytes(), now, n) for v, n in zip(vecs, names, strict=True)),
            )
            ids = [
                r[0]
                for r in con.execute("SELECT id FROM embeddings WHERE id > ? ORDER BY id", (first,))
            ]
            con.executemany(
                "INSERT INTO change_log (embedding_id, op) VALUES (?, 1)", ((i,) for i in ids)
            )
            return ids

        ids = self._write(tx)
        if self._model_id is None:
            self._model_id = model_id
        return ids

    def enroll(self, name: str, photos: Iterable, largest_face: bool = False) -> EnrollResult:
        """Enrol photos of one person; each must show exactly one face (or largest_face=True).

        All photos are encoded first; nothing is stored unless every photo is usable.
        """
        photos = [photos] if isinstance(photos, str | os.PathLike | np.ndarray) else list(photos)
        if not photos:
            raise ConvlensError("enroll needs at least one photo")
        embs, sources, hashes, boxes = [], [], [], []
        for photo in photos:
            label = str(photo) if isinstance(photo, str | os.PathLike) else "photo"
            found = self._encode(photo)
            if not found:
                raise ConvlensError(f"{label}: no face found; not enrolled")
            if len(found) > 1 and not largest_face:
                raise ConvlensError(
                    f"{label}: {len(found)} faces found; enrol a photo with one face, "
                    "or pass --largest to use the largest"
                )
            face = found[0]  # faces.encode returns the largest first
            embs.append(face.embedding)
            sources.append(str(Path(photo).resolve()) if label != "photo" else None)
            hashes.append(_file_hash(photo))
            boxes.append(tuple(int(v) for v in face.box))
        return self.enroll_embeddings(
            name,
            np.stack(embs),
            model_id=self.encoder_model_id(),
            sources=sources,
            hashes=hashes,
            boxes=boxes,
        )

    # -- encoder -----------------------------------------------------------------------------

    @property
    def encoder(self):
        if not self._encoder_loaded:
            from convlens.models.face_models import load_face_model

            self._encoder = load_face_model(self._encoder)
            self._encoder_loaded = True
            self._model_id = self._encoder.model_id
            self._check_model(self._model_id)
        return self._encoder

    def encoder_model_id(self) -> str:
        return self.encoder.model_id

    def _encode(self, photo) -> list:
        from convlens import faces

        return faces.encode(photo, model=self.encoder, **self.encode_options)

    # -- verifier ----------------------------------------------------------------------------

    @property
    def verifier(self):
        if self._verifier is not None and isinstance(self._verifier, str | os.PathLike):
            from convlens.faces.verifier import load_verifier

            self._verifier = load_verifier(self._verifier)
        if self._verifier is not None:
            vid = getattr(self._verifier, "model_id", None)
            stored = self.model_id
            if vid and stored and vid != stored:
                raise ConvlensError(
                    f"verifier was trained on encoder {vid!r} embeddings; gallery holds {stored!r}"
                )
        return self._verifier

    def _tau(self) -> tuple[float, str]:
        v = self.verifier
        if v is not None:
            return 1.0 - float(v.threshold), "verifier"
        return self.threshold, "distance"

    # -- search ------------------------------------------------------------------------------

    def _index_path(self) -> Path:
        return self.path.with_name(self.path.name + ".index")

    def _load_all(self):
        """Every embedding in memory (exact search), reloaded when the database changed."""
        version = self._one("PRAGMA data_version")[0]
        if self._cache is not None and self._cache[0] == version:
            return self._cache
        rows = self._all(
            "SELECT e.person_id, e.vector FROM embeddings e ORDER BY e.person_id, e.id"
        )
        names = dict(self._all("SELECT id, name FROM people"))
        dim = self.dim or 0
        if rows:
            pids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
        else:
            pids = np.zeros(0, np.int64)
            vecs = np.zeros((0, dim), np.float32)
        uniq, person_idx, counts = np.unique(pids, return_inverse=True, return_counts=True)
        person_names = [names[int(p)] for p in uniq]
        offsets = np.r_[0, np.cumsum(counts)]
        import torch

        vectors = torch.from_numpy(vecs.copy())
        vec_sq = (vectors * vectors).sum(1)
        person_idx = torch.from_numpy(person_idx.astype(np.int64))
        self._cache = (version, person_idx, offsets, person_names, vectors, vec_sq)
        return self._cache

    def _fetch(self, ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """float32 vectors and person names of these embedding ids, in order."""
        marks = ",".join("?" * len(ids))
        rows = self._all(
            f"SELECT e.id, e.vector, p.name FROM embeddings e JOIN people p "
            f"ON p.id = e.person_id WHERE e.id IN ({marks})",
            [int(i) for i in ids],
        )
        by_id = {r[0]: r for r in rows}
        dim = self._snapshot()[2]
        vecs = np.zeros((len(ids), dim), np.float32)
        names = []
        for j, i in enumerate(ids):
            r = by_id.get(int(i))
            if r is None:  # deleted since the index was updated
                vecs[j] = np.inf
                names.append(None)
            else:
                vecs[j] = np.frombuffer(r[1], np.float32)
                names.append(r[2])
        return vecs, names

    def _save_index(self) -> None:
        # A read-only folder: the index is rebuilt in memory next time.
        with contextlib.suppress(OSError):
            self._ann.save(self._index_path())

    def _snapshot(self) -> tuple[int, int, int | None, str]:
        """(embeddings, last change-log seq, dim, gallery uuid), cached until a commit."""
        version = self._one("PRAGMA data_version")[0]
        if self._snap is not None and self._snap[0] == version:
            return self._snap[1]
        snap = (
            len(self),
            self._one("SELECT COALESCE(MAX(seq), 0) FROM change_log")[0],
            self.dim,
            self._meta("gallery_uuid"),
        )
        self._snap = (version, snap)
        return snap

    def _sync_index(self, build: bool) -> _search.AnnIndex | None:
        """Bring the ANN index up to date with the change log (loading or building it)."""
        n, last, dim, uid = self._snapshot()
        ann = self._ann
        if ann is not None and ann.header.seq == last and not ann.needs_rebuild(n):
            if ann.dirty:
                self._save_index()
            return ann
        if ann is None and self._index_path().exists():
            ann = _search.AnnIndex.load(self._index_path())
        if ann is not None and (
            ann.header.gallery_uuid != uid or ann.header.seq > last or ann.header.dim != dim
        ):
            ann = None  # another gallery's, or from the future: rebuild
        if ann is not None and ann.header.seq < last:
            log = self._all(
                "SELECT embedding_id, op FROM change_log WHERE seq > ? ORDER BY seq",
                (ann.header.seq,),
            )
            removed = np.asarray([i for i, op in log if op < 0], np.int64)
            added = {i for i, op in log if op > 0} - set(removed.tolist())
            ann.remove(removed)
            if added:
                ids = np.asarray(sorted(added), np.int64)
                vecs, names = self._fetch(ids)
                keep = np.asarray([nm is not None for nm in names])
                ann.remove(ids[keep])  # idempotent if a previous catch-up already added them
                ann.add(ids[keep], vecs[keep])
            ann.header.seq = last
        if ann is not None and ann.needs_rebuild(n):
            ann = None
        if ann is None and build and n:
            rows = self._all("SELECT id, vector FROM embeddings ORDER BY id")
            ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)
            ann = _search.AnnIndex.build(ids, vecs, uid, last)
            ann.dirty = True
        self._ann = ann
        if ann is not None and ann.dirty:
            self._save_index()
        return ann

    def _erase_from_index(self, ids: np.ndarray) -> None:
        if self._ann is None and not self._index_path().exists():
            return
        self._sync_index(build=False)

    def search_embeddings(self, queries: np.ndarray, k: int = 1) -> list[list[tuple[str, float]]]:
        """Per query, the k nearest people as (name, Euclidean distance), min rule."""
        n, _, dim, _ = self._snapshot()
        q = _search.check_vectors(queries, dim)
        if n == 0:
            return [[] for _ in q]
        if n < _search.ANN_MIN_SIZE:
            _, person_idx, offsets, names, vectors, vec_sq = self._load_all()
            d, top = _search.exact_people_knn(q, vectors, vec_sq, person_idx, offsets, k)
            return [
                [(names[j], float(d[r, c])) for c, j in enumerate(top[r])] for r in range(len(q))
            ]
        ann = self._sync_index(build=True)
        out = []
        for qv in q:
            shortlist = max(64, 16 * k)
            cand = ann.shortlist(qv[None], shortlist)[0]
            cand = cand[cand >= 0]
            vecs, names = self._fetch(cand)
            d = np.sqrt(((vecs - qv) ** 2).sum(1))
            best: dict[str, float] = {}
            for nm, dist in zip(names, d, strict=True):
                if nm is not None and dist < best.get(nm, np.inf):
                    best[nm] = float(dist)
            out.append(sorted(best.items(), key=lambda t: t[1])[:k])
        return out

    def _person_vectors(self, name: str) -> np.ndarray:
        pid = self._person_id(name)
        rows = self._all("SELECT vector FROM embeddings WHERE person_id = ?", (pid,))
        return np.frombuffer(b"".join(r[0] for r in rows), np.float32).reshape(len(rows), -1)

    def _score(self, query: np.ndarray, vectors: np.ndarray) -> float:
        """Min over the person's embeddings of distance, or of 1 − p(same) with a verifier."""
        v = self.verifier
        if v is not None:
            p = v.probability(np.broadcast_to(query, vectors.shape), vectors)
            return float(1.0 - np.max(p))
        return float(np.sqrt(((vectors - query) ** 2).sum(1)).min())

    def identify_embeddings(
        self, queries: np.ndarray, k: int = 1, boxes: Sequence | None = None
    ) -> list[FaceMatch]:
        q = _search.check_vectors(queries, self.dim)
        tau, scorer = self._tau()
        ranked = self.search_embeddings(q, k=max(k, 5) if scorer == "verifier" else k)
        out = []
        for r, cands in enumerate(ranked):
            if scorer == "verifier":
                # Shortlist by distance, then score each candidate person with the verifier.
                cands = [(nm, self._score(q[r], self._person_vectors(nm))) for nm, _ in cands]
                cands = sorted(cands, key=lambda t: t[1])[:k]
            candidates = [Candidate(nm, d) for nm, d in cands]
            best = candidates[0] if candidates else None
            name = best.name if best is not None and best.distance <= tau else None
            box = tuple(boxes[r]) if boxes is not None else None
            out.append(
                FaceMatch(box, name, best.distance if best else None, candidates, tau, scorer)
            )
        return out

    def verify_embedding(self, query: np.ndarray, name: str) -> Verdict:
        q = _search.check_vectors(query, self.dim)[0]
        d = self._score(q, self._person_vectors(self._check_name(name)))
        tau, scorer = self._tau()
        return Verdict(d <= tau, d, tau, name, None, scorer)

    def identify(self, photo, k: int = 1) -> list[FaceMatch]:
        """Every face in the photo with its k best candidates; name None beyond τ."""
        found = self._encode(photo)
        if not found:
            return []
        self._check_model(self.encoder_model_id())
        embs = np.stack([f.embedding for f in found])
        return self.identify_embeddings(
            embs, k=k, boxes=[tuple(int(v) for v in f.box) for f in found]
        )

    def verify(self, photo, name: str) -> Verdict:
        """Is the (largest) face in the photo `name`? Refuses a photo with no face."""
        self._person_id(self._check_name(name))
        found = self._encode(photo)
        if not found:
            label = str(photo) if isinstance(photo, str | os.PathLike) else "photo"
            raise ConvlensError(f"{label}: no face found")
        self._check_model(self.encoder_model_id())
        v = self.verify_embedding(found[0].embedding, name)
        return Verdict(
            v.match, v.distance, v.threshold, name, tuple(int(x) for x in found[0].box), v.scorer
        )
