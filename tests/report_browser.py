"""Read a built Snakemake report as a reader does, in headless Chromium (Debian's `chromium`), through
Playwright: the landing page, then every category and every item in it, each saved as a screenshot
with what a reader would stumble on measured (images shown narrower than they were drawn, table
columns beyond the window's right edge).

    .venv/bin/python tests/report_browser.py results/default/report.html docs/report

writes docs/report/<n>-<item>.png (the README's screenshots). tests/test_workflow.py runs the same
walk on the small test config's report and asserts on the measurements.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

WIDTH, HEIGHT = 1600, 1100


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Item:
    """One report item as shown: its category and label, the screenshot, and the measurements."""

    category: str
    label: str
    mime: str
    screenshot: Path
    # (natural width, shown width) of each image, in CSS pixels
    images: list[tuple[int, float]] = field(default_factory=list)
    # "table 2, column 'note': right edge 1712 px" for each header cell beyond the window
    overflowing: list[str] = field(default_factory=list)
    text: str = ""


@dataclass
class Walk:
    landing_text: str
    landing: Path
    categories: list[str]
    items: list[Item]


# The report's own logo is an image too: only the item's images count (`source` the item's data URI,
# or null for every image of an item's page).
_MEASURE_IMAGES = """
(source) => [...document.querySelectorAll('img')].filter(i => i.naturalWidth > 0 && (!source || i.src === source))
        .map(i => [i.naturalWidth, i.getBoundingClientRect().width])
"""
_MEASURE_TABLES = """
([offset, width]) => {
  const out = [];
  document.querySelectorAll('table').forEach((table, t) => {
    table.querySelectorAll('tr:first-child > th, tr:first-child > td').forEach(cell => {
      const right = offset + cell.getBoundingClientRect().right;
      const name = cell.textContent.trim();
      if (right > width) out.push(`table ${t + 1}, column '${name}': right edge ${Math.round(right)} px`);
    });
  });
  return out;
}
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def walk(report: Path, out: Path) -> Walk:
    """Open `report`, screenshot the landing page and every item of every category into `out`."""
    from playwright.sync_api import sync_playwright

    browser_path = chromium()
    if browser_path is None:
        raise RuntimeError("chromium not found: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(Path(report).resolve().as_uri())
            page.wait_for_function("typeof app !== 'undefined' && document.querySelector('#app').children.length")
            page.wait_for_timeout(800)
            landing = out / "0-landing.png"
            page.screenshot(path=landing)
            landing_text = page.inner_text("#app")
            categories = page.evaluate("Object.keys(categories).sort((a, b) => a.localeCompare(b))")
            for category in categories:
                # As a reader goes: back to the menu, then the category (a fresh list of its items).
                page.evaluate("app.setView({navbarMode: 'menu'})")
                page.wait_for_timeout(100)
                page.evaluate("c => app.showCategory(c)", category)
                paths = page.evaluate("c => Object.values(categories[c]).flat()", category)
                for path in paths:
                    entry = page.evaluate("p => ({mime: results[p].mime_type, labels: results[p].labels, "
                                          "name: results[p].name})", path)
                    label = (entry["labels"] or {}).get("result") or entry["name"]
                    mime = entry["mime"]
                    content = "img" if mime.startswith("image/") else "html" if mime == "text/html" else "other"
                    # What the item's "eye" button does (Snakemake's ToggleViewManager).
                    page.evaluate("([p, c]) => app.setView({content: c, contentPath: results[p].data_uri, "
                                  "resultPath: p})", [path, content])
                    page.wait_for_timeout(400)
                    shot = out / f"{_slug(category)}--{_slug(label)}.png"
                    item = Item(category, label, mime, shot)
                    if content == "img":
                        page.wait_for_function("p => [...document.querySelectorAll('img')].some("
                                               "i => i.src === results[p].data_uri && i.naturalWidth > 0)", arg=path)
                        source = page.evaluate("p => results[p].data_uri", path)
                        item.images = [tuple(x) for x in page.evaluate(_MEASURE_IMAGES, source)]
                    elif content == "html":
                        frame_element = page.wait_for_selector("iframe")
                        frame = frame_element.content_frame()
                        frame.wait_for_load_state()
                        offset = frame_element.bounding_box()["x"]
                        item.images = [tuple(x) for x in frame.evaluate(_MEASURE_IMAGES, None)]
                        item.overflowing = frame.evaluate(_MEASURE_TABLES, [offset, WIDTH])
                        item.text = frame.inner_text("body")
                    page.screenshot(path=shot)
                    items.append(item)
        finally:
            browser.close()
    return Walk(landing_text, landing, categories, items)


if __name__ == "__main__":
    report_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    result = walk(report_path, out_dir)
    for item in result.items:
        problems = [f"{n} px image shown at {w:.0f} px" for n, w in item.images if w < n - 1] + item.overflowing
        print(f"{item.screenshot.name}: {'; '.join(problems) or 'ok'}")
