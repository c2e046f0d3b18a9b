"""The REST API in process (FastAPI's TestClient) over a real gallery and the real encoder:
enrol, identify, verify, detect, embeddings in and out, photos, rename, forget, calibration,
style jobs, and the error shapes."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from service_live import in_process  # noqa: E402

from convlens.faces.gallery.policy import shipped_threshold  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory, photos_dir, one_torch_thread):
    with in_process(tmp_path_factory.mktemp("api")) as (client, keys):
        yield client, keys, photos_dir


def _h(keys, scope="admin"):
    return {"x-api-key": keys[scope]}


def _file(path, side: int = 640):
    """The photo as an upload, shrunk to `side` px (faces stay large; tests stay quick)."""
    img = Image.open(path).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return (path.name, buf.getvalue(), "image/jpeg")


def test_enrol_identify_verify_and_forget(env):
    c, keys, photos = env
    r = c.post(
        "/api/v1/people",
        headers=_h(keys, "enroll"),
        data={"name": "obama"},
        files=[("images", _file(photos / "obama.jpg"))],
    )
    assert r.status_code == 201, r.text
    assert r.json()["added"] and r.json()["photos"] == 1
    # base64 JSON, the other way in
    b64 = base64.b64encode(_file(photos / "biden.jpg")[1]).decode()
    r = c.post("/api/v1/people/biden/photos", headers=_h(keys, "enroll"), json={"images": [b64]})
    assert r.status_code == 201, r.text

    r = c.post(
        "/api/v1/identify",
        headers=_h(keys, "recognize"),
        files={"image": _file(photos / "obama_and_biden.jpg")},
        data={"k": "2"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    names = sorted(f["name"] for f in body["faces"] if f["name"])
    assert names == ["biden", "obama"]
    for f in body["faces"]:
        assert len(f["box"]) == 4 and len(f["candidates"]) == 2
        assert f["decision"] == ("match" if f["name"] else "unknown")
        assert [c["match"] for c in f["candidates"]] == [
            c["distance"] <= body["threshold"]["value"] for c in f["candidates"]
        ]
    tau = body["threshold"]
    shipped, info = shipped_threshold(c.get("/api/v1/model", headers=_h(keys)).json()["model_id"])
    assert tau["value"] == shipped and tau["scorer"] == "distance"
    assert tau["provenance"]["calibrated"] is False and tau["provenance"]["set"] == info["set"]
    assert tau["provenance"]["source"].startswith("shipped default for sface")

    r = c.post(
        "/api/v1/verify",
        headers=_h(keys, "recognize"),
        files={"image": _file(photos / "obama2.jpg")},
        data={"name": "obama"},
    )
    assert r.json()["match"] is True and r.json()["distance"] < shipped
    r = c.post(
        "/api/v1/verify",
        headers=_h(keys, "recognize"),
        files={"image": _file(photos / "obama2.jpg"), "image2": _file(photos / "biden.jpg")},
    )
    assert r.json()["match"] is False and r.json()["distance"] > shipped

    # the same photo cannot be someone else too
    r = c.post(
        "/api/v1/people/impostor/photos",
        headers=_h(keys),
        files=[("images", _file(photos / "obama.jpg"))],
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"

    r = c.delete("/api/v1/people/obama", headers=_h(keys, "enroll"))
    assert r.json() == {"name": "obama", "erased": 1}
    r = c.delete("/api/v1/people/obama", headers=_h(keys, "enroll"))
    assert r.status_code == 404
    assert "g.db" not in r.json()["error"]["message"]  # no server paths in answers


def test_detect_and_embeddings_round_trip(env):
    c, keys, photos = env
    image = {"image": _file(photos / "biden.jpg")}
    r = c.post("/api/v1/detect", headers=_h(keys, "recognize"), files=image)
    (face,) = r.json()["faces"]
    assert len(face["landmarks"]) == 5 and face["box"][2] > face["box"][0]
    r = c.post(
        "/api/v1/embeddings",
        headers=_h(keys, "recognize"),
        files={"image": _file(photos / "biden.jpg")},
    )
    out = r.json()
    assert out["model_id"] and len(out["faces"][0]["embedding"]) == 128
    query = {"model_id": out["model_id"], "embeddings": [out["faces"][0]["embedding"]]}
    r = c.post("/api/v1/embeddings/identify", headers=_h(keys, "recognize"), json=query)
    assert r.json()["faces"][0]["name"] == "biden"
    r = c.post(
        "/api/v1/embeddings/identify",
        headers=_h(keys, "recognize"),
        json={**query, "model_id": "someone-elses-encoder"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_model"


def test_an_uncalibrated_gallery_names_nobody_and_refuses_to_verify(env, monkeypatch):
    """An encoder without a shipped τ (a custom --model) and no calibration: identify answers
    with candidates but no name, verify is a 409 telling what to do (was a 500)."""
    from convlens.faces.gallery import policy

    c, keys, photos = env
    monkeypatch.setattr(policy, "shipped_threshold", lambda model_id: (None, {}))
    r = c.post(
        "/api/v1/identify",
        headers=_h(keys, "recognize"),
        files={"image": _file(photos / "biden.jpg")},
    )
    assert r.status_code == 200, r.text
    (face,) = r.json()["faces"]
    assert face["name"] is None and face["candidates"][0]["name"] == "biden"
    assert face["candidates"][0]["match"] is False and r.json()["threshold"]["value"] is None
    for data, files in (
        ({"name": "biden"}, {"image": _file(photos / "biden.jpg")}),
        ({}, {"image": _file(photos / "biden.jpg"), "image2": _file(photos / "obama2.jpg")}),
    ):
        r = c.post("/api/v1/verify", headers=_h(keys, "recognize"), data=data, files=files)
        assert r.status_code == 409 and r.json()["error"]["code"] == "uncalibrated", r.text
        assert "g.db" not in r.text


def _unit(rng, n, dim=128):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_photos_rename_paging_and_calibration(env):
    c, keys, _ = env
    model_id = c.get("/api/v1/model", headers=_h(keys, "read")).json()["model_id"]
    rng = np.random.default_rng(0)
    centres = _unit(rng, 6)
    for i, centre in enumerate(centres):
        vecs = centre + 0.05 * rng.normal(size=(3, 128)).astype(np.float32)
        r = c.post(
            f"/api/v1/people/p{i}/embeddings",
            headers=_h(keys, "enroll"),
            json={"model_id": model_id, "embeddings": vecs.tolist()},
        )
        assert r.status_code == 201 and len(r.json()["added"]) == 3
    page = c.get("/api/v1/people?page=1&size=3", headers=_h(keys, "read")).json()
    assert [p["name"] for p in page["people"]] == ["p2", "p3", "p4"]
    assert page["total"] == 7  # with biden

    photos = c.get("/api/v1/people/p0/photos", headers=_h(keys, "read")).json()["photos"]
    assert len(photos) == 3
    r = c.delete(f"/api/v1/people/p0/photos/{photos[0]['id']}", headers=_h(keys, "enroll"))
    assert r.status_code == 200
    r = c.delete(f"/api/v1/people/p1/photos/{photos[1]['id']}", headers=_h(keys, "enroll"))
    assert r.status_code == 404  # that photo is p0's
    assert len(c.get("/api/v1/people/p0/photos", headers=_h(keys)).json()["photos"]) == 2
    r = c.patch("/api/v1/people/p5", headers=_h(keys, "enroll"), json={"name": "p5 renamed"})
    assert r.json() == {"name": "p5 renamed", "previous": "p5"}

    cal = c.get("/api/v1/calibration", headers=_h(keys, "read")).json()
    assert cal["people"] == 7 and cal["report"]["eer"] < 0.05
    o = cal["report"]["open_set"]  # one-shot: 3 of 7 people enrolled from their first photo
    assert o["enrolled"] == 3 and o["rank1"] == 1.0
    assert o["enrolled"] + o["mated_probes"] + o["non_mated_probes"] == cal["photos"] == 18
    for fpir in ("0.01", "0.001"):  # too few strangers to measure: said, not hidden
        assert o["at_fpir"][fpir]["measurable"] is False and 0 <= o["at_fpir"][fpir]["dir"] <= 1
    png = c.get("/api/v1/calibration/plot.png", headers=_h(keys, "read"))
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > 200
    r = c.post("/api/v1/calibration", headers=_h(keys, "enroll"), json={"far": 0.01})
    assert r.status_code == 403
    tau = c.post("/api/v1/calibration", headers=_h(keys), json={"far": 0.01}).json()
    assert tau["value"] != shipped_threshold(model_id)[0] and tau["provenance"]["far"] == 0.01
    assert "calibrated on the gallery" in tau["provenance"]["source"]
    assert c.get("/api/v1/threshold", headers=_h(keys, "read")).json() == tau
    tau = c.post("/api/v1/calibration", headers=_h(keys), json={"fpir": 0.2}).json()
    p = tau["provenance"]
    assert p["fpir"] == 0.2 and p["protocol"] == "one-shot open set" and p["enrolled"] == 3
    assert p["dir"] == 1.0 and tau["value"] > 0  # well-separated made-up people
    r = c.post("/api/v1/calibration", headers=_h(keys), json={"fpir": 0.001})
    assert r.status_code == 400 and "stranger photos" in r.json()["error"]["message"]
    r = c.post("/api/v1/calibration", headers=_h(keys), json={"far": 0.1, "fpir": 0.1})
    assert r.status_code == 400 and "one of far or fpir" in r.json()["error"]["message"]
    assert c.get("/api/v1/threshold", headers=_h(keys, "read")).json() == tau


def test_style_job_progress_result_and_cancel(env, styles_dir):
    c, keys, photos = env
    style = sorted(styles_dir.glob("*.jpg"))[0]
    files = {"content": _file(photos / "biden.jpg"), "style": _file(style)}
    r = c.post(
        "/api/v1/style/jobs",
        headers=_h(keys, "recognize"),
        files=files,
        data={"size": "64", "steps": "3"},
    )
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    assert c.get(f"/api/v1/style/jobs/{job}", headers=_h(keys, "admin")).status_code == 404
    with c.stream("GET", f"/api/v1/style/jobs/{job}/events", headers=_h(keys, "recognize")) as s:
        text = "".join(s.iter_text())
    events = [b for b in text.split("\n\n") if b.strip()]
    assert events[-1].startswith("event: end")
    end = json.loads(events[-1].split("data: ", 1)[1])
    assert end["status"] == "done", end
    assert any(b.startswith("event: progress") for b in events)
    png = c.get(f"/api/v1/style/jobs/{job}/result", headers=_h(keys, "recognize"))
    assert max(Image.open(io.BytesIO(png.content)).size) == 64

    r = c.post(
        "/api/v1/style/jobs",
        headers=_h(keys, "recognize"),
        files=files,
        data={"size": "64", "steps": "500"},
    )
    job = r.json()["id"]
    c.delete(f"/api/v1/style/jobs/{job}", headers=_h(keys, "recognize"))
    with c.stream("GET", f"/api/v1/style/jobs/{job}/events", headers=_h(keys, "recognize")) as s:
        text = "".join(s.iter_text())
    assert json.loads(text.rsplit("data: ", 1)[1])["status"] == "cancelled"
    r = c.post(
        "/api/v1/style/jobs", headers=_h(keys, "recognize"), files=files, data={"size": "4096"}
    )
    assert r.status_code == 400 and "size" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"image": "not base64!"}}, 400, "bad_image"),
        ({"json": {"image": base64.b64encode(b"GIF89a junk").decode()}}, 400, "bad_image"),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, None),
        ({"json": {}}, 400, "bad_request"),
        ({"json": [1, 2]}, 400, "bad_request"),
    ],
)
def test_bad_requests_get_one_line_errors(env, kwargs, status, code):
    c, keys, _ = env
    headers = {**_h(keys, "recognize"), **kwargs.pop("headers", {})}
    r = c.post("/api/v1/identify", headers=headers, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message"} and "\n" not in err["message"]
    if code:
        assert err["code"] == code


def test_openapi_and_health(env):
    c, _, _ = env
    assert c.get("/health").json()["status"] == "ok"
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/api/v1/identify", "/api/v1/people/{name}/photos", "/api/v1/style/jobs"} <= set(paths)
    assert {"/api/v1/liveness", "/api/v1/verify/live"} <= set(paths)


def test_docs_page_loads_everything_from_the_service(env):
    """Swagger UI names no other host: its script and styles are served here."""
    import re

    c, _, _ = env
    html = c.get("/docs").text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
    assert urls and not [u for u in urls if "//" in u], urls  # no http(s):// or //cdn
    for url in urls:
        r = c.get(url)
        assert r.status_code == 200, url
        if url.endswith(".js"):
            assert len(r.content) > 500_000 and "javascript" in r.headers["content-type"]
    assert c.get("/redoc").status_code == 404  # ReDoc would fetch its logo from a CDN
