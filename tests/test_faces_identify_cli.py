"""Done when: `convlens faces identify` and Gallery.identify give identical answers on every
ORL photo and every shared photo (one CLI process over all of them, --json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convlens.faces.gallery import Gallery

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("CONVLENS_DB", None)
    return env


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, orl_dir, photos_dir) -> Path:
    """Ten ORL people from their first photo, obama and biden from the shared photos."""
    db = tmp_path_factory.mktemp("done") / "g.db"
    with Gallery(db) as g:
        for n in range(1, 11):
            g.enroll(f"s{n}", [orl_dir / f"s{n}" / "1.pgm"])
        g.enroll("obama", [photos_dir / "obama.jpg"])
        g.enroll("biden", [photos_dir / "biden.jpg"])
    return db


def _same(cli: dict, matches, path) -> None:
    assert cli["error"] is None, path
    assert len(cli["faces"]) == len(matches), path
    for got, want in zip(cli["faces"], matches, strict=True):
        assert got["box"] == list(want.box), path
        assert got["name"] == want.name, path
        assert got["distance"] == pytest.approx(want.distance, abs=1e-6), path
        assert [c["name"] for c in got["candidates"]] == [c.name for c in want.candidates], path
        for c, w in zip(got["candidates"], want.candidates, strict=True):
            assert c["distance"] == pytest.approx(w.distance, abs=1e-6), path


def test_cli_identify_matches_gallery_identify(gallery, orl_dir, photos_dir):
    photos = sorted(orl_dir.glob("s*/*.pgm")) + sorted(
        p for p in photos_dir.iterdir() if p.is_file()
    )
    assert len(photos) >= 400
    cmd = [sys.executable, "-m", "convlens", "faces", "identify", "--json", "-k", "3"]
    run = subprocess.run(
        [*cmd, "--db", str(gallery), *map(str, photos)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in photos]
    with Gallery(gallery) as g:
        assert {r["threshold"] for r in rows} == {g.decision_threshold().value}
        streamed = list(g.identify_many(photos, k=3))
        assert [p for p, _ in streamed] == photos
        for row, (path, matches) in zip(rows, streamed, strict=True):
            _same(row, matches, path)
        # One photo at a time (Gallery.identify) gives the same answers as the batches:
        # every shared photo, s1/2.pgm and every 16th ORL photo (all would only cost time).
        by_path = dict(zip(photos, rows, strict=True))
        sample = [p for i, p in enumerate(photos) if p.suffix != ".pgm" or i % 16 == 1]
        sample.append(orl_dir / "s1" / "2.pgm")
        for path in sample:
            _same(by_path[path], g.identify(path, k=3), path)
    # The photo the old CLI (HOG only) missed while verify matched it.
    s1 = by_path[orl_dir / "s1" / "2.pgm"]
    assert s1["faces"][0]["name"] == "s1"
    found = sum(bool(r["faces"]) for r in rows if r["path"].endswith(".pgm"))
    assert found == 400  # the auto detector finds every ORL face
