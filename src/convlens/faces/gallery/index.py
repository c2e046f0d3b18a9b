"""Gallery search: an exact in-memory cache, and a FAISS ANN index caught up from the log.

Search is exact (torch) up to search.ANN_MIN_SIZE embeddings, a FAISS IVF index beside the
database above (`<db>.index`), kept up to date from the change log; see faces/search.py.
Both give, per query, the k nearest people by the min rule: a query's distance to a person
is the distance to that person's nearest enrolled embedding.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import search as _search
from convlens.faces.gallery.storage import GalleryStore


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
        snap = _Snapshot(
            self.store.count(),
            self.store.last_change(),
            self.store.dim,
            self.store.meta("gallery_uuid"),
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

    def _save(self) -> None:
        # A read-only folder: the index is rebuilt in memory next time.
        with contextlib.suppress(OSError):
            self.ann.save(self.path)

    def _catch_up(self, ann: _search.AnnIndex, last: int) -> None:
        """Apply the change log after the index's seq: erase, then add what is still there."""
        log = self.store.changes_since(ann.header.seq)
        removed = np.asarray([i for i, op in log if op < 0], np.int64)
        added = {i for i, op in log if op > 0} - set(removed.tolist())
        ann.remove(removed)
        if added:
            ids = np.asarray(sorted(added), np.int64)
            vecs, names = self.store.fetch(ids, self.snapshot().dim)
            keep = np.asarray([nm is not None for nm in names])
            ann.remove(ids[keep])  # idempotent if a previous catch-up already added them
            ann.add(ids[keep], vecs[keep])
        ann.header.seq = last

    def sync(self, build: bool) -> _search.AnnIndex | None:
        """Bring the ANN index up to date with the change log (loading or building it)."""
        snap = self.snapshot()
        n, last = snap.size, snap.last_change
        ann = self.ann
        if ann is not None and ann.header.seq == last and not ann.needs_rebuild(n):
            if ann.dirty:
                self._save()
            return ann
        if ann is None and self.path.exists():
            ann = _search.AnnIndex.load(self.path)
        if ann is not None and (
            ann.header.gallery_uuid != snap.gallery_uuid
            or ann.header.seq > last
            or ann.header.dim != snap.dim
        ):
            ann = None  # another gallery's, or from the future: rebuild
        if ann is not None and ann.header.seq < last:
            self._catch_up(ann, last)
        if ann is not None and ann.needs_rebuild(n):
            ann = None
        if ann is None and build and n:
            ids, vecs = self.store.vectors_by_id()
            ann = _search.AnnIndex.build(ids, vecs, snap.gallery_uuid, last)
            ann.dirty = True
        self.ann = ann
        if ann is not None and ann.dirty:
            self._save()
        return ann

    def erased(self) -> None:
        """After a forget: drop the erased codes from an index that exists."""
        if self.ann is None and not self.path.exists():
            return
        self.sync(build=False)

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
