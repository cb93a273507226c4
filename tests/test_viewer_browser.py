"""A real browser against ``simrecon view``: headless Chromium (Debian's ``chromium``) driven by Playwright.

Skipped, with the reason, when viser, Playwright or a Chromium binary is missing. CI installs them:
``apt-get install -y chromium`` and ``pip install viser playwright`` (the ``viewer`` and ``dev`` extras);
never ``playwright install`` (the system Chromium is used through ``executable_path``).
Chromium is found as ``$SIMRECON_CHROMIUM``, ``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH.
"""

from __future__ import annotations

import io
import os
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("viser", reason="viser is not installed (pip install 'simrecon[viewer]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

from PIL import Image  # noqa: E402

from simrecon.compose.scenes import open_scene  # noqa: E402
from simrecon.viewer.app import SceneViewer  # noqa: E402


def _chromium() -> str | None:
    env = os.environ.get("SIMRECON_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _chromium()
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (apt-get install -y chromium, or set "
                                                         "SIMRECON_CHROMIUM)"),
              pytest.mark.timeout(120)]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-unsafe-swiftshader", "--disable-dev-shm-usage"]
TOKEN = "browser-test-token"


def _canvas(page) -> np.ndarray:
    # generous: Playwright waits for the page's fonts before a screenshot, which took over 10 s on a loaded CI box
    png = page.locator("canvas").first.screenshot(timeout=40_000)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    h, w = img.shape[:2]
    return img[int(0.35 * h):, : int(0.6 * w)]  # the street; clear of the GUI panel and notifications


def _changed(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels that changed clearly (the actors moved), not JPEG noise."""
    return int((np.abs(a - b).max(axis=-1) > 40).sum())


def _wait_status(page, viewer, needle: str, timeout: float = 40.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:  # one slow read (a busy machine) is retried until the deadline, not fatal
            text = page.inner_text("body", timeout=max(1_000.0, (end - time.monotonic()) * 1000))
        except sync_api.TimeoutError:
            continue
        if needle in text and "(refined)" in viewer.last_status and needle in viewer.last_status:
            return text
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {needle!r}; status: {viewer.last_status!r}")


def test_browser_renders_and_scrubs_time(synth_small, tmp_path):
    scene = open_scene(synth_small)
    t0, t1 = scene.log.time_span
    viewer = SceneViewer(scene, synth_small, host="127.0.0.1", port=0, token=TOKEN, preview_width=160)
    viewer.start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True,
                                         env={**os.environ, "HOME": str(tmp_path)})
            try:
                context = browser.new_context(viewport={"width": 900, "height": 600})
                page = context.new_page()
                page.set_default_timeout(20_000)
                # Without the token: refused before viser sees the request.
                resp = page.goto(f"http://127.0.0.1:{viewer.port}/")
                assert resp is not None and resp.status == 401
                # With it: the page, its websocket (cookie) and the first rendered frame.
                resp = page.goto(viewer.url)
                assert resp is not None and resp.status == 200
                _wait_status(page, viewer, f"t = {t0:.2f} s")
                time.sleep(0.5)  # the last image message reaches the canvas
                before = _canvas(page)
                assert before.std() > 8, "the canvas is blank"
                time.sleep(0.3)
                assert _changed(_canvas(page), before) < 20  # a still view is a still image
                assert viewer.time == pytest.approx(t0)

                # Move the timeline in the browser: focus the time slider, jump to its end.
                slider = page.get_by_role("slider").first
                slider.focus()
                page.keyboard.press("End")
                _wait_status(page, viewer, f"t = {t1:.2f} s")
                assert viewer.time == pytest.approx(t1)
                deadline = time.monotonic() + 10
                changed = 0
                while time.monotonic() < deadline:  # the new image reaches the canvas
                    changed = _changed(_canvas(page), before)
                    if changed >= 100:
                        break
                    time.sleep(0.3)
                assert changed >= 100, f"the frame did not change after moving the timeline ({changed} pixels)"
                if os.environ.get("SIMRECON_VIEWER_SCREENSHOT"):
                    page.screenshot(path=os.environ["SIMRECON_VIEWER_SCREENSHOT"])
            finally:
                browser.close()
    finally:
        viewer.stop()
