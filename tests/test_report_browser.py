"""report.html in a real browser (headless Chromium over the DevTools pipe): at
1366x768 the claims panel is on the first screen, every image loads, the
console stays clean and nothing is wider than the window. Skips only where
Chromium is absent and CI is not set (.ci/run installs it)."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest
from report_fixture import make_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chromium() -> str:
    from fusionkit.report.browser import find_chromium

    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Chromium is installed: .ci/run installs the Debian package `chromium`")
        pytest.skip("no Chromium (apt-get install chromium); CI runs this test")
    return path


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _check_page(res: dict, width: int, height: int, *, all_cards: bool) -> None:
    assert res["viewport"] == {"width": width, "height": height}
    assert res["console_errors"] == []
    assert res["wide"] == [] and res["scroll_width"] <= width
    assert res["images"] and all(i["complete"] and i["natural_width"] > 0 for i in res["images"]), \
        [i["alt"] for i in res["images"] if not i["natural_width"]]
    panel = res["panel"]
    assert panel is not None and 0 <= panel["top"] < height / 2, panel
    assert len(res["cards"]) == 9
    visible = [c for c in res["cards"] if c["bottom"] <= height and c["right"] <= width]
    assert len(visible) == (9 if all_cards else len(visible)) and len(visible) >= 3, res["cards"]


def test_report_in_headless_chromium_on_a_laptop_screen(chromium, tmp_path):
    from fusionkit.report import write_report_for
    from fusionkit.report.browser import inspect_page

    page = write_report_for(make_run(tmp_path / "run"))
    res = inspect_page(page, 1366, 768, binary=chromium, pdf=True)
    _check_page(res, 1366, 768, all_cards=True)  # every claim card on the first screen
    pages = re.findall(rb"/Type\s*/Page[^s]", res["pdf"])
    assert res["pdf"][:5] == b"%PDF-" and len(pages) >= 1 + 5  # it prints: the summary, then a page per task
    assert len(res["images"]) >= 9 + 8  # thumbnails and task figures
    assert _png_size(res["screenshot"]) == (1366, 768)
    (tmp_path / "first_screen.png").write_bytes(res["screenshot"])
    # a narrow window: the panels stack, still nothing wider than the window
    narrow = inspect_page(page, 820, 1000, binary=chromium)
    _check_page(narrow, 820, 1000, all_cards=False)


def test_browser_check_catches_broken_pages(chromium, tmp_path):
    """The probe is not a rubber stamp: a broken image, a script error and a too-wide block are all seen."""
    from fusionkit.report.browser import inspect_page

    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><section id='claims'><div class='claim'>x</div></section>"
                   "<img alt='broken' src='data:image/png;base64,AAAA'>"
                   "<div style='width:3000px'>wide</div><script>null.boom</script></body></html>")
    res = inspect_page(bad, 1366, 768, binary=chromium)
    assert [i["natural_width"] for i in res["images"]] == [0]
    assert any("boom" in e or "null" in e for e in res["console_errors"])
    assert res["wide"] == ["div"] and res["scroll_width"] > 1366


def test_docs_screenshot_is_a_first_screen_of_the_demo_report():
    shot = REPO / "docs" / "report_screenshot.png"
    assert shot.exists(), "refresh with: python -m fusionkit.report.browser runs/tumor_origin/report.html " \
                          "docs/report_screenshot.png"
    assert _png_size(shot.read_bytes()) == (1366, 768)
