"""The web page in a real browser (Playwright driving Debian's chromium) against a live
`convlens serve`: enter a key, enrol from an uploaded photo, identify a photo (boxes and
names drawn), read τ, forget with confirmation; screenshots, desktop and phone size."""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

playwright = pytest.importorskip("playwright.sync_api")
from service_live import LiveServer, make_keys  # noqa: E402

CHROMIUM = os.environ.get("CONVLENS_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SHOTS = Path(os.environ.get("CONVLENS_SCREENSHOTS", "out/screenshots"))


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def _small(path: Path, out: Path) -> Path:
    img = Image.open(path).convert("RGB")
    img.thumbnail((640, 640))
    img.save(out, quality=92)
    return out


def _enrol_synthetic(server, key: str) -> None:
    """Six made-up people with three embeddings each, straight through the API."""
    model_id = server.get_json("/api/v1/model", key)[1]["model_id"]
    rng = np.random.default_rng(0)
    for i in range(6):
        centre = rng.normal(size=128) / np.sqrt(128)
        vecs = centre + 0.03 * rng.normal(size=(3, 128))
        body = json.dumps({"model_id": model_id, "embeddings": vecs.tolist()}).encode()
        req = urllib.request.Request(
            f"{server.url}/api/v1/people/synthetic-{i}/embeddings",
            data=body,
            headers={"x-api-key": key, "content-type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=30).close()


def test_enrol_identify_and_forget_through_the_page(
    browser, tmp_path, photos_dir, styles_dir, liveness_dir
):
    styles = styles_dir
    keys = make_keys(tmp_path / "keys.db")
    obama = _small(photos_dir / "obama.jpg", tmp_path / "obama.jpg")
    query = _small(photos_dir / "obama_and_biden.jpg", tmp_path / "obama_and_biden.jpg")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with LiveServer(tmp_path / "g.db", tmp_path / "keys.db", "--rate", "0") as server:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server.url + "/")
        page.get_by_label("API key").fill("cl_bad_key")
        page.get_by_role("button", name="Use key").click()
        expect = playwright.expect
        expect(page.locator("#message")).to_contain_text("API key")  # a clear error, no crash

        page.get_by_label("API key").fill(keys["enroll"])
        page.keyboard.press("Enter")  # the form works from the keyboard
        page.wait_for_selector("#message.ok")
        page.get_by_label("Name").fill("obama")
        page.get_by_label("Photos (one face each)").set_input_files(str(obama))
        page.get_by_role("button", name="Enrol", exact=True).click()
        page.wait_for_selector("#people-table td:text-is('obama')", timeout=60_000)
        expect(page.locator("#message")).to_contain_text("Enrolled obama")
        page.screenshot(path=SHOTS / "people.png", full_page=True)

        page.get_by_role("button", name="Identify").click()
        page.locator("#identify-file").set_input_files(str(query))
        page.wait_for_selector("#identify-list li", timeout=60_000)
        found = page.locator("#identify-list li").all_inner_texts()
        assert len(found) == 3 and sum(t.startswith("obama ") for t in found) == 1
        assert sum(t.startswith("unknown") for t in found) == 2
        canvas = page.locator("#identify-canvas")
        assert canvas.is_visible()
        png = Image.open(io.BytesIO(canvas.screenshot()))
        colours = np.unique(np.asarray(png.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 1000  # the photo is drawn
        page.screenshot(path=SHOTS / "identify.png", full_page=True)

        _enrol_synthetic(server, keys["enroll"])  # people enough for a calibration plot
        page.get_by_role("button", name="Threshold").click()
        page.wait_for_selector("#calibration-plot:not([hidden])")
        assert "shipped default for sface" in page.locator("#threshold-info").inner_text()
        assert "EER" in page.locator("#calibration").inner_text()
        assert "DIR" in page.locator("#open-set").inner_text()
        assert "at FPIR 0.01" in page.locator("#open-set").inner_text()
        page.screenshot(path=SHOTS / "threshold.png", full_page=True)

        page.get_by_role("button", name="Style").click()
        page.get_by_label("Photo", exact=True).set_input_files(str(obama))
        page.get_by_label("Painting").set_input_files(str(styles / "starry_night.jpg"))
        page.get_by_label("Size").fill("64")
        page.get_by_label("Steps").fill("3")
        page.get_by_role("button", name="Start").click()
        page.wait_for_selector("#style-result:not([hidden])", timeout=60_000)
        expect(page.locator("#style-state")).to_have_text("done")
        assert page.locator("#style-progress").get_attribute("max") == "3"
        page.screenshot(path=SHOTS / "style.png", full_page=True)

        page.get_by_role("button", name="Liveness").click()
        clip = liveness_dir / "live_video" / "grid_bbaf2n.mpg"
        page.get_by_label("A short clip").set_input_files(str(clip))
        page.get_by_role("button", name="Check").click()
        page.wait_for_selector("#liveness-list li", timeout=60_000)
        (track,) = page.locator("#liveness-list li").all_inner_texts()
        assert track.startswith("LIVE (expression") and "unknown" in track  # not enrolled
        expect(page.locator("#message")).to_contain_text("1 face(s) in 360x288")
        page.screenshot(path=SHOTS / "liveness.png", full_page=True)

        page.get_by_role("button", name="People").click()
        page.get_by_role("button", name="Forget obama").click()
        page.get_by_role("button", name="Cancel").click()  # the confirmation protects
        assert page.locator("#people-table td:text-is('obama')").count() == 1
        page.get_by_role("button", name="Forget obama").click()
        page.screenshot(path=SHOTS / "forget-confirm.png")
        page.locator("#forget-confirm").click()
        page.wait_for_selector("#people-table td:text-is('obama')", state="detached")
        expect(page.locator("#message")).to_contain_text("1 embedding(s) erased")
        status, body = server.get_json("/api/v1/people", keys["read"])
        assert "obama" not in {p["name"] for p in body["people"]}

        _docs_render_offline(browser, server)

        phone = browser.new_page(viewport={"width": 375, "height": 740})
        phone.goto(server.url + "/app/")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375  # no sideways scrolling on a phone
        phone.screenshot(path=SHOTS / "phone.png", full_page=True)


def _docs_render_offline(browser, server) -> None:
    """/docs (Swagger UI) renders every endpoint with every other host blocked."""
    outside = []

    def only_the_service(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.route("**/*", only_the_service)
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/api/v1/identify", "/api/v1/liveness", "/api/v1/calibration"} <= set(paths)
    page.screenshot(path=SHOTS / "docs.png")
    assert not outside, outside
