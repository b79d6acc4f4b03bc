"""Screenshot one item of a Snakemake report in headless Chromium (Debian's `chromium` package).

    python .ci/report_screenshot.py results/default/report.html "Ensembles and statistics" \
        results/default/report/auc_table.html docs/report.png

The report is a single-page app without URLs per item, so a copy of it gets a script that clicks the
category, then the item's "eye" button, as a reader would; Chromium renders that copy and saves it.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CLICK = """
<script>
function clickCategory(name) {
  const hits = [...document.querySelectorAll('a,li,span,div,button')].filter(e => e.textContent.trim() === name);
  if (hits.length) hits[hits.length - 1].click();
}
function showItem(path) {
  const cell = [...document.querySelectorAll('td')].find(td => td.textContent.trim() === path);
  if (cell) cell.parentElement.querySelector('a[iconname=eye]').click();
}
setTimeout(() => clickCategory(%(category)r), 1500);
setTimeout(() => showItem(%(item)r), 3000);
</script>
"""


def main(report: str, category: str, item: str, png: str, size: str = "1600,1100") -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(Path(report).read_text(encoding="utf-8") + CLICK % {"category": category, "item": item},
                        encoding="utf-8")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={size}", "--virtual-time-budget=15000",
                        f"--screenshot={Path(png).resolve()}", page.as_uri()],
                       check=True, capture_output=True)
    print(png)


if __name__ == "__main__":
    main(*sys.argv[1:])
