"""Concurrent writers and a writer killed mid-enrolment: nothing lost, nothing duplicated."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from convlens.faces.gallery import Gallery

MODEL = "synthetic-test-encoder"

WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from convlens.faces.gallery import Gallery
    path, worker, people, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with Gallery(path, model_id="synthetic-test-encoder") as g:
        for i in range(people):
            seed = worker * 100000 + i
            v = np.random.default_rng(seed).standard_normal((per, 128)).astype(np.float32)
            g.enroll_embeddings(f"w{worker}-p{i}", v, hashes=[f"{seed}-{j}" for j in range(per)])
            print(f"done {i}", flush=True)
    """
)


def _expected(worker: int, i: int, per: int) -> np.ndarray:
    return np.random.default_rng(worker * 100000 + i).standard_normal((per, 128)).astype(np.float32)


def _stored(g: Gallery, name: str) -> np.ndarray:
    return g._store.person_vectors(name)


def test_four_processes_enrol_at_once(tmp_path):
    path = tmp_path / "shared.db"  # not created yet: the writers race to create it too
    people, per = 30, 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(w), str(people), str(per)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with Gallery(path, model_id=MODEL) as g:
        names = [p.name for p in g.people()]
        assert len(names) == len(set(names)) == 4 * people
        assert all(p.photos == per for p in g.people())
        assert len(g) == 4 * people * per
        for w in range(4):
            for i in range(people):
                np.testing.assert_array_equal(_stored(g, f"w{w}-p{i}"), _expected(w, i, per))


def test_sigkill_mid_enrolment_keeps_finished_ones(tmp_path):
    path = tmp_path / "g.db"
    per = 4000  # large enrolments, so the kill lands inside one
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "7", "1000", str(per)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = []
    deadline = time.monotonic() + 60
    while len(done) < 5 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        done.append(int(line.split()[1]))
    time.sleep(0.05)  # into the next enrolment
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done += [int(line.split()[1]) for line in proc.stdout.read().splitlines()]
    assert len(done) >= 5, proc.stderr.read()
    with Gallery(path, model_id=MODEL) as g:
        people = {p.name: p.photos for p in g.people()}
        for i in done:
            np.testing.assert_array_equal(_stored(g, f"w7-p{i}"), _expected(7, i, per))
        # the enrolment that was cut is wholly absent (or wholly there, had it just committed)
        assert all(n == per for n in people.values())
        assert set(people) <= {f"w7-p{i}" for i in range(max(done) + 2)}
        g.enroll_embeddings("after", np.ones((1, 128), np.float32))
        assert "after" in [p.name for p in g.people()]
