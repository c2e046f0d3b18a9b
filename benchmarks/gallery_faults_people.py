"""The synthetic people of the gallery fault run: their vectors and photo paths follow from
their names, so any process can check what a writer stored or a forget must have erased."""

from __future__ import annotations

import hashlib

import numpy as np

MODEL = "fault-run-encoder"
PER = 6  # embeddings per enrolment
ANN_MIN = 1500  # the ANN index path is exercised once the gallery passes this


def vectors(name: str) -> np.ndarray:
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:15], 16)
    x = np.random.default_rng(seed).standard_normal((PER, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def photo(name: str) -> str:
    return f"/photos/private/{name}.jpg"
