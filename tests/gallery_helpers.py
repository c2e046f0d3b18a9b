"""Synthetic galleries for the gallery fault tests (test_gallery_erasure, _concurrency,
_damage): unit vectors, a gallery of people p0, p1, ..., and a victim whose every byte (vectors,
name, photo path) a forget must erase from the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convlens.faces.gallery import Gallery

MODEL = "synthetic-test-encoder"
VICTIM = "Zelda Quixote-Vanderbilt"
PHOTO = "/photos/private/zelda-quixote-at-home-0001.jpg"


def unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    """`n` random float32 unit vectors of dimension `d`: synthetic embeddings."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def residue(folder: Path, needles: list[bytes]) -> dict[str, list[int]]:
    """{file name: indices of the needles found in its raw bytes}, for every file there."""
    found = {}
    for p in folder.iterdir():
        if p.is_file():
            data = p.read_bytes()
            hits = [i for i, n in enumerate(needles) if n in data]
            if hits:
                found[p.name] = hits
    return found


def victim_needles(vectors: np.ndarray) -> list[bytes]:
    """What must not be left anywhere once the victim is forgotten."""
    return [v.tobytes() for v in vectors] + [VICTIM.encode(), PHOTO.encode()]


def people_gallery(path: Path, people: np.ndarray) -> Gallery:
    """A gallery at `path` with p0, p1, ... enrolled (one row of `people` each), left open."""
    g = Gallery(path, model_id=MODEL)
    g.enroll_batch([f"p{i}" for i in range(len(people))], people)
    return g


def enrol_victim(g: Gallery, rng: np.random.Generator, n: int = 3) -> np.ndarray:
    """The victim enrolled with `n` vectors, each with its photo path and hash; returns them."""
    vecs = unit(rng, n)
    g.enroll_embeddings(VICTIM, vecs, sources=[PHOTO] * n, hashes=[f"zq{i}" for i in range(n)])
    return vecs
