"""Damage the gallery must survive (issue 15): flipped bytes in embedding rows (checksums, also
after migrating a schema-1 file), damaged ANN index files (rebuilt), cut and flipped gallery
files, damaged names and metadata (one-line errors), a full disk, and failures that must write
nothing. Synthetic embeddings only."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from gallery_helpers import MODEL, VICTIM, enrol_victim, people_gallery, unit

from convlens.errors import ConvlensError
from convlens.faces import search
from convlens.faces.gallery import SCHEMA_VERSION, DamagedRow, DiskFull, Gallery

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gallery_faults_damage import write_damaged  # noqa: E402  (the fault run's file damage)

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
