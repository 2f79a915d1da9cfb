"""The report as a person sees it: report.html in headless Chromium (Debian's `chromium`, driven by
Playwright), checked at laptop width and in print. Screenshots and the printed PDF are kept under
test-artifacts/ (RAYFIT_TEST_ARTIFACTS)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("RAYFIT_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
LAPTOP = {"width": 1366, "height": 768}
A4 = {"width": 794, "height": 1123}  # CSS pixels of an A4 page
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str:
    """The Chromium binary; installed with apt-get where it is missing and this user may; else the
    test skips, saying why."""
    found = next((path for path in map(shutil.which, CANDIDATES) if path), None)
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("no Chromium here and it cannot be installed (apt-get needs root on Debian)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("installing Chromium with apt-get took over 10 minutes")
    found = next((path for path in map(shutil.which, CANDIDATES) if path), None)
    if not found:
        pytest.skip(f"apt-get install chromium failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return found


def check_in_browser(page_path: Path, chromium: str, name: str) -> dict:
    """Open the page in headless Chromium: every image loaded, no console error, nothing wider than
    a laptop screen, every table and figure inside an A4 page in print. A screenshot and the PDF
    are kept; what was found is returned."""
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport=LAPTOP)
            errors = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("requestfailed", lambda request: errors.append(f"failed to load {request.url[:80]}"))
            page.goto(Path(page_path).resolve().as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            page.set_viewport_size(A4)
            page.emulate_media(media="print")
            too_wide = page.evaluate("""Array.from(document.querySelectorAll('table, img, pre, figure'))
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .map(e => e.tagName + ' ' + (e.alt || e.textContent.slice(0, 40)))""")
            page.pdf(path=str(ARTIFACTS / f"{name}.pdf"), format="A4")
        finally:
            browser.close()
    return {"images": images, "errors": errors, "overflow_px": overflow, "too_wide_in_print": too_wide,
            "pdf_bytes": (ARTIFACTS / f"{name}.pdf").stat().st_size}


def assert_renders_cleanly(found: dict, at_least_images: int) -> None:
    assert len(found["images"]) >= at_least_images, found["images"]
    assert all(complete and width > 0 for _, complete, width in found["images"]), found["images"]
    assert found["errors"] == []
    assert found["overflow_px"] <= 0  # no sideways scrolling at laptop width
    assert found["too_wide_in_print"] == []
    assert found["pdf_bytes"] > 10_000
