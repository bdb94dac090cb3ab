"""The page of ``ssd serve`` in a real browser (headless Chromium driven by Playwright): an uploaded image gets
its detections drawn, the score slider filters them without a request, and the camera mode draws frames of
Chromium's fake camera live. Screenshots are kept in ``$SSD_TEST_ARTIFACTS`` (default ``build/test-artifacts``)."""

import os
import shutil
from pathlib import Path

import pytest

from serve_helpers import running_server, tiny_checkpoint, write_client_images
from ssd.engine.predictor import Predictor
from ssd.serve import ServeSettings
from ssd.serve.app import create_app

WAIT_MS = 60_000
CHROMIUM_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox"]


def chromium_path() -> str:
    """Debian's Chromium (``.ci/run`` installs it); without one the test is skipped, or fails under CI."""
    found = os.environ.get("SSD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("SSD_REQUIRE_BROWSER"):
        pytest.fail("no Chromium found (set SSD_CHROMIUM or install Debian's chromium)")
    pytest.skip("no Chromium: install Debian's chromium package to run the browser test")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    root = Path(__file__).resolve().parent.parent
    folder = Path(os.environ.get("SSD_TEST_ARTIFACTS", root / "build" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_page_draws_an_uploaded_image_and_the_live_camera(tmp_path, artifacts):
    executable = chromium_path()
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    checkpoint = tiny_checkpoint(tmp_path)
    image = write_client_images(tmp_path / "images")["photo.jpg"]
    predictor = Predictor(checkpoint)
    scores = predictor(image)[0]["scores"]
    high = round(float(scores.median()), 2)  # a slider position that keeps about half of them
    at_half, at_high = len(scores[scores >= 0.5]), len(scores[scores >= high])
    assert at_half > at_high > 0

    app = create_app(predictor, ServeSettings(model_name="tiny.pt"))
    with running_server(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.includes('tiny.pt')", timeout=WAIT_MS)
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.getElementById('canvas').dataset.drawn !== '0'", timeout=WAIT_MS)
            assert int(page.get_attribute("#canvas", "data-drawn")) == at_half  # the slider starts at 0.50
            assert page.locator("#detections li").count() == at_half
            page.screenshot(path=str(artifacts / "serve_page_image.png"))

            requests_before = page.evaluate("fetch('/v1/stats').then(r => r.json()).then(s => s.requests)")
            page.eval_on_selector("#score", f"e => {{ e.value = '{high}'; e.dispatchEvent(new Event('input')); }}")
            assert int(page.get_attribute("#canvas", "data-drawn")) == at_high
            assert page.evaluate("fetch('/v1/stats').then(r => r.json()).then(s => s.requests)") == requests_before

            page.click("#camera")
            page.wait_for_function("Number(document.getElementById('canvas').dataset.frames) >= 3", timeout=WAIT_MS)
            assert "frames/s" in page.text_content("#status")
            page.screenshot(path=str(artifacts / "serve_page_camera.png"))
            page.click("#camera")  # stop
        finally:
            browser.close()
    assert (artifacts / "serve_page_camera.png").stat().st_size > 0


def test_the_page_asks_for_the_api_key_once(tmp_path):
    executable = chromium_path()
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    checkpoint = tiny_checkpoint(tmp_path)
    image = write_client_images(tmp_path / "images")["crop.png"]
    app = create_app(Predictor(checkpoint), ServeSettings(model_name="tiny.pt", api_key="k3y"))
    with running_server(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            prompts = []
            page.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.accept("k3y")))
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.includes('tiny.pt')", timeout=WAIT_MS)
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.getElementById('canvas').dataset.drawn !== '0'", timeout=WAIT_MS)
        finally:
            browser.close()
    assert prompts == ["This server needs its API key:"]  # asked once, for the model; the upload reused the key
