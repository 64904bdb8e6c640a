"""report.html (benchmarks/reporting/html.py): built from committed shapes records copied to a temporary
folder, checked as text (the Table model's rows, relative links that resolve, nothing online,
escaping) and in a real browser: Debian's Chromium, headless, driven by Selenium, opens it from
disk and checks the labels, that every image loaded, and the layout at phone width; it saves a
screenshot (tests/artifacts/, or $VAEBENCH_ARTIFACTS) and prints its path."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import markupsafe
import pytest

from benchmarks.reporting.frames import read_runs
from benchmarks.reporting.html import _balance
from benchmarks.report import write_report
from benchmarks.reporting.table import build_table
from vaes.store import RunFolder
from tests.services import CHROMIUM_FLAGS, REPO, chromium  # noqa: F401  (the browser fixture)

SHAPES = REPO / "results" / "shapes" / "runs"
# two one-stage runs and a two-stage one (its samples_stage2.png grid, its second-stage curve)
PICK = ("balanced-s0-", "beta-s0-", "sigma-s1-")
ODD_LABEL = 'beta <b>&"β"'  # markup in a label must show as text, never become markup
PHONE = (390, 844)          # an iPhone-sized viewport, CSS pixels


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[str]]:
    """A report of three shapes runs (one relabelled with markup characters); returns the
    output folder and the run labels."""
    runs = [d for d in sorted(SHAPES.iterdir()) if d.name.startswith(PICK)]
    if len(runs) != len(PICK):
        pytest.skip(f"the committed shapes runs {PICK} are not all under {SHAPES}")
    out = tmp_path_factory.mktemp("report")
    for d in runs:
        shutil.copytree(d, out / "runs" / d.name)
    rec = out / "runs" / runs[1].name / "record.json"
    data = json.loads(rec.read_text())
    data["label"] = ODD_LABEL
    rec.write_text(json.dumps(data))
    write_report(out / "runs", out, {"name": "shapes <subset>"})
    return out, sorted(read_runs(out / "runs").frame["label"].unique())


class _Page(HTMLParser):
    """The page's image sources, links, table rows (cell texts) and whether it has a script."""

    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.rows, self.scripts, self._row, self._cell = [], [], [], 0, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag in ("a", "link") and a.get("href"):
            self.links.append(a["href"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr":
            self.rows.append(self._row)
            self._row = None


def test_report_html_is_the_table_offline_and_relative(report):
    out, labels = report
    html = (out / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    table = build_table(read_runs(out / "runs").frame, {"name": "shapes <subset>"})
    # the table is the Table model: one body row per model row, the same names in the same order
    body = page.rows[1:1 + len(table.rows)]
    assert [r[0].split(" ")[0] for r in body] == [r.name.split(" ")[0] for r in table.rows]
    assert len(page.rows[0]) == len(table.columns) + 1
    for _, text in table.notes:  # the notes (verdicts, detectable differences) are on the page, whole
        assert str(markupsafe.escape(text)) in html
    # offline: no script, nothing fetched from a server; every image and link relative and present
    assert page.scripts == 0 and not re.search(r"""(src|href)=["'](https?:)?//""", html)
    assert {"curves.png", "effective_beta.png", "samples.png"} <= set(page.imgs)
    assert sum(s.endswith("samples_stage2.png") for s in page.imgs) == 1  # the two-stage run's grid
    for ref in page.imgs + [h for h in page.links if not h.startswith("#")]:
        assert not Path(unquote(ref)).is_absolute(), ref
        assert (out / unquote(ref)).is_file(), f"{ref} does not resolve from {out}"
    assert sum(h.endswith("record.json") for h in page.links) == 3
    # autoescape: the label's markup is text
    assert "beta &lt;b&gt;&amp;&#34;β&#34;" in html and ODD_LABEL not in html
    assert "shapes &lt;subset&gt;" in html
    # the balance: every run says its effective beta (or why it has none), sigma's moves with gamma
    assert html.count('<ul class="balance">') == 3 and "second stage (" in html
    assert (out / "effective_beta.png").stat().st_size > 5000


def _artifacts() -> Path:
    path = Path(os.environ.get("VAEBENCH_ARTIFACTS", REPO / "tests" / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_report_in_chromium(report, chromium):  # noqa: F811  (the fixture imported above)
    from selenium import webdriver  # noqa: PLC0415  # inside: the test extra; the fixture skips without it
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    out, labels = report
    options = webdriver.ChromeOptions()
    options.binary_location = chromium.binary
    profile = tempfile.mkdtemp(prefix="vaebench-chromium-")  # a fresh profile for this run only
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromium.driver))

    def viewport(w: int, h: int) -> None:
        # headless Chromium keeps a window at least 500 px wide: a phone's viewport is emulated
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": True})

    try:
        viewport(*PHONE)
        driver.set_page_load_timeout(30)
        driver.get((out / "report.html").as_uri())
        table_text = driver.find_element(By.ID, "results").text
        for label in labels:  # shown as text, odd characters included
            assert label in table_text, f"label {label!r} not in the table as the browser shows it"
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
        broken = driver.execute_script(
            "return [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'))")
        n_images = driver.execute_script("return document.images.length")
        assert n_images >= 10 and broken == [], f"images that did not load: {broken}"
        # phone width: the page never scrolls sideways; the wide table scrolls inside its own box
        width = driver.execute_script("return window.innerWidth")
        assert width <= PHONE[0] + 20, f"window {width} px wide, asked for {PHONE[0]}"
        page_w = driver.execute_script("return document.documentElement.scrollWidth")
        assert page_w <= width, f"the page is {page_w} px wide at a {width} px window"
        box = driver.execute_script("const b = document.querySelector('.table-box');"
                                    "return [b.scrollWidth, b.clientWidth, b.getBoundingClientRect().right]")
        assert box[0] > box[1] and box[2] <= width, f"table box (scroll, client, right) = {box}"
        wide = driver.execute_script(
            "return [...document.images].filter(i => i.getBoundingClientRect().right > window.innerWidth + 1)"
            ".map(i => i.getAttribute('src'))")
        assert wide == [], f"images wider than the phone screen: {wide}"
        shot = _artifacts() / "report_phone.png"
        viewport(PHONE[0], 2400)  # the table, its notes and the first figures
        assert driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.stat().st_size > 10_000


def test_a_record_without_what_the_balance_needs_keeps_the_report(report):
    out, _ = report
    run = next(d for d in (out / "runs").iterdir() if d.name.startswith("balanced-"))
    broken = out / "broken"
    shutil.copytree(run, broken)
    data = json.loads((broken / "record.json").read_text())
    data["config"]["batch_size"] = "a hundred"  # steps per epoch cannot be formed from it
    (broken / "record.json").write_text(json.dumps(data))
    (sentence,) = _balance(RunFolder(broken).read())
    assert sentence.startswith("effective beta not computable from this record (ValueError")
    intact = _balance(RunFolder(run).read())[0]
    assert "beta " in intact and "→" in intact  # the intact record has its curve
