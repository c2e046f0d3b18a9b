"""Nearest-neighbour search over face embeddings: exact for small galleries, FAISS IVF above.

Exact search (`exact_knn`) is a chunked matrix product in torch: squared distances by
|q|² + |v|² − 2 q·v per chunk, a running top-k, then the winners' distances recomputed
directly from the differences so that small distances carry no cancellation error.

Above `ANN_MIN_SIZE` embeddings a FAISS inverted-file index with 8-bit scalar-quantised
codes (`IndexIVFScalarQuantizer`) gives a shortlist that the caller re-ranks exactly with the
float32 vectors (`AnnIndex.search` takes a `fetch` callback that returns them). Why IVF and
not HNSW: IVF lists support real `add_with_ids` / `remove_ids`, so enrolling adds and
forgetting *erases* the person's codes from the index at once — no tombstones that keep
biometric data around until a rebuild — and building it for 10⁶ vectors takes seconds, not
the minutes HNSW takes on two cores. The coarse quantizer is trained once; the index is rebuilt
from the database only when it is missing, belongs to another gallery, or the gallery has grown
past `REBUILD_GROWTH` times the size it was trained for (lists get long, search slows).

The index file is a single file written atomically (temporary file + rename): a magic line, a
JSON header (gallery uuid, last change-log sequence applied, size trained for), a checksum of
header and payload, and the FAISS bytes; a damaged file is detected before FAISS reads it.
The gallery keeps a change log (embedding id, +1 added / −1 removed); an index that is
behind catches up from the log instead of being rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convlens.errors import ConvlensError

# Measured in benchmarks/search.py (benchmarks/results/search.md): exact torch search costs
# ~0.15 ms at 10⁴ and ~20 ms at 10⁵ on two (busy) cores, the IVF index under 1 ms flat; the
# crossover is near 2·10⁴, where an index also builds in about a second.
ANN_MIN_SIZE = 20_000
REBUILD_GROWTH = 4.0
# Format 2 adds a checksum line (blake2b-128 of the header line and the FAISS bytes).
INDEX_MAGIC = b"convlens-ivf-index 2\n"


class IndexDamaged(ConvlensError):
    """The index file is unreadable or fails its checksum; it can be rebuilt from the database."""


def _digest(header: bytes, blob) -> bytes:
    h = hashlib.blake2b(header, digest_size=16)
    h.update(memoryview(blob))
    return h.hexdigest().encode()


if TYPE_CHECKING:
    import torch


def exact_knn(
    queries: np.ndarray | torch.Tensor,
    vectors: torch.Tensor,
    k: int,
    chunk: int = 262_144,
    vec_sq: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `vectors` for each query: (distances (m, k), indices (m, k)).

    Euclidean distances, ascending. k is clipped to the number of vectors.
    """
    import torch

    q = torch.as_tensor(np.asarray(queries, dtype=np.float32)).reshape(-1, vectors.shape[1])
    n = vectors.shape[0]
    k = min(k, n)
    m = q.shape[0]
    if n == 0 or k == 0:
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
    if vec_sq is None:
        vec_sq = (vectors * vectors).sum(1)
    q_sq = (q * q).sum(1, keepdim=True)
    best_d = torch.full((m, 0), float("inf"))
    best_i = torch.zeros((m, 0), dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, n, chunk):
            v = vectors[start : start + chunk]
            d2 = torch.addmm(q_sq + vec_sq[start : start + chunk], q, v.T, alpha=-2.0)
            kk = min(k, v.shape[0])
            d, i = torch.topk(d2, kk, dim=1, largest=False)
            best_d = torch.cat([best_d, d], 1)
            best_i = torch.cat([best_i, i + start], 1)
            if best_d.shape[1] > k:
                best_d, j = torch.topk(best_d, k, dim=1, largest=False)
                best_i = torch.gather(best_i, 1, j)
        # Recompute the winners exactly (q − v)², then sort by the exact distance.
        diff = vectors[best_i] - q[:, None, :]
        exact = diff.pow(2).sum(-1).sqrt()
        exact, j = torch.sort(exact, dim=1)
        best_i = torch.gather(best_i, 1, j)
    return exact.numpy(), best_i.numpy()


def exact_people_knn(
    queries: np.ndarray,
    vectors: torch.Tensor,
    vec_sq: torch.Tensor,
    person_index: torch.Tensor,
    offsets: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest people per query by the min rule: (distances (m, k), person indices).

    vectors are grouped by person (rows offsets[j]:offsets[j+1] belong to person j, whose
    index in person_index is j). Squared distances by matrix product pick the winners; their
    distances are then recomputed directly from the differences (no cancellation error).
    """
    import torch

    q = torch.as_tensor(np.asarray(queries, dtype=np.float32)).reshape(-1, vectors.shape[1])
    n_people = len(offsets) - 1
    k = min(k, n_people)
    with torch.no_grad():
        d2 = torch.addmm((q * q).sum(1, keepdim=True) + vec_sq, q, vectors.T, alpha=-2.0)
        if n_people == vectors.shape[0]:
            per_person = d2  # one embedding each
        else:
            per_person = torch.full((q.shape[0], n_people), float("inf"))
            per_person = per_person.scatter_reduce(
                1, person_index[None, :].expand_as(d2), d2, reduce="amin"
            )
        _, top = torch.topk(per_person, k, dim=1, largest=False)
    top = top.numpy()
    qn = q.numpy()
    vn = vectors.numpy()
    dist = np.empty(top.shape, np.float32)
    for r in range(len(qn)):
        for c, j in enumerate(top[r]):
            rows = vn[offsets[j] : offsets[j + 1]]
            dist[r, c] = np.sqrt(((rows - qn[r]) ** 2).sum(1).min())
        order = np.argsort(dist[r], kind="stable")
        dist[r], top[r] = dist[r][order], top[r][order]
    return dist, top


@dataclass
class IndexHeader:
    gallery_uuid: str
    seq: int  # last change-log sequence number applied
    trained_for: int  # gallery size when the coarse quantizer was trained
    nlist: int
    dim: int


def choose_nlist(n: int) -> int:
    """About 4·√n inverted lists, a power of two between 64 and 16384."""
    target = 4.0 * np.sqrt(max(n, 1))
    return int(2 ** np.clip(round(np.log2(target)), 6, 14))


class AnnIndex:
    """FAISS IVF-SQ8 index of embedding ids, persisted beside the gallery database."""

    def __init__(self, index, header: IndexHeader):
        self.index = index
        self.header = header
        self.nprobe = default_nprobe(header.nlist)
        self.dirty = False

    # -- building and persistence ------------------------------------------------------------

    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, gallery_uuid: str, seq: int, seed: int = 0
    ) -> AnnIndex:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        nlist = choose_nlist(n)
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2
        )
        rng = np.random.default_rng(seed)
        # 40 points per list and 10 k-means rounds: the coarse lists only steer the probe,
        # the shortlist is re-ranked exactly, and training stays seconds at 10⁶.
        sample = vectors[rng.choice(n, min(n, 40 * nlist), replace=False)]
        index.cp.seed = seed
        index.cp.niter = 10
        index.train(sample)
        index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        return cls(index, IndexHeader(gallery_uuid, seq, n, nlist, dim))

    def save(self, path: str | os.PathLike, mode_of: str | os.PathLike | None = None) -> None:
        """Write atomically: a crash leaves either the old file or the new one.

        The temporary file carries this process's pid (gallery/files.py), so a killed
        writer's residue can be recognised and removed; `mode_of`: the file whose permission
        bits the index takes (the gallery database).
        """
        import faiss

        from convlens.faces.gallery.files import follow_mode, temp_path

        path = Path(path)
        blob = faiss.serialize_index(self.index)
        header = json.dumps(self.header.__dict__).encode() + b"\n"
        tmp = temp_path(path)
        try:
            with open(tmp, "xb") as f:
                if mode_of is not None:
                    follow_mode(tmp, Path(mode_of))
                f.write(INDEX_MAGIC)
                f.write(header)
                f.write(_digest(header, blob) + b"\n")
                f.write(memoryview(blob))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.dirty = False

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnnIndex | None:
        """The index in `path`; None when there is none. Raises IndexDamaged when the file is
        unreadable, of an older format, or fails its checksum (header and FAISS bytes), so
        that damage is never handed to FAISS (it answers wrongly or aborts on it)."""
        import faiss

        try:
            with open(path, "rb") as f:
                magic = f.readline()
                header_line = f.readline()
                digest = f.readline().rstrip(b"\n")
                blob = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise IndexDamaged(f"{path}: cannot read the index ({e.strerror})") from None
        if magic != INDEX_MAGIC:
            raise IndexDamaged(f"{path}: not an index of this format")
        if digest != _digest(header_line, blob):
            raise IndexDamaged(f"{path}: index checksum mismatch (damaged file)")
        try:
            header = IndexHeader(**json.loads(header_line))
            index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        except Exception as e:  # noqa: BLE001 - FAISS raises RuntimeError, MemoryError, ...
            raise IndexDamaged(f"{path}: index cannot be loaded ({type(e).__name__})") from None
        return cls(index, header)

    # -- updates -----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )
            self.dirty = True

    def remove(self, ids: np.ndarray) -> int:
        import faiss

        if not len(ids):
            return 0
        removed = self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
        self.dirty = True
        return int(removed)

    def centroid_of(self, vectors: np.ndarray) -> bool:
        """Whether a coarse centroid is (to float precision) one of these vectors: a list
        trained on a single vector stores that vector itself, which erasure must not keep."""
        import faiss

        if not len(vectors):
            return False
        quantizer = faiss.downcast_index(self.index.quantizer)
        centroids = quantizer.reconstruct_n(0, quantizer.ntotal)
        d, _ = exact_knn(np.array(vectors, np.float32), _torch(centroids), 1)
        return bool((d[:, 0] <= 1e-6).any())

    def needs_rebuild(self, gallery_size: int) -> bool:
        return gallery_size > REBUILD_GROWTH * max(self.header.trained_for, 1)

    # -- search ------------------------------------------------------------------------------

    def shortlist(self, queries: np.ndarray, n: int) -> np.ndarray:
        """(m, n) candidate ids, −1 where fewer were found."""
        self.index.nprobe = self.nprobe
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, self.header.dim))
        _, ids = self.index.search(q, n)
        return ids

    def search(
        self,
        queries: np.ndarray,
        k: int,
        fetch: Callable[[np.ndarray], np.ndarray],
        shortlist: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (distances, ids) per query: IVF shortlist re-ranked with exact float32 vectors.

        fetch(ids) returns the float32 vectors of those ids (rows in the same order).
        """
        q = np.asarray(queries, dtype=np.float32).reshape(-1, self.header.dim)
        cand = self.shortlist(q, max(shortlist, k))
        out_d = np.full((len(q), k), np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        for row, (qv, ids) in enumerate(zip(q, cand, strict=True)):
            ids = ids[ids >= 0]
            if not len(ids):
                continue
            vecs = fetch(ids)
            d = np.sqrt(((vecs - qv) ** 2).sum(1))
            order = np.argsort(d, kind="stable")[:k]
            out_d[row, : len(order)] = d[order]
            out_i[row, : len(order)] = ids[order]
        return out_d, out_i


def _torch(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def default_nprobe(nlist: int) -> int:
    """Lists probed per query: 1/16 of them (benchmarks/search.py: recall@1 ≥ 0.995 on
    noisy copies of gallery vectors at 10⁶, p50 well under 5 ms on two cores)."""
    return max(16, nlist // 16)


def check_vectors(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Embeddings as a (n, D) float32 C-contiguous array; refuses NaN/inf and wrong widths."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ConvlensError(f"embeddings must be a (n, D) array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ConvlensError(f"embeddings have {arr.shape[1]} components; this gallery has {dim}")
    if not np.isfinite(arr).all():
        raise ConvlensError("embeddings contain NaN or infinite values")
    return np.ascontiguousarray(arr)
