"""Exact and IVF search primitives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.faces import search


def unit(rng, n, d=128):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_knn_matches_numpy():
    rng = np.random.default_rng(0)
    x, q = unit(rng, 1000), unit(rng, 7)
    d, i = search.exact_knn(q, torch.from_numpy(x), k=5, chunk=128)
    ref = np.sqrt(((q[:, None, :] - x[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(i, np.argsort(ref, axis=1)[:, :5])
    np.testing.assert_allclose(d, np.sort(ref, axis=1)[:, :5], atol=1e-5)


def test_exact_people_knn_min_rule_and_exact_small_distances():
    rng = np.random.default_rng(1)
    x = unit(rng, 9)
    person = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3])
    offsets = np.array([0, 3, 5, 6, 9])
    v = torch.from_numpy(x)
    q = x[4] + 1e-4  # tiny distance: must not be lost to cancellation
    d, top = search.exact_people_knn(q, v, (v * v).sum(1), torch.from_numpy(person), offsets, 3)
    assert top[0, 0] == 1 and d[0, 0] == pytest.approx(np.linalg.norm(q - x[4]), rel=1e-3)
    ref = [np.linalg.norm(x[offsets[j] : offsets[j + 1]] - q, axis=1).min() for j in range(4)]
    np.testing.assert_allclose(d[0], np.sort(ref)[:3], rtol=1e-5)


def test_ivf_index_add_remove_save_load(tmp_path):
    rng = np.random.default_rng(2)
    x = unit(rng, 3000)
    ids = np.arange(10, 3010)
    ann = search.AnnIndex.build(ids, x, "uuid-1", seq=5)
    assert ann.size == 3000 and ann.header.nlist == search.choose_nlist(3000)

    def fetch(sel):
        return x[sel - 10]

    q = x[:20] + rng.standard_normal((20, 128)).astype(np.float32) * 0.01
    d, got = ann.search(q, 1, fetch)
    np.testing.assert_array_equal(got[:, 0], ids[:20])
    assert ann.remove(ids[:10]) == 10 and ann.size == 2990
    _, got = ann.search(q[:10], 1, fetch)
    assert not set(got[:, 0]) & set(ids[:10])
    path = tmp_path / "g.db.index"
    ann.save(path)
    again = search.AnnIndex.load(path)
    assert again.size == 2990 and again.header.gallery_uuid == "uuid-1" and again.header.seq == 5
    good = path.read_bytes()
    path.write_bytes(b"garbage")
    with pytest.raises(search.IndexDamaged, match="format"):
        search.AnnIndex.load(path)
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0x01  # one bit inside the FAISS bytes
    path.write_bytes(bytes(damaged))
    with pytest.raises(search.IndexDamaged, match="checksum"):
        search.AnnIndex.load(path)
    assert search.AnnIndex.load(tmp_path / "missing") is None
    assert not again.needs_rebuild(10_000) and again.needs_rebuild(20_000)


def test_check_vectors():
    assert search.check_vectors(np.ones(4)).shape == (1, 4)
    with pytest.raises(ConvlensError, match="components"):
        search.check_vectors(np.ones((2, 4)), dim=128)
    with pytest.raises(ConvlensError, match="NaN"):
        search.check_vectors(np.array([[np.inf, 0.0]]))


def test_choose_nlist():
    assert search.choose_nlist(10) == 64
    assert search.choose_nlist(1_000_000) == 4096
    assert search.choose_nlist(10**9) == 16384
