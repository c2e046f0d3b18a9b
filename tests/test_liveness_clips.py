"""End to end: a shared live clip is judged live; a generated print attack is not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convlens.faces.video import Watcher, WatchOptions
from convlens.video import read_frames


def _final_verdict(path, **options):
    with Watcher(path, None, WatchOptions(**options)) as w:
        left = [e for _, _, evs in w.frames() for e in evs if e.kind == "left"]
    assert left, "no face was tracked"
    longest = max(left, key=lambda e: e.frame)
    assert longest.frame >= 45, "the face was lost early"
    return longest.liveness


@pytest.mark.usefixtures("one_torch_thread")
def test_live_talker_is_live(liveness_dir):
    v = _final_verdict(liveness_dir / "live_video" / "grid_bbaf2n.mpg")
    assert v.verdict == "live", v.to_json()
    assert "expression" in v.reasons


@pytest.mark.usefixtures("one_torch_thread")
def test_printed_photo_held_by_hand_is_not_live(tmp_path, photos_dir, attack_clips):
    still = np.asarray(Image.open(photos_dir / "obama.jpg").convert("RGB"))
    clip = attack_clips.make_attack("print", still, tmp_path / "print.mpg", seed=0)
    v = _final_verdict(clip)
    assert v.verdict != "live", v.to_json()


@pytest.mark.usefixtures("one_torch_thread")
def test_frozen_frame_is_spoof(tmp_path, liveness_dir, attack_clips):
    live = [f.rgb for f in read_frames(liveness_dir / "live_video" / "grid_bbaf2n.mpg")]
    clip = attack_clips.make_attack("frozen", live, tmp_path / "frozen.mpg", seed=0, seconds=2)
    v = _final_verdict(clip)
    assert v.verdict == "spoof" and "frozen" in v.reasons, v.to_json()


@pytest.mark.usefixtures("one_torch_thread")
def test_live_clip_replayed_on_a_hand_held_screen_is_spoof(tmp_path, liveness_dir, attack_clips):
    """The replayed face talks and blinks (live evidence); the screen carrying it gives it away.
    (Before the corner-based carried cue every generated replay was accepted.)"""
    live = [f.rgb for f in read_frames(liveness_dir / "live_video" / "grid_lbbc2a.mpg")]
    clip = attack_clips.make_attack("replay", live, tmp_path / "replay.mpg", seed=7, fill=0.95)
    v = _final_verdict(clip)
    assert v.verdict == "spoof" and "carried" in v.reasons, v.to_json()
