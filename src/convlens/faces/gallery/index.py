"""Gallery search: an exact in-memory cache, and a FAISS ANN index caught up from the log.

Search is exact (torch) up to search.ANN_MIN_SIZE embeddings, a FAISS IVF index beside the
database above (`<db>.index`), kept up to date from the change log; see faces/search.py.
Both give, per query, the k nearest people by the min rule: a query's distance to a person
is the distance to that person's nearest enrolled embedding.

The index file is derived data that holds (quantised) faces, so it follows the database in
erasure and permissions: it is written under an exclusive lock (`<db>.index.lock`), caught
up from the change log under that lock (nothing forgotten meanwhile is written back), with the
database file's mode; after a forget every index file is caught up or deleted and killed
writers' temporary files are removed. A damaged index (checksum mismatch, load failure) is
rebuilt from the database with a warning, recorded in `repairs`.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import search as _search
from convlens.faces.gallery.files import follow_mode, remove_stale_temps
from convlens.faces.gallery.storage import GalleryStore

log = logging.getLogger("convlens.gallery")


@dataclass
class _Exact:
    """Every embedding in memory, grouped by person, for exact search."""

    person_idx: object  # torch int64 (n,): row -> index into names
    offsets: np.ndarray
    names: list[str]
    vectors: object  # torch float32 (n, dim)
    vec_sq: object  # torch float32 (n,)


@dataclass(frozen=True)
class _Snapshot:
    size: int  # embeddings stored
    last_change: int  # change-log seq
    dim: int | None
    gallery_uuid: str | None


class GalleryIndex:
    """k-nearest people for query embeddings, kept consistent with the store's contents."""

    def __init__(self, store: GalleryStore):
        self.store = store
        self.ann: _search.AnnIndex | None = None
        self._exact: tuple[tuple[int, int], _Exact] | None = None
        self._snap: tuple[tuple[int, int], _Snapshot] | None = None
        self.repairs: list[str] = []  # damaged index files found and rebuilt, as messages

    @property
    def path(self) -> Path:
        return self.store.path.with_name(self.store.path.name + ".index")

    def close(self) -> None:
        if self.ann is not None and self.ann.dirty:
            # Catch up first: never write back codes that another process has forgotten.
            with contextlib.suppress(ConvlensError, sqlite3.Error):
                self.sync(build=False)

    def snapshot(self) -> _Snapshot:
        """Size, last change, dim and uuid, cached until the database changes."""
        version = self.store.version()
        if self._snap is not None and self._snap[0] == version:
            return self._snap[1]
        store = self.store
        snap = store.read(
            lambda con: _Snapshot(
                store.count(), store.last_change(), store.dim, store.meta("gallery_uuid")
            )
        )
        self._snap = (version, snap)
        return snap

    def _load_exact(self) -> _Exact:
        """Every embedding in memory (exact search), reloaded when the database changed."""
        import torch

        version = self.store.version()
        if self._exact is not None and self._exact[0] == version:
            return self._exact[1]
        pids, vecs, names = self.store.vectors_by_person()
        uniq, person_idx, counts = np.unique(pids, return_inverse=True, return_counts=True)
        vectors = torch.from_numpy(vecs.copy())
        exact = _Exact(
            person_idx=torch.from_numpy(person_idx.astype(np.int64)),
            offsets=np.r_[0, np.cumsum(counts)],
            names=[names[int(p)] for p in uniq],
            vectors=vectors,
            vec_sq=(vectors * vectors).sum(1),
        )
        self._exact = (version, exact)
        return exact

    @contextlib.contextmanager
    def _locked(self):
        """Exclusive lock for writing index files (yields False where none can be taken: a
        read-only folder, where no index is written either)."""
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = open(lock, "a+b")  # noqa: SIM115 - held for the duration of the block
        except OSError:
            yield False
            return
        with fd:
            follow_mode(lock, self.store.path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield True

    def _save(self, ann: _search.AnnIndex) -> None:
        with self._locked() as locked:
            if locked:
                self._write(ann)

    def _write(self, ann: _search.AnnIndex) -> None:
        """Under the lock: catch up (an erasure committed meanwhile is applied), then write."""
        self._catch_up(ann)
        remove_stale_temps(self.path)
        with contextlib.suppress(OSError):  # a read-only folder: rebuilt in memory next time
            ann.save(self.path, mode_of=self.store.path)

    def _load(self) -> _search.AnnIndex | None:
        """The index file, or None when there is none or it is damaged (then it is rebuilt,
        with a warning, and the repair recorded)."""
        try:
            return _search.AnnIndex.load(self.path)
        except _search.IndexDamaged as e:
            message = f"{e}; rebuilding it from the database"
            log.warning("convlens: %s", message)
            self.repairs.append(message)
            return None

    def _usable(self, ann: _search.AnnIndex, snap: _Snapshot) -> bool:
        """Not another gallery's index, nor one from the future, nor of another width."""
        h = ann.header
        return (
            h.gallery_uuid == snap.gallery_uuid
            and h.seq <= snap.last_change
            and (h.dim == snap.dim)
        )

    def _catch_up(self, ann: _search.AnnIndex) -> None:
        """Apply the change log after the index's seq: erase, then add what is still there."""
        log_rows = self.store.changes_since(ann.header.seq)
        if not log_rows:
            return
        removed = np.asarray([i for _, i, op in log_rows if op < 0], np.int64)
        added = {i for _, i, op in log_rows if op > 0} - set(removed.tolist())
        ann.remove(removed)
        if added:
            ids = np.asarray(sorted(added), np.int64)
            vecs, names = self.store.fetch(ids, ann.header.dim)
            keep = np.asarray([nm is not None for nm in names])
            ann.remove(ids[keep])  # idempotent if a previous catch-up already added them
            ann.add(ids[keep], vecs[keep])
        ann.header.seq = log_rows[-1][0]
        ann.dirty = True

    def sync(self, build: bool) -> _search.AnnIndex | None:
        """Bring the ANN index up to date with the change log (loading or building it)."""
        snap = self.snapshot()
        n, last = snap.size, snap.last_change
        ann = self.ann
        if ann is not None and ann.header.seq == last and not ann.needs_rebuild(n):
            if ann.dirty:
                self._save(ann)
            return ann
        if ann is None:
            ann = self._load()
        if ann is not None and not self._usable(ann, snap):
            ann = None  # another gallery's, or from the future: rebuild
        if ann is not None and ann.header.seq < last:
            self._catch_up(ann)
        if ann is not None and ann.needs_rebuild(n):
            ann = None
        if ann is None and build and n:
            ids, vecs = self.store.vectors_by_id()
            ann = _search.AnnIndex.build(ids, vecs, snap.gallery_uuid, last)
            ann.dirty = True
        self.ann = ann
        if ann is not None and ann.dirty:
            self._save(ann)
        return ann

    def erased(self, forgotten: np.ndarray | None) -> list[str]:
        """After a forget: no index file may keep the erased codes. Every index file is
        caught up (even one due for a rebuild) or deleted — deleted too when a coarse
        centroid is one of the `forgotten` vectors (None: not known, so always) — and killed
        writers' temporary files are removed. Returns what could not be done, as messages."""
        problems = []
        if self.ann is None and not self.path.exists() and not self._temps():
            return problems  # no index, and nobody is writing one
        with self._locked():
            left = remove_stale_temps(self.path)
            problems += [f"{p}: a temporary index file could not be removed" for p in left]
            ann = self.ann if self.ann is not None else self._load()
            if ann is not None and not self._usable(ann, self._fresh_snapshot()):
                ann = None
            if ann is not None and (forgotten is None or ann.centroid_of(forgotten)):
                ann = None  # rebuilt without them by the next search
            self.ann = ann
            if ann is None:
                try:
                    self.path.unlink(missing_ok=True)
                except OSError as e:
                    problems.append(f"{self.path}: cannot be removed ({e.strerror})")
                return problems
            self._catch_up(ann)
            try:
                ann.save(self.path, mode_of=self.store.path)
            except OSError as e:
                if self.path.exists():
                    problems.append(f"{self.path}: cannot be rewritten ({e.strerror})")
        return problems

    def _temps(self) -> list:
        return list(self.path.parent.glob(glob.escape(self.path.name) + ".*.tmp"))

    def _fresh_snapshot(self) -> _Snapshot:
        self._snap = None
        return self.snapshot()

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[tuple[str, float]]]:
        """Per query, the k nearest people as (name, Euclidean distance), min rule."""
        snap = self.snapshot()
        q = _search.check_vectors(queries, snap.dim)
        if snap.size == 0:
            return [[] for _ in q]
        if snap.size < _search.ANN_MIN_SIZE:
            ex = self._load_exact()
            d, top = _search.exact_people_knn(
                q, ex.vectors, ex.vec_sq, ex.person_idx, ex.offsets, k
            )
            return [
                [(ex.names[j], float(d[r, c])) for c, j in enumerate(top[r])] for r in range(len(q))
            ]
        ann = self.sync(build=True)
        out = []
        for qv in q:
            shortlist = max(64, 16 * k)
            cand = ann.shortlist(qv[None], shortlist)[0]
            cand = cand[cand >= 0]
            vecs, names = self.store.fetch(cand, snap.dim)
            d = np.sqrt(((vecs - qv) ** 2).sum(1))
            best: dict[str, float] = {}
            for nm, dist in zip(names, d, strict=True):
                if nm is not None and dist < best.get(nm, np.inf):
                    best[nm] = float(dist)
            out.append(sorted(best.items(), key=lambda t: t[1])[:k])
        return out
