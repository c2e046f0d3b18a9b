"""Faults the gallery must survive (issue 15): verified erasure (byte-grep of every file in
the folder), consistent reads under a concurrent writer, damaged rows and index files, empty
and damaged gallery files, a full disk, file permissions. Synthetic embeddings only."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.faces import search
from convlens.faces.gallery import (
    SCHEMA_VERSION,
    DamagedRow,
    DiskFull,
    ErasureIncomplete,
    Gallery,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gallery_faults import write_damaged  # noqa: E402  (the fault run's file damage)

MODEL = "synthetic-test-encoder"
VICTIM = "Zelda Quixote-Vanderbilt"
PHOTO = "/photos/private/zelda-quixote-at-home-0001.jpg"


def unit(rng, n, d=128):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def residue(folder, needles: list[bytes]) -> dict[str, list[int]]:
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
    return [v.tobytes() for v in vectors] + [VICTIM.encode(), PHOTO.encode()]


def people_gallery(path, people: np.ndarray) -> Gallery:
    """A gallery at `path` with p0, p1, ... enrolled (one row of `people` each), left open."""
    g = Gallery(path, model_id=MODEL)
    g.enroll_batch([f"p{i}" for i in range(len(people))], people)
    return g


def enrol_victim(g: Gallery, rng, n=3) -> np.ndarray:
    vecs = unit(rng, n)
    g.enroll_embeddings(VICTIM, vecs, sources=[PHOTO] * n, hashes=[f"zq{i}" for i in range(n)])
    return vecs


# -- erasure ---------------------------------------------------------------------------------


def test_forget_plain_leaves_no_byte(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "g.db"
    with people_gallery(path, unit(rng, 50)) as g:
        vecs = enrol_victim(g, rng)
        g.enroll_batch([f"q{i}" for i in range(50)], unit(rng, 50))
        needles = victim_needles(vecs)
        assert residue(tmp_path, needles)  # the grep finds them while they are enrolled
        assert g.forget(VICTIM) == 3
        assert residue(tmp_path, needles) == {}
        assert len(g) == 100


def test_forget_finds_and_removes_copies_that_secure_delete_missed(tmp_path):
    """Page rebalancing can leave stale copies in free space (the fault run found a name):
    forget looks for the traces in the file and rebuilds it (VACUUM) when one is there.
    Simulated by switching secure_delete off, so the deleted cells stay where they were."""
    rng = np.random.default_rng(15)
    path = tmp_path / "g.db"
    with people_gallery(path, unit(rng, 40)) as g:
        vecs = enrol_victim(g, rng)
        g._store.con.execute("PRAGMA secure_delete = OFF")
        g.forget(VICTIM)
        assert residue(tmp_path, victim_needles(vecs)) == {}
        assert len(g) == 40


def _index_ids(index_file) -> set[int]:
    """Every embedding id with codes in the index file."""
    import faiss

    if not index_file.exists():
        return set()
    ann = search.AnnIndex.load(index_file)  # kept alive while its lists are read
    inv = ann.index.invlists
    ids = set()
    for lst in range(inv.nlist):
        n = inv.list_size(lst)
        ids |= set(faiss.rev_swig_ptr(inv.get_ids(lst), n).tolist()) if n else set()
    return ids


def test_forget_erases_from_an_index_due_for_rebuild(tmp_path, monkeypatch):
    """The gallery grew > 4x since the index was built: its codes must still be erased."""
    rng = np.random.default_rng(2)
    monkeypatch.setattr(search, "ANN_MIN_SIZE", 100)
    path = tmp_path / "g.db"
    index_file = tmp_path / "g.db.index"
    with people_gallery(path, unit(rng, 120)) as g:
        vecs = enrol_victim(g, rng)
        g.search_embeddings(unit(rng, 1))  # builds the index with the victim in it
        victim_ids = {r[0] for r in g._store.all("SELECT id FROM embeddings WHERE id > 120")}
    assert victim_ids and victim_ids <= _index_ids(index_file)
    with Gallery(path, model_id=MODEL) as g:  # grows 5x without a search: index untouched
        g.enroll_batch([f"q{i}" for i in range(500)], unit(rng, 500))
        g.forget(VICTIM)
    assert not victim_ids & _index_ids(index_file)
    # also their float32 bytes: 123 vectors for 64 lists make single-vector centroids
    assert residue(tmp_path, victim_needles(vecs)) == {}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_forget_removes_temporary_files_of_killed_writers(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        vecs = enrol_victim(g, rng)
        g.enroll_embeddings("other", unit(rng, 1))
        secret = b"".join(victim_needles(vecs))
        # what a writer killed mid-save leaves: one with its pid, one from before pids
        killed = tmp_path / f"g.db.index.{_dead_pid()}.1a2b3c4d.tmp"
        killed.write_bytes(secret)
        older = tmp_path / "g.db.index.k3j_x9a2.tmp"
        older.write_bytes(secret)
        os.utime(older, (time.time() - 3600, time.time() - 3600))
        live = tmp_path / f"g.db.index.{os.getpid()}.5e6f7a8b.tmp"  # a live writer's
        live.write_bytes(b"in progress")
        g.forget(VICTIM)
    assert not killed.exists() and not older.exists() and live.exists()
    assert residue(tmp_path, victim_needles(vecs)) == {}


def test_forget_with_a_reader_holding_a_snapshot_fails_loudly_then_finishes(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        vecs = enrol_victim(g, rng)
        g.enroll_batch([f"p{i}" for i in range(20)], unit(rng, 20))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM embeddings").fetchone()  # holds its snapshot
    with Gallery(path, model_id=MODEL, busy_timeout=0.3) as g:
        t0 = time.monotonic()
        with pytest.raises(ErasureIncomplete, match="not yet overwritten"):
            g.forget(VICTIM)
        assert time.monotonic() - t0 < 10
        assert VICTIM not in [p.name for p in g.people()]  # deleted, though not yet erased
        assert residue(tmp_path, victim_needles(vecs))  # the error said so: bytes remain
        reader.execute("COMMIT")
        reader.close()
        assert g.forget(VICTIM) == 0  # the later call finishes the erasure
    assert residue(tmp_path, victim_needles(vecs)) == {}
    with Gallery(path, model_id=MODEL) as g, pytest.raises(ConvlensError, match="no one called"):
        g.forget(VICTIM)  # nothing pending any more: an unknown name is an error again


# -- consistent reads ------------------------------------------------------------------------


def test_exact_load_reads_one_snapshot(tmp_path):
    """A person forgotten between the read of the rows and of the names (deterministic)."""
    rng = np.random.default_rng(5)
    path = tmp_path / "g.db"
    with people_gallery(path, unit(rng, 30)) as g:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("PRAGMA foreign_keys = ON")

        def between(sql: str) -> None:
            if sql.startswith("SELECT id, name FROM people"):
                other.execute("DELETE FROM people WHERE name = 'p7'")

        g._store.con.set_trace_callback(between)
        (m,) = g.identify_embeddings(unit(rng, 1))  # KeyError without one read transaction
        g._store.con.set_trace_callback(None)
        other.close()
        assert m.candidates
        assert "p7" not in [p.name for p in g.people()]


CHURN = textwrap.dedent(
    """
    import sys, time, numpy as np
    from convlens.faces.gallery import Gallery
    path, seconds = sys.argv[1], float(sys.argv[2])
    rng = np.random.default_rng(9)
    end, i = time.monotonic() + seconds, 0
    with Gallery(path, model_id="synthetic-test-encoder") as g:
        while time.monotonic() < end:
            g.enroll_embeddings(f"churn{i}", rng.standard_normal((2, 128)).astype(np.float32))
            if i >= 3:
                g.forget(f"churn{i - 3}")
            i += 1
    print(i)
    """
)


def test_identify_while_another_process_enrols_and_forgets(tmp_path):
    rng = np.random.default_rng(6)
    path = tmp_path / "g.db"
    people = unit(rng, 300)
    people_gallery(path, people).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHURN, str(path), "6"], stdout=subprocess.PIPE, text=True
    )
    calls = errors = wrong = 0
    with Gallery(path, model_id=MODEL) as g:
        while proc.poll() is None:
            j = calls % 300
            try:
                (m,) = g.identify_embeddings(people[j] + 0.001)
                # The synthetic encoder has no τ (uncalibrated): judge the nearest candidate.
                wrong += m.candidates[0].name != f"p{j}"
            except Exception:  # noqa: BLE001 - counting every kind is the point
                errors += 1
            calls += 1
    assert proc.wait(30) == 0 and int(proc.stdout.read()) > 10
    assert calls > 50 and errors == 0 and wrong == 0


# -- damaged rows, migration -----------------------------------------------------------------


def _flip_in_file(path, needle: bytes, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0
    data[at : at + n] = bytes(b ^ 0x5A for b in data[at : at + n])
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_an_embedding_row_are_detected(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "g.db"
    with people_gallery(path, unit(rng, 20)) as g:
        g.set_threshold(0.5)  # verify refuses an uncalibrated gallery before reading rows
        vecs = enrol_victim(g, rng)
    _flip_in_file(path, vecs[1].tobytes())
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # SQLite sees nothing
    con.close()
    with Gallery(path, model_id=MODEL) as g:
        assert len(g.people()) == 21  # listing people needs no vectors
        with pytest.raises(DamagedRow, match=f"row \\d+ of '{VICTIM}' is damaged"):
            g.identify_embeddings(vecs[0])
        with pytest.raises(DamagedRow, match="checksum"):
            g.verify_embedding(vecs[0], VICTIM)
        g.forget(VICTIM)  # the way out the message names
        (m,) = g.identify_embeddings(vecs[0])
        assert VICTIM not in [c.name for c in m.candidates]


V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL);
CREATE TABLE embeddings (id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE, source TEXT,
    sha256 TEXT, box TEXT, vector BLOB NOT NULL, created TEXT NOT NULL);
CREATE INDEX embeddings_person ON embeddings(person_id);
CREATE INDEX embeddings_sha256 ON embeddings(sha256);
CREATE TABLE change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, embedding_id INTEGER NOT NULL,
    op INTEGER NOT NULL);
"""


def _write_v1_gallery(path, vectors: np.ndarray) -> None:
    """A gallery as the schema-1 code wrote it (no row checksums)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA application_id = 1668050547")
    con.executescript(V1_SCHEMA)
    con.execute("INSERT INTO schema_version VALUES (1, '2025-01-01T00:00:00+00:00')")
    con.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("gallery_uuid", "0" * 32), ("model_id", MODEL), ("dim", "128")],
    )
    for i, v in enumerate(vectors):
        con.execute("INSERT INTO people (name, created) VALUES (?, 'then')", (f"p{i}",))
        con.execute(
            "INSERT INTO embeddings (person_id, vector, created) VALUES (?, ?, 'then')",
            (i + 1, v.tobytes()),
        )
        con.execute("INSERT INTO change_log (embedding_id, op) VALUES (?, 1)", (i + 1,))
    con.execute("PRAGMA journal_mode = WAL")
    con.close()


def test_schema_1_gallery_is_migrated_and_then_checked(tmp_path):
    rng = np.random.default_rng(8)
    path = tmp_path / "old.db"
    people = unit(rng, 10)
    _write_v1_gallery(path, people)
    with Gallery(path, model_id=MODEL) as g:
        (m,) = g.identify_embeddings(people[4] + 0.001)
        assert m.candidates[0].name == "p4"
        g.enroll_embeddings("new", unit(rng, 1))
    con = sqlite3.connect(path)
    assert con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    rows = con.execute("SELECT id, person_id, vector, checksum FROM embeddings").fetchall()
    con.close()
    assert len(rows) == 11
    for rid, pid, vec, checksum in rows:
        assert checksum == zlib.crc32(vec, zlib.crc32(np.array([rid, pid], "<i8").tobytes()))
    _flip_in_file(path, people[2].tobytes(), n=8)
    with Gallery(path, model_id=MODEL) as g, pytest.raises(DamagedRow, match="'p2'"):
        g.identify_embeddings(people[0])


# -- the ANN index file ----------------------------------------------------------------------


def test_damaged_index_is_rebuilt_with_a_warning(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(9)
    monkeypatch.setattr(search, "ANN_MIN_SIZE", 200)
    path = tmp_path / "g.db"
    index_file = tmp_path / "g.db.index"
    people = unit(rng, 300)
    queries = people[:40] + 0.002
    with people_gallery(path, people) as g:
        expected = g.search_embeddings(queries)
    good = index_file.read_bytes()
    for trial in range(6):  # flips in the header, the checksum line and the FAISS bytes
        data = bytearray(good)
        for at in rng.integers(0, len(data), 4 if trial else 1) if trial else [30]:
            data[at] ^= 0xFF
        index_file.write_bytes(bytes(data))
        caplog.clear()
        with (
            caplog.at_level(logging.WARNING, "convlens.gallery"),
            Gallery(path, model_id=MODEL) as g,
        ):
            assert g.search_embeddings(queries) == expected
            assert len(g.repairs) == 1 and "rebuilding" in g.repairs[0]
        assert "rebuilding it from the database" in caplog.text
        assert search.AnnIndex.load(index_file).size == 300  # the file is sound again


def test_index_file_takes_the_database_files_mode(tmp_path, monkeypatch):
    rng = np.random.default_rng(10)
    monkeypatch.setattr(search, "ANN_MIN_SIZE", 100)
    for mode in (0o644, 0o640):
        folder = tmp_path / oct(mode)
        with people_gallery(folder / "g.db", unit(rng, 150)) as g:
            os.chmod(folder / "g.db", mode)
            g.search_embeddings(unit(rng, 1))
        assert (folder / "g.db.index").stat().st_mode & 0o777 == mode


# -- damaged or empty gallery files, failures that must write nothing ------------------------


def _ops(path, rng) -> None:
    """people, identify, verify, enroll, forget on a gallery file: ConvlensError or success."""
    q = unit(rng, 1)
    for op in range(5):
        try:
            with Gallery(path, model_id=MODEL) as g:
                [
                    lambda: (g.people(), g.threshold_info),
                    lambda: g.identify_embeddings(q),
                    lambda: g.verify_embedding(q, "p5"),
                    lambda: g.enroll_embeddings("new", q),
                    lambda: g.forget("p3"),
                ][op]()
        except ConvlensError:
            pass


def test_damaged_gallery_files_give_one_line_errors(tmp_path):
    rng = np.random.default_rng(11)
    base = tmp_path / "base.db"
    with Gallery(base, model_id=MODEL) as g:
        for i in range(30):
            g.enroll_embeddings(f"p{i}", unit(rng, 2), sources=[f"/x/{i}.jpg"] * 2)
        g.set_threshold(0.5, {"source": "test", "far": 0.001})
    good = base.read_bytes()
    path = tmp_path / "g.db"
    cuts = [("cut", at) for at in range(0, len(good), 4096 + 1024)]
    flips = [("flip", at) for at in [*range(16, 100, 11), *range(100, len(good), 1499)]]
    for kind, at in cuts + flips:
        write_damaged(path, good, kind, at, 0x5A)
        _ops(path, rng)  # any other exception fails the test, with its traceback


def test_damaged_name_bytes_are_a_one_line_error(tmp_path):
    rng = np.random.default_rng(14)
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        g.enroll_embeddings("Ada Lovelace-Byron", unit(rng, 1))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"Lovelace", b"Love\xff\xfece"))  # not UTF-8 any more
    with (
        Gallery(path, model_id=MODEL) as g,
        pytest.raises(ConvlensError, match="corrupt gallery database"),
    ):
        g.people()  # UnicodeDecodeError traceback before


def test_damaged_metadata_is_a_one_line_error(tmp_path):
    rng = np.random.default_rng(12)
    path = tmp_path / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        g.enroll_embeddings("alice", unit(rng, 1))
        g.set_threshold(0.5, {"source": "test"})
        con = g._store.con
        con.execute("UPDATE meta SET value = '{\"source\" 1' WHERE key = 'threshold_info'")
        with pytest.raises(ConvlensError, match="damaged gallery metadata"):
            print(g.threshold_info)
        con.execute("UPDATE meta SET value = 'x' WHERE key = 'dim'")
        with pytest.raises(ConvlensError, match="damaged gallery metadata"):
            g.identify_embeddings(unit(rng, 1))


def test_disk_full_is_said_and_loses_nothing(tmp_path):
    rng = np.random.default_rng(13)
    path = tmp_path / "g.db"
    first = unit(rng, 40)
    with people_gallery(path, first) as g:
        pages = g._store.con.execute("PRAGMA page_count").fetchone()[0]
        g._store.con.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLITE_FULL soon
        with pytest.raises(DiskFull, match="disk full"):
            g.enroll_batch([f"q{i}" for i in range(2000)], unit(rng, 2000))
        assert len(g) == 40
        g._store.con.execute("PRAGMA max_page_count = 1073741823")
        g.enroll_embeddings("after", unit(rng, 1))
    with Gallery(path, model_id=MODEL) as g:
        assert len(g) == 41
        np.testing.assert_array_equal(g._store.person_vectors("p7"), first[7:8])


class _NoFaceEncoder(torch.nn.Module):
    """Never reached: the detector finds no face in a blank photo."""

    model_id = MODEL


def test_failed_first_enrolment_leaves_no_file(tmp_path):
    path = tmp_path / "sub" / "new.db"
    blank = np.full((120, 120, 3), 128, np.uint8)
    with Gallery(path, _NoFaceEncoder(), encode_options={"detector": "hog"}) as g:
        with pytest.raises(ConvlensError, match="no face found"):
            g.enroll("nobody", [blank])
        assert g.people() == [] and len(g) == 0
    with Gallery(path, model_id=MODEL) as g:
        bad = unit(np.random.default_rng(0), 1)
        bad[0, 0] = np.nan
        with pytest.raises(ConvlensError, match="NaN"):
            g.enroll_embeddings("nobody", bad)
    assert not (tmp_path / "sub").exists()
    with Gallery(path, model_id=MODEL) as g:  # the first successful write creates it
        g.enroll_embeddings("somebody", unit(np.random.default_rng(0), 1))
    assert sorted(p.name for p in path.parent.iterdir()) == ["new.db"]
