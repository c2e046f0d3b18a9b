"""Verified erasure (issue 15): after forget, a byte-grep of every file in the gallery's
folder finds nothing of the person: not in the database's free pages, not in an ANN index due
for rebuild, not in temporary files of killed writers; a reader holding a snapshot makes forget
fail loudly, and a later call finishes. Synthetic embeddings only."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from gallery_helpers import (
    MODEL,
    VICTIM,
    enrol_victim,
    people_gallery,
    residue,
    unit,
    victim_needles,
)

from convlens.errors import ConvlensError
from convlens.faces import search
from convlens.faces.gallery import ErasureIncomplete, Gallery


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
