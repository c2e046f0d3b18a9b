"""The PostgreSQL + pgvector gallery against a real private PostgreSQL 16 server (pgserver
starts one in a temporary folder): the same answers as the SQLite gallery, transactions,
erasure, model_id, the HNSW path, and two `convlens serve` replicas sharing one database."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pgserver = pytest.importorskip("pgserver")
pytest.importorskip("psycopg")
from service_live import LiveServer, make_keys  # noqa: E402

from convlens.errors import ConvlensError  # noqa: E402
from convlens.faces import search  # noqa: E402
from convlens.faces.gallery import Gallery  # noqa: E402
from convlens.faces.gallery.postgres import PostgresStore  # noqa: E402

MODEL = "test-encoder"


@pytest.fixture(scope="module")
def server():
    # Not under pytest's tmp folder: that is private to root, and as root pgserver runs
    # PostgreSQL as its own user, which must reach the data folder.
    root = tempfile.mkdtemp(prefix="convlens-pg-")
    srv = pgserver.get_server(root, cleanup_mode="stop")
    yield srv
    srv.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def url(server, request):
    """A fresh database on the server for each test."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")
    server.psql(f"DROP DATABASE IF EXISTS {name};")
    server.psql(f"CREATE DATABASE {name};")
    base = server.get_uri()
    return base.replace("/postgres?", f"/{name}?")


def _data(rng, people=8, per=3, dim=128):
    centres = rng.normal(size=(people, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    names = [f"person {i}" for i in range(people) for _ in range(per)]
    vecs = np.repeat(centres, per, 0) + 0.05 * rng.normal(size=(people * per, dim))
    return names, vecs.astype(np.float32), centres


def test_same_answers_as_the_sqlite_gallery(url, tmp_path):
    rng = np.random.default_rng(0)
    names, vecs, centres = _data(rng)
    queries = centres + 0.1 * rng.normal(size=centres.shape).astype(np.float32)
    answers = []
    for where in (url, tmp_path / "g.db"):
        with Gallery(where, model_id=MODEL) as g:
            for name in dict.fromkeys(names):
                rows = [i for i, n in enumerate(names) if n == name]
                g.enroll_embeddings(name, vecs[rows], model_id=MODEL)
            g.set_threshold(0.5, {"source": "test"})
            matches = g.identify_embeddings(queries, k=3)
            verdict = g.verify_embedding(queries[0], "person 0")
            answers.append((matches, verdict, [(p.name, p.photos) for p in g.people()]))
    (pg_m, pg_v, pg_p), (sq_m, sq_v, sq_p) = answers
    assert pg_p == sq_p
    for a, b in zip(pg_m, sq_m, strict=True):
        assert [c.name for c in a.candidates] == [c.name for c in b.candidates]
        np.testing.assert_allclose(
            [c.distance for c in a.candidates], [c.distance for c in b.candidates], atol=1e-5
        )
        assert a.name == b.name and a.threshold == b.threshold == 0.5
    assert pg_v.match == sq_v.match and abs(pg_v.distance - sq_v.distance) < 1e-5


def test_transactions_erasure_and_model_id(url):
    rng = np.random.default_rng(1)
    with Gallery(url, model_id=MODEL) as g:
        g.enroll_embeddings("alice", rng.normal(size=(2, 128)), model_id=MODEL, hashes=["a", "b"])
        # a photo already enrolled as alice cannot be bob's: nothing of bob is stored
        with pytest.raises(ConvlensError, match="already enrolled as 'alice'"):
            g.enroll_embeddings("bob", rng.normal(size=(2, 128)), model_id=MODEL, hashes=["c", "a"])
        assert [p.name for p in g.people()] == ["alice"] and len(g) == 2
        with pytest.raises(ConvlensError, match="not 'other-encoder'"):
            g.enroll_embeddings("carol", rng.normal(size=(1, 128)), model_id="other-encoder")
        with pytest.raises(ConvlensError, match="components"):
            g.enroll_embeddings("carol", rng.normal(size=(1, 64)), model_id=MODEL)
        photos = g.photos("alice")
        g.forget_photo("alice", photos[0].id)
        assert [p.id for p in g.photos("alice")] == [photos[1].id]
        g.rename("alice", "alice b")
        assert g.forget("alice b") == 1
        assert len(g) == 0 and g.people() == []
        with pytest.raises(ConvlensError, match="no one called"):
            g.forget("alice b")
        import psycopg

        with psycopg.connect(url) as con:
            rows = con.execute("SELECT COUNT(*) FROM convlens_embeddings").fetchone()[0]
        assert rows == 0  # erased from the database, not only hidden
    with pytest.raises(ConvlensError, match="test-encoder"):
        Gallery(url, model_id="other-encoder")


def test_hnsw_search_above_the_ann_size(url, monkeypatch):
    rng = np.random.default_rng(2)
    names, vecs, centres = _data(rng, people=200, per=3)
    with Gallery(url, model_id=MODEL) as g:
        g.enroll_batch(names, vecs, model_id=MODEL)
        g.set_threshold(0.6, {"source": "test"})  # a test encoder ships no τ (issue 10)
        exact = g.identify_embeddings(centres, k=1)
        monkeypatch.setattr(search, "ANN_MIN_SIZE", 100)

        def full_count(self):
            raise AssertionError("a COUNT(*) of every row on each search")

        monkeypatch.setattr(PostgresStore, "count", full_count)
        approx = g.identify_embeddings(centres, k=1)
        import psycopg

        with psycopg.connect(url) as con:
            plan = con.execute(
                "EXPLAIN SELECT id FROM convlens_embeddings ORDER BY vector <-> %s::vector "
                "LIMIT 64",
                ("[" + ",".join(["0"] * 128) + "]",),
            ).fetchall()
    assert "convlens_embeddings_hnsw" in " ".join(r[0] for r in plan)
    assert (
        [m.name for m in approx] == [m.name for m in exact] == [f"person {i}" for i in range(200)]
    )


def _post(url, path, key, body):
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"x-api-key": key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_two_replicas_share_one_gallery(url, tmp_path):
    keys = make_keys(tmp_path / "keys.db")
    extra = ("--rate", "0", "--workers", "2", "--queue", "64")
    with (
        LiveServer(url, tmp_path / "keys.db", *extra) as a,
        LiveServer(url, tmp_path / "keys.db", *extra) as b,
    ):
        model_id = a.get_json("/api/v1/model", keys["read"])[1]["model_id"]
        rng = np.random.default_rng(3)
        jobs = [(f"r{i:03d}", rng.normal(size=(2, 128)).tolist()) for i in range(60)]

        def enrol(job):
            i, (name, vecs) = job
            server = (a, b)[i % 2]
            body = {"model_id": model_id, "embeddings": vecs}
            path = f"/api/v1/people/{urllib.parse.quote(name)}/embeddings"
            return name, _post(server.url, path, keys["enroll"], body)

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(enrol, enumerate(jobs)))
        acked = {n for n, status in results if status == 201}
        assert len(acked) == len(jobs), results
        for server in (a, b):
            people = server.get_json("/api/v1/people?size=1000", keys["read"])[1]["people"]
            assert {p["name"]: p["photos"] for p in people} == dict.fromkeys(acked, 2)
        # what one replica forgets, the other no longer finds
        req = urllib.request.Request(
            a.url + "/api/v1/people/r000", method="DELETE", headers={"x-api-key": keys["enroll"]}
        )
        urllib.request.urlopen(req, timeout=30).close()
        assert b.get_json("/api/v1/people/r000/photos", keys["read"])[0] == 404


def test_urls_are_shown_without_their_password():
    from convlens.faces.gallery.postgres import is_database_url, shown_url

    assert shown_url("postgresql://ops:s3cret@db.example:5432/faces") == (
        "postgresql://ops@db.example:5432/faces"
    )
    assert is_database_url("postgres://x@y/z") and not is_database_url("staff.db")
    with pytest.raises(ConvlensError, match="cannot connect") as e:
        Gallery("postgresql://ops:s3cret@127.0.0.1:1/faces")
    assert "s3cret" not in str(e.value)
