"""Liveness over HTTP: a real clip of a talking man (GRID corpus) is live and named; verify
with liveness opens only for him; clips over the limits are refused from their header,
before the library decodes a frame."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from service_live import in_process  # noqa: E402

from convlens.video import VideoWriter, read_frames  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory, liveness_dir, one_torch_thread):
    clips = liveness_dir / "live_video"
    with in_process(tmp_path_factory.mktemp("video")) as (client, keys):
        for name, clip in (("bbaf", "grid_bbaf2n.mpg"), ("swiz", "grid_swiz3n.mpg")):
            first = next(iter(read_frames(clips / clip, max_frames=1))).rgb
            buf = io.BytesIO()
            Image.fromarray(first).save(buf, format="PNG")
            r = client.post(
                "/api/v1/people",
                headers={"x-api-key": keys["enroll"]},
                data={"name": name},
                files=[("images", ("first.png", buf.getvalue(), "image/png"))],
            )
            assert r.status_code == 201, r.text
        yield client, {"x-api-key": keys["recognize"]}, clips / "grid_bbaf2n.mpg"


def _video(path):
    return {"video": (path.name, path.read_bytes(), "video/mpeg")}


def test_a_live_clip_is_live_and_named(env):
    c, key, clip = env
    r = c.post("/api/v1/liveness", headers=key, files=_video(clip))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "live"
    track = body["tracks"][0]
    assert track["name"] == "bbaf" and track["match"] and track["open"]
    assert "expression" in track["liveness"]["reasons"]
    assert track["distance"] <= body["threshold"]["value"] == track["threshold"]
    assert body["clip"] == {"width": 360, "height": 288, "fps": 25.0, "seconds": 2.98, "frames": 75}


def test_verify_with_liveness_opens_only_for_the_person_in_the_clip(env):
    c, key, clip = env
    r = c.post("/api/v1/verify/live", headers=key, data={"name": "bbaf"}, files=_video(clip))
    assert r.status_code == 200, r.text
    assert r.json()["open"] and r.json()["live"] and r.json()["liveness"]["verdict"] == "live"
    r = c.post("/api/v1/verify/live", headers=key, data={"name": "swiz"}, files=_video(clip))
    assert r.json()["live"] and not r.json()["match"] and not r.json()["open"]
    r = c.post("/api/v1/verify/live", headers=key, data={"name": "nobody"}, files=_video(clip))
    assert r.status_code == 404


def _clip(path, frames: int, size: tuple[int, int], fps: float = 25.0):
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps=fps) as out:
        for _ in range(frames):
            out.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    return path


def test_clips_over_the_limits_are_refused_before_decoding(env, tmp_path, monkeypatch):
    import convlens.faces.video.live as live

    def never(*args, **kwargs):
        raise AssertionError("the clip reached the decoder")

    monkeypatch.setattr(live, "identify_live", never)
    c, key, _ = env
    long = _clip(tmp_path / "long.mp4", 11 * 25, (64, 48))  # 11 s at 25 fps
    many = _clip(tmp_path / "many.mp4", 301 * 4, (64, 48), fps=200)  # 6 s, 1204 frames
    big = _clip(tmp_path / "big.mp4", 2, (2048, 1152))
    cases = [
        (_video(long), 400, "clip_too_long", "11.0 s, over the 10 s limit"),
        (_video(many), 400, "clip_too_long", "frames, over the 300 frame limit"),
        (_video(big), 400, "too_many_pixels", "2048x1152"),
        ({"video": ("x.mp4", b"\0" * 1000, "video/mp4")}, 400, "bad_video", "not a video"),
        ({"video": ("x.mp4", b"\0" * (9 << 20), "video/mp4")}, 413, "too_large", "clip limit"),
        ({"image": ("x.png", b"\0", "image/png")}, 400, "bad_request", "'video'"),
    ]
    for files, status, code, text in cases:
        r = c.post("/api/v1/liveness", headers=key, files=files)
        assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        assert text in r.json()["error"]["message"] and "/tmp" not in r.text
