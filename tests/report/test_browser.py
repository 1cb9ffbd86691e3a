"""The report in a real browser: headless Chromium (Debian's package) renders the report of every
test run with no console error and no page error, and every plot on it is a picture, not a blank
box. Without /usr/bin/chromium the test is skipped, unless POLYTASK_REQUIRE_BROWSER is set (CI sets
it), when it fails."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageStat

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = bool(os.environ.get("POLYTASK_REQUIRE_BROWSER"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRED,
    reason=f"{CHROMIUM} is not installed (apt-get install chromium; POLYTASK_REQUIRE_BROWSER=1 makes this a failure)",
)


@pytest.fixture(scope="module")
def page_of():
    if not CHROMIUM.exists():
        pytest.fail(f"POLYTASK_REQUIRE_BROWSER is set but {CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)

        def open_page(path: Path, problems: list[str]):
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: problems.append(f"request: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            return page

        yield open_page
        browser.close()


def test_the_report_renders_without_errors_and_no_plot_is_blank(page_of, report_path, tmp_path):
    problems: list[str] = []
    page = page_of(report_path, problems)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as full:
        assert full.height > 5000 and full.width == 1280
    figures = page.locator("figure.plot img")
    count = figures.count()
    assert count == page.locator("figure.plot").count() > 40
    assert page.locator("img").count() == count
    for i in range(count):
        image = figures.nth(i)
        image.scroll_into_view_if_needed()
        natural = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert natural[0] and natural[1] > 200 and natural[2] > 100, (i, natural)
        box = image.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, (i, box)
        with Image.open(io.BytesIO(image.screenshot())) as pic:
            rgb = pic.convert("RGB")
            colours = rgb.getcolors(maxcolors=1 << 20)
            assert colours is None or len(colours) > 20, (i, image.get_attribute("alt"))
            assert max(ImageStat.Stat(rgb).stddev) > 5, (i, image.get_attribute("alt"))
    assert problems == []
    page.close()
