"""Gallery storage, search and threshold logic on synthetic embeddings (no encoder needed)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.faces import search
from convlens.faces.gallery import Gallery

MODEL = "synthetic-test-encoder"
TAU = 0.6  # a synthetic encoder ships no τ: the fixture sets one, as calibrate would


def unit(rng, n, d=128):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def gallery(tmp_path):
    with Gallery(tmp_path / "g.db", model_id=MODEL) as g:
        g.set_threshold(TAU, {"source": "test"})
        yield g


def test_enroll_identify_verify(gallery, rng):
    people = unit(rng, 5)
    for i, v in enumerate(people):
        gallery.enroll_embeddings(f"p{i}", v[None])
    assert [p.name for p in gallery.people()] == [f"p{i}" for i in range(5)]
    query = people[3] + 0.01
    (match,) = gallery.identify_embeddings(query[None], k=3)
    assert match.name == "p3" and match.threshold == TAU
    assert [c.name for c in match.candidates][0] == "p3" and len(match.candidates) == 3
    assert match.candidates[0].distance <= match.candidates[1].distance
    # a stranger: far from everyone (unit vectors are ~1.41 apart)
    (stranger,) = gallery.identify_embeddings(unit(rng, 1))
    assert stranger.name is None and stranger.distance > TAU
    v = gallery.verify_embedding(query, "p3")
    assert v.match and v.distance == pytest.approx(np.linalg.norm(query - people[3]), abs=1e-5)
    assert not gallery.verify_embedding(query, "p1").match


def test_min_rule_over_several_embeddings(gallery, rng):
    a = unit(rng, 3)
    gallery.enroll_embeddings("alice", a)
    gallery.enroll_embeddings("bob", unit(rng, 1))
    d = gallery.search_embeddings(a[2][None], k=2)[0]
    assert d[0] == ("alice", pytest.approx(0.0, abs=1e-3))


def test_threshold_is_stored_and_used(tmp_path, rng):
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        v = unit(rng, 1)
        g.enroll_embeddings("alice", v)
        g.set_threshold(0.05, {"far": 1e-3, "source": "test"})
    with Gallery(path, model_id=MODEL) as g:
        assert g.threshold == 0.05 and g.threshold_info["far"] == 1e-3
        near = v + 0.02 / np.sqrt(128)
        (m,) = g.identify_embeddings(near)
        assert m.name == "alice" and m.threshold == 0.05
        far = v + 0.1 / np.sqrt(128)
        (m,) = g.identify_embeddings(far)
        assert m.name is None and m.candidates[0].name == "alice"


def test_forget_rename_people(gallery, rng):
    gallery.enroll_embeddings("alice", unit(rng, 2))
    gallery.enroll_embeddings("bob", unit(rng, 1))
    gallery.rename("alice", "carol")
    assert [p.name for p in gallery.people()] == ["bob", "carol"]
    with pytest.raises(ConvlensError, match="already"):
        gallery.rename("bob", "carol")
    with pytest.raises(ConvlensError, match="no one called"):
        gallery.rename("alice", "dave")
    assert gallery.forget("carol") == 2
    assert [p.name for p in gallery.people()] == ["bob"]
    assert len(gallery) == 1
    with pytest.raises(ConvlensError, match="no one called"):
        gallery.forget("carol")
    with pytest.raises(ConvlensError, match="no one called"):
        gallery.verify_embedding(unit(rng, 1), "carol")


def test_forget_erases_vectors_from_file(tmp_path, rng):
    path = tmp_path / "g.db"
    secret = unit(rng, 1)
    with Gallery(path, model_id=MODEL) as g:
        g.enroll_embeddings("alice", secret)
        g.enroll_embeddings("bob", unit(rng, 1))
        g.forget("alice")
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.tobytes() not in data
    assert b"alice" not in data


def test_duplicate_photos_are_skipped_and_cross_person_refused(gallery, rng):
    v = unit(rng, 2)
    r = gallery.enroll_embeddings("alice", v, hashes=["h1", "h2"])
    assert len(r.added) == 2
    r = gallery.enroll_embeddings("alice", v[:1], hashes=["h1"], sources=["a.jpg"])
    assert r.added == [] and r.skipped == ["a.jpg"]
    with pytest.raises(ConvlensError, match="already enrolled as 'alice'"):
        gallery.enroll_embeddings("bob", v[:1], hashes=["h1"], sources=["a.jpg"])
    assert [p.name for p in gallery.people()] == ["alice"]
    assert len(gallery) == 2


def test_other_encoder_refused(tmp_path, rng):
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        g.enroll_embeddings("alice", unit(rng, 1))
    with pytest.raises(ConvlensError, match="built with encoder"):
        Gallery(path, model_id="another-encoder")
    with Gallery(path) as g, pytest.raises(ConvlensError, match="built with encoder"):
        g.enroll_embeddings("bob", unit(rng, 1), model_id="another-encoder")


def test_wrong_dimension_and_nan_refused(gallery, rng):
    gallery.enroll_embeddings("alice", unit(rng, 1))
    with pytest.raises(ConvlensError, match="components"):
        gallery.enroll_embeddings("bob", unit(rng, 1, d=64))
    bad = unit(rng, 1)
    bad[0, 3] = np.nan
    with pytest.raises(ConvlensError, match="NaN"):
        gallery.enroll_embeddings("bob", bad)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is not a database" * 10, b"SQLite format 3\x00" + bytes(range(256)) * 8],
    ids=["empty", "text", "corrupt-sqlite"],
)
def test_corrupt_or_foreign_file_refused_untouched(tmp_path, content, rng):
    path = tmp_path / "g.db"
    path.write_bytes(content)
    # an empty file too: refused, never re-created
    with (
        pytest.raises(ConvlensError, match="not a convlens gallery|corrupt"),
        Gallery(path, model_id=MODEL) as g,
    ):
        g.enroll_embeddings("alice", unit(rng, 1))
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["g.db"]


def test_foreign_sqlite_database_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(ConvlensError, match="not a convlens gallery"):
        Gallery(path, model_id=MODEL)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_damaged_gallery_pages_give_clear_error(tmp_path, rng):
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        for i in range(50):
            g.enroll_embeddings(f"p{i}", unit(rng, 4))
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # keep the header page, wreck the rest
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(ConvlensError, match="corrupt|database"), Gallery(path, model_id=MODEL) as g:
        g.people()
        g.identify_embeddings(unit(rng, 1))
    assert path.read_bytes() == before


def test_ann_index_path_matches_exact(tmp_path, rng, monkeypatch):
    """Above ANN_MIN_SIZE the IVF index answers; it follows enrol/forget incrementally."""
    monkeypatch.setattr(search, "ANN_MIN_SIZE", 500)
    path = tmp_path / "g.db"
    people = unit(rng, 800)
    with Gallery(path, model_id=MODEL) as g:
        for i in range(0, 800, 100):
            for j in range(i, i + 100):
                g.enroll_embeddings(f"p{j}", people[j][None])
        queries = people[:50] + rng.standard_normal((50, 128)).astype(np.float32) * 0.01
        res = g.search_embeddings(queries, k=1)
        assert [r[0][0] for r in res] == [f"p{j}" for j in range(50)]
        assert (tmp_path / "g.db.index").exists()
        g.forget("p7")
        assert g._index.ann.size == 799
        res = g.search_embeddings(queries[7][None], k=1)
        assert res[0][0][0] != "p7"
        g.enroll_embeddings("new", (people[7] + 0.001)[None])
    # Another process opening the gallery catches the index up from the change log.
    with Gallery(path, model_id=MODEL) as g:
        res = g.search_embeddings(queries[7][None], k=1)
        assert res[0][0][0] == "new"
        assert g._index.ann.size == 800


def test_forget_erases_from_index_file_in_another_process(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(search, "ANN_MIN_SIZE", 300)
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        g.enroll_batch([f"p{i}" for i in range(400)], unit(rng, 400))
        g.search_embeddings(unit(rng, 1))  # builds and saves the index
        (victim,) = [r[0] for r in g._store.all("SELECT e.id FROM embeddings e JOIN people p ON "
                                          "p.id = e.person_id WHERE p.name = 'p3'")]  # fmt: skip
    index_file = tmp_path / "g.db.index"
    before = search.AnnIndex.load(index_file)
    assert before.size == 400
    with Gallery(path, model_id=MODEL) as g:  # a fresh process: index not loaded yet
        g.forget("p3")
    after = search.AnnIndex.load(index_file)
    assert after.size == 399
    assert not after.index.remove_ids(np.array([victim], np.int64))  # gone already
