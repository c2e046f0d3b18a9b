"""`convlens faces watch` JSON events and annotated video; `verify --live` exit codes."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from convlens.cli import main
from convlens.video import read_frames


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, liveness_dir):
    folder = tmp_path_factory.mktemp("watch")
    clip = liveness_dir / "live_video" / "grid_bbaf2n.mpg"
    first = next(iter(read_frames(clip, max_frames=1))).rgb
    Image.fromarray(first).save(folder / "bbaf.png")
    other = next(iter(read_frames(liveness_dir / "live_video" / "grid_swiz3n.mpg", max_frames=1)))
    Image.fromarray(other.rgb).save(folder / "swiz.png")
    db = folder / "g.db"
    assert main(["faces", "enroll", "bbaf", str(folder / "bbaf.png"), "--db", str(db)]) == 0
    assert main(["faces", "enroll", "swiz", str(folder / "swiz.png"), "--db", str(db)]) == 0
    return db, clip


@pytest.mark.usefixtures("one_torch_thread")
def test_watch_prints_track_events_and_writes_a_video(gallery, tmp_path, capsys):
    db, clip = gallery
    out = tmp_path / "annotated.mp4"
    code = main(["faces", "watch", str(clip), "--db", str(db), "-o", str(out), "--quiet"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "appeared" and kinds[-1] == "left"
    named = [e for e in events if e["event"] == "identified"]
    assert named and named[0]["name"] == "bbaf" and named[0]["distance"] <= named[0]["threshold"]
    assert all({"track", "time", "frame", "box"} <= set(e) for e in events)
    assert events[-1]["liveness"]["verdict"] == "live"
    assert len(list(read_frames(out))) == 75


@pytest.mark.usefixtures("one_torch_thread")
def test_verify_live_opens_only_for_the_live_matching_person(gallery, capsys):
    db, clip = gallery
    assert main(["faces", "verify", "--live", str(clip), "--as", "bbaf", "--db", str(db)]) == 0
    assert main(["faces", "verify", "--live", str(clip), "--as", "swiz", "--db", str(db)]) == 1
    capsys.readouterr()
    assert main(["faces", "verify", "--as", "bbaf", "--db", str(db)]) == 2
    assert "PHOTO" in capsys.readouterr().err


def test_watch_refuses_bad_sources(tmp_path, capsys):
    assert main(["faces", "watch", str(tmp_path / "missing.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["faces", "watch"]) == 2
    assert "SOURCE" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # usage error: not a video suffix
        main(["faces", "watch", "x.mp4", "-o", "x.png"])
