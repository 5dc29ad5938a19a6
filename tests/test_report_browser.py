"""The Snakemake HTML report of the results rules, opened in a real headless browser.

A small workflow includes the project's own ``workflow/rules/results.smk`` (so its
``report()`` declarations and captions are the ones under test) over fake run
directories; Snakemake runs collect, tables, figures and rechoose, writes
``--report``, and Debian's ``chromium`` loads the page. Through the DevTools protocol
(over ``--remote-debugging-pipe``: no extra package) the test clicks through the
report as a reader would and checks that each figure's image decodes, that each figure
has its own caption, and that the comparison table renders as a table.

Skipped when ``chromium`` is absent, except under ``CI=true`` where that fails
(``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dho.results.figures import CAPTIONS
from test_results_fakes import make_run

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.slow

SNAKEFILE = """
from pathlib import Path
R = "results"
PY = "{python} -m dho"
RUN_DIRS = {run_dirs!r}

class FakeSuite:  # what the workflow's compiled suite (S(wildcards)) gives the collect rule
    grid = RUN_DIRS

    @staticmethod
    def metrics_path(run_dir):
        return run_dir + "/metrics.json"

def S(wildcards):
    return FakeSuite

include: {results_rules!r}

rule all:
    input: "results/t/tables", "results/t/figures", "results/t/rechoose.csv"
"""


class DevTools:
    """A headless chromium driven through the DevTools protocol on fds 3 (in) and 4 (out)."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.call("Page.enable")

    def call(self, method: str, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_chrome, 1 << 20)
                assert chunk, "chromium closed the DevTools pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                return reply["result"]
        raise AssertionError(f"no reply to {method}")

    def js(self, expression: str, in_frame: bool = False):
        """``expression``'s value in the page, or in the page's (first) iframe, which the report
        loads from a data: URL (another origin: reached through an isolated world)."""
        where = {}
        if in_frame:
            children = self.call("Page.getFrameTree")["frameTree"].get("childFrames", [])
            if not children:
                return None
            frame = children[0]["frame"]["id"]
            where["contextId"] = self.call("Page.createIsolatedWorld", frameId=frame)["executionContextId"]
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True, **where)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, in_frame: bool = False):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression, in_frame)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


# clicks the last element of the report app whose text is exactly `text`
CLICK = """(text => {{ const hits = [...document.querySelectorAll('#app a, #app li, #app td, #app button')]
    .filter(e => e.innerText.trim() === text); if (!hits.length) return false; hits.pop().click(); return true; }})({text!r})"""
# clicks the icon `icon` ("eye" = show, "information-circle" = caption) of the result row `row`
ROW_ICON = """((row, icon) => {{ const tr = [...document.querySelectorAll('#app tr')]
    .find(r => r.innerText.trim() === row); if (!tr) return false;
    tr.querySelector(`a[iconname="${{icon}}"]`).click(); return true; }})({row!r}, {icon!r})"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium not found: .ci/run installs Debian's chromium for this test")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    work = tmp_path_factory.mktemp("report")
    runs = work / "runs"
    run_dirs = []
    for seed in (1, 2):
        for labels, acc in (("1shot", 50.0), ("4shot", 60.0)):
            for method, teacher, delta in (("dho", "zs", 2.0), ("kd", "zs", 0.0), ("ce", "none", -5.0)):
                run_dirs.append(str(make_run(
                    runs, dataset="shapes", method=method, teacher=teacher, labels=labels, seed=seed,
                    test_acc=acc + delta + seed, teacher_test_acc=None if teacher == "none" else 45.0,
                    logits=(30, 4) if method == "dho" else None,
                    cosine=[(0, 0.1), (10, 0.0)] if method == "dho" else [(0, -0.3), (10, -0.2)])))
    (work / "Snakefile").write_text(SNAKEFILE.format(
        python=sys.executable, run_dirs=run_dirs, results_rules=str(ROOT / "workflow" / "rules" / "results.smk")))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1", "-s", str(work / "Snakefile"), "-d", str(work)]
    for extra in ([], ["--report", str(work / "report.html")]):
        done = subprocess.run(snakemake + extra, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    return work / "report.html"


@pytest.fixture
def page(report, tmp_path):
    browser = DevTools(tmp_path / "profile")

    def open_category(category: str) -> list[str]:
        """Load the report afresh, open Results > CATEGORY; the names of its results."""
        browser.call("Page.navigate", url=report.as_uri())
        browser.wait_for(CLICK.format(text="Results"))
        browser.wait_for(CLICK.format(text=category))
        return browser.wait_for("[...document.querySelectorAll('#app tr')].slice(1).map(r => r.innerText.trim())")

    browser.open_category = open_category
    try:
        yield browser
    finally:
        browser.close()


def test_each_figure_shows_a_decoded_image_and_its_own_caption(page):
    assert sorted(page.open_category("figures")) == sorted(CAPTIONS)
    for name, caption in CAPTIONS.items():
        page.open_category("figures")
        page.wait_for(ROW_ICON.format(row=name, icon="eye"))
        width = page.wait_for(f"""[...document.querySelectorAll('img')].filter(i => i.src.includes('filename={name}.png'))
                                  .map(i => i.complete && i.naturalWidth).pop()""")
        assert width > 300, name
        page.open_category("figures")
        page.wait_for(ROW_ICON.format(row=name, icon="information-circle"))
        text = page.wait_for("document.querySelector('#app').innerText.includes('DESCRIPTION') && "
                             "document.querySelector('#app').innerText")
        assert " ".join(caption.split()) in " ".join(text.split()), name
        others = [c for n, c in CAPTIONS.items() if n != name]
        assert not any(" ".join(c.split()) in " ".join(text.split()) for c in others), name


def test_the_comparison_table_renders_as_a_table(page):
    rows = page.open_category("tables")
    assert "results/t/tables/comparison.html" in rows and "results/t/tables/comparison.csv" in rows, rows
    page.wait_for(ROW_ICON.format(row="results/t/tables/comparison.html", icon="eye"))
    cells = page.wait_for("""(() => { const t = document.querySelector('table');
        return t && [...t.querySelectorAll('tr')].map(r => [...r.children].map(c => c.innerText.trim())); })()""",
                          in_frame=True)
    header, body = cells[0], cells[1:]
    assert header == ["method", "1 shot", "4 shots"]  # one dataset, student and teacher: in the title
    assert [r[0] for r in body] == ["teacher (zero-shot)", "CE", "KD (logit)", "DHO"]
    assert body[3][1:] == ["53.5 ± 0.7", "63.5 ± 0.7"]  # DHO: 50 + 2 + seed, 60 + 2 + seed over seeds 1, 2
