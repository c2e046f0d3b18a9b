"""Consistent reads (issue 15): identify sees one snapshot while another connection or process
enrols and forgets. Synthetic embeddings only."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
from gallery_helpers import MODEL, people_gallery, unit

from convlens.faces.gallery import Gallery


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
