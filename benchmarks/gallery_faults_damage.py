"""The fault run's damage: flipped bytes in embedding rows and the ANN index, cut and flipped
gallery files under every operation, and a full disk."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
from gallery_faults_people import ANN_MIN, MODEL, PER, photo, vectors

from convlens.errors import ConvlensError
from convlens.faces import search
from convlens.faces.gallery import Gallery


def flips(folder: Path, trials: int) -> dict:
    """64 flipped bytes in an embedding row; random flips in the index file."""
    rng = np.random.default_rng(0)
    src = folder / "g.db"
    counts = Counter()
    work = folder / "flip"
    work.mkdir()
    with Gallery(src, model_id=MODEL) as g:
        names = [p.name for p in g.people()]
        g.set_threshold(0.5, {"source": "fault run"})  # verify refuses an uncalibrated gallery
    for _ in range(trials):
        for p in work.iterdir():
            p.unlink()
        db = work / "g.db"
        shutil.copy(src, db)
        name = names[int(rng.integers(len(names)))]
        needle = vectors(name)[int(rng.integers(PER))].tobytes()
        data = bytearray(db.read_bytes())
        at = data.find(needle)
        if at < 0:
            counts["row_not_found"] += 1
            continue
        data[at : at + 64] = bytes(b ^ 0x5A for b in data[at : at + 64])
        db.write_bytes(bytes(data))
        try:
            with Gallery(db, model_id=MODEL) as g:
                g.verify_embedding(vectors(name)[0], name)
            counts["row_flip_silent"] += 1
        except ConvlensError as e:
            counts["row_flip_detected" if "damaged" in str(e) else "row_flip_other_error"] += 1
        except Exception:  # noqa: BLE001
            counts["row_flip_traceback"] += 1
    # the index: build it once, then flip bytes in copies of it
    with Gallery(src, model_id=MODEL) as g:
        queries = np.concatenate([vectors(n)[:1] for n in names[:40]]) + 0.001
        search.ANN_MIN_SIZE = 100
        reference = g.search_embeddings(queries)
    index = src.with_name("g.db.index")
    good = index.read_bytes()
    for _ in range(trials):
        for p in work.iterdir():
            p.unlink()
        shutil.copy(src, work / "g.db")
        data = bytearray(good)
        for at in rng.integers(0, len(data), int(rng.integers(1, 9))):
            data[at] ^= int(rng.integers(1, 256))
        (work / "g.db.index").write_bytes(bytes(data))
        try:
            with Gallery(work / "g.db", model_id=MODEL) as g:
                answer = g.search_embeddings(queries)
                counts["index_repaired"] += bool(g.repairs)
            counts["index_wrong_answers"] += answer != reference
        except ConvlensError:
            counts["index_error"] += 1
        except Exception:  # noqa: BLE001
            counts["index_traceback"] += 1
    search.ANN_MIN_SIZE = ANN_MIN
    counts["trials"] = trials
    return dict(counts)


def write_damaged(path: Path, good: bytes, kind: str, at: int, mask: int) -> None:
    """`good` (a gallery file's bytes) written to `path` cut short at byte `at` (kind "cut"),
    or whole with its 8 bytes from `at` XORed with `mask` ("flip"). The file's previous copy
    and its -wal / -shm go first: SQLite would replay a stale WAL over the damage."""
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    data = bytearray(good[:at] if kind == "cut" else good)
    if kind == "flip":
        data[at : at + 8] = bytes(b ^ mask for b in data[at : at + 8])
    path.write_bytes(bytes(data))


def damaged_files(folder: Path) -> dict:
    """Truncations and byte flips of a gallery file, then people/identify/enroll/forget."""
    base = folder / "small.db"
    with Gallery(base, model_id=MODEL) as g:
        for i in range(60):
            g.enroll_embeddings(f"d{i:03d}", vectors(f"d{i:03d}"), sources=[photo(f"d{i}")] * PER)
        g.set_threshold(0.5, {"source": "fault run"})
    good = base.read_bytes()
    cases = [("cut", a) for a in range(0, len(good), 2048)]
    cases += [("flip", a) for a in range(0, len(good), 397)]
    counts = Counter()
    q = vectors("query")[:1]
    ops = [
        lambda g: g.people(),
        lambda g: g.identify_embeddings(q),
        lambda g: g.enroll_embeddings("new", q),
        lambda g: g.forget("d003"),
        lambda g: g.threshold_info,
    ]
    path = folder / "damaged.db"
    for kind, at in cases:
        for op in ops:
            write_damaged(path, good, kind, at, 0xA5)
            try:
                with Gallery(path, model_id=MODEL) as g:
                    op(g)
                counts["ok"] += 1
            except ConvlensError:
                counts["one_line_error"] += 1
            except Exception as e:  # noqa: BLE001
                counts[f"traceback {type(e).__name__}"] += 1
    counts["cases"] = len(cases) * len(ops)
    return dict(counts)


def disk_full(folder: Path) -> dict:
    """Enrol into a small tmpfs (root) until it is full; else SQLite's max_page_count."""
    mount = folder / "tiny"
    mount.mkdir()
    real = os.geteuid() == 0 and (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)]).returncode
        == 0
    )
    stored, message = [], None
    try:
        with Gallery(mount / "g.db", model_id=MODEL) as g:
            if not real:
                g.enroll_embeddings("first", vectors("first"))
                stored.append("first")
                g._store.con.execute("PRAGMA max_page_count = 64")
            for i in range(100_000):
                name = f"f{i:06d}x"
                try:
                    g.enroll_embeddings(name, vectors(name))
                    stored.append(name)
                except ConvlensError as e:
                    message = str(e)
                    break
        with Gallery(mount / "g.db", model_id=MODEL) as g:
            kept = {p.name for p in g.people()}
            intact = all(np.array_equal(g._store.person_vectors(n), vectors(n)) for n in stored)
    finally:
        if real:
            subprocess.run(["umount", str(mount)])
    return {
        "real_tmpfs": real,
        "how": "600 KiB tmpfs" if real else "max_page_count",
        "enrolled_before_full": len(stored),
        "message": message,
        "said_disk_full": bool(message and "disk full" in message),
        "lost": len(set(stored) - kept),
        "vectors_intact": intact,
    }
