"""Shareable HTML: data declared SYNTHETIC or REAL from the runs, findings first, code hidden, no network."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lab import report
from lab.core.records import CallRecord
from lab.store import Run

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
LLMPERF = "LLMPerf leaderboard traces, REAL, December 2023"


def make_run(root, run_id, calls):
    """A run as the store keeps it: a manifest and one line per call record."""
    run = Run(run_id, root)
    run.write_manifest({"run_id": run_id, "experiment": "test", "design": {}, "sessions": [],
                        "started_at": "2026-11-27T00:00:00+00:00"})
    for i, (started_at, synthetic, status, provider) in enumerate(calls):
        record = CallRecord(provider=provider, model="m", endpoint="http://127.0.0.1:1", kind="complete",
                            started_at=started_at, latency_ms=1000.0 + i, status=status, synthetic=synthetic,
                            error_type=None if status == "ok" else "cancelled")
        run.append_line({"key": f"call-{i}", "record": record.to_dict()})
    return run


DAY1 = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
# 00:30 at UTC+01:00 is still the 27th in UTC: dates are UTC days.
DAY1_ELSEWHERE = datetime(2026, 11, 28, 0, 30, tzinfo=timezone(timedelta(hours=1)))
DAY2 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_a_run_is_labelled_from_its_records(tmp_path):
    make_run(tmp_path, "synth", [(DAY1, True, "ok", "anthropic"), (DAY2, True, "ok", "anthropic"),
                                 (DAY2, False, "error", "openai")])  # a cancelled loser carries no answer
    make_run(tmp_path, "real", [(DAY1, False, "ok", "anthropic"), (DAY1_ELSEWHERE, False, "ok", "openai")])
    make_run(tmp_path, "mixed", [(DAY1, True, "ok", "anthropic"), (DAY1, False, "ok", "anthropic")])

    synth, real, mixed = report.sources("synth", "real", "mixed", root=tmp_path).items

    assert synth.text == "run synth, SYNTHETIC (emulator), collected 2026-11-27 to 2026-11-28"
    assert (synth.label, synth.run_id, synth.first_day, synth.last_day) == ("SYNTHETIC", "synth",
                                                                            "2026-11-27", "2026-11-28")
    assert real.text == "run real, REAL (anthropic, openai), collected 2026-11-27"
    assert real.label == "REAL" and real.providers == ("anthropic", "openai")
    assert mixed.label == "MIXED" and "1 SYNTHETIC (emulator) and 1 REAL (anthropic) calls" in mixed.text


def test_the_banner_shows_and_carries_the_declaration(tmp_path):
    make_run(tmp_path, "emulator-demo", [(DAY1, True, "ok", "anthropic"), (DAY2, True, "ok", "anthropic")])

    declared = report.sources("emulator-demo", LLMPERF, root=tmp_path)
    bundle = declared._repr_mimebundle_()

    assert bundle["text/plain"] == ("Data:\n- run emulator-demo, SYNTHETIC (emulator), collected 2026-11-27 to "
                                    f"2026-11-28\n- {LLMPERF}")
    assert ">SYNTHETIC</span>" in bundle["text/html"] and ">REAL</span>" in bundle["text/html"]
    labels = [(s["label"], s["run_id"]) for s in bundle[report.MIME]["sources"]]
    assert labels == [("SYNTHETIC", "emulator-demo"), ("REAL", None)]
    nb = new_notebook(cells=[new_code_cell("", outputs=[nbformat.v4.new_output("display_data", data=bundle)])])
    nbformat.validate(nb)
    assert report.declared(nb) == list(declared.items)


def test_a_source_must_be_a_run_or_say_what_it_is(tmp_path):
    make_run(tmp_path, "empty", [])
    with pytest.raises(ValueError, match="neither a recorded run nor a source that says REAL or SYNTHETIC"):
        report.sources("emulator-dmo", root=tmp_path)  # a typo, not a run
    with pytest.raises(ValueError, match="neither a recorded run"):
        report.sources("traces from somewhere, December 2023", root=tmp_path)
    with pytest.raises(ValueError, match="holds no call records yet"):
        report.sources("empty", root=tmp_path)
    assert report.sources("simulated draws, SYNTHETIC", root=tmp_path).items[0].label == "SYNTHETIC"
    assert report.sources("SYNTHETIC scenarios beside REAL traces", root=tmp_path).items[0].label == "MIXED"


SETUP = """from lab import report
report.sources("demo", "LLMPerf leaderboard traces, REAL, December 2023")"""
CODE = """HIDDEN_CODE_MARKER = 6 * 7
print("computed", HIDDEN_CODE_MARKER)"""
FINDING = """from IPython.display import Markdown
Markdown(f"COMPUTED-FINDING: the answer is {HIDDEN_CODE_MARKER}.")"""


def study_notebook():
    findings = new_markdown_cell("## Findings\n\nWRITTEN-FINDING: it works.")
    findings.metadata["tags"] = ["findings"]
    computed = new_code_cell(FINDING)
    computed.metadata["tags"] = ["findings"]
    return new_notebook(cells=[
        new_markdown_cell("# A tiny study\n\n**Question.** Does the tiny thing\nwork?\n\n**Method.** METHOD-TEXT."),
        new_code_cell(SETUP), new_code_cell(CODE), new_markdown_cell("## Details\n\nDETAILS-TEXT"),
        findings, computed,
    ], metadata=KERNEL)


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    """A synthetic run ``demo`` in a runs folder that the notebooks' kernels see."""
    root = tmp_path / "runs"
    make_run(root, "demo", [(DAY1, True, "ok", "anthropic"), (DAY1, True, "ok", "anthropic")])
    monkeypatch.setenv("LAB_RUNS_DIR", str(root))
    return root


@pytest.mark.slow
def test_strict_nbval_passes_on_a_notebook_with_a_banner(runs, tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    path = folder / "study.ipynb"
    nbformat.write(study_notebook(), path)
    nbformat.write(report.execute(path), path)  # committed outputs, as `make notebooks` writes them

    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                           "--nbval-current-env", str(path)], cwd=folder, capture_output=True, text=True,
                          env=os.environ, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\b3 passed\b", done.stdout), done.stdout[-2000:]  # one item per code cell


class Page(HTMLParser):
    """Records, for each piece of text, the classes of every element around it; and every tag."""

    def __init__(self, text):
        super().__init__()
        self.stack, self.texts, self.tags = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs, [t for t, _ in self.stack]))
        if tag not in ("input", "meta", "link", "img", "br", "hr"):
            self.stack.append((tag, set((attrs.get("class") or "").split())))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if data.strip():
            self.texts.append((data, set().union(*(classes for _, classes in self.stack))))

    def position(self, needle):
        return next(i for i, (data, _) in enumerate(self.texts) if needle in data)


def test_a_page_opens_with_question_data_and_findings_hides_code_and_loads_nothing(runs, tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nbformat.write(study_notebook(), notebooks / "01_study.ipynb")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Bare\n\nNo data here."), new_code_cell("1 + 1")],
                                metadata=KERNEL), notebooks / "02_bare.ipynb")

    written, failures = report.build(notebooks, tmp_path / "reports")

    assert [p.name for p in written] == ["01_study.html", "02_bare.html", "index.html"] and not failures
    text = (tmp_path / "reports" / "01_study.html").read_text()
    page = Page(text)
    # Reading order: title and question, the data box, the findings (even the one computed last), the rest.
    order = ["A tiny study", "run demo", "WRITTEN-FINDING", "COMPUTED-FINDING", "computed 42", "DETAILS-TEXT"]
    positions = [page.position(needle) for needle in order]
    assert positions == sorted(positions), list(zip(order, positions))
    data_box = next(classes for data, classes in page.texts if "run demo" in data)
    assert "lab-sources" in data_box
    assert "run demo, SYNTHETIC (emulator), collected 2026-11-27" in re.sub(r"<[^>]+>", "", text)
    # Code is in the page but hidden until the unchecked "Show code" box before <main> is ticked.
    code = [classes for data, classes in page.texts if "HIDDEN_CODE_MARKER" in data]
    assert code and all({"jp-CodeCell", "jp-Cell-inputWrapper"} <= classes for classes in code)
    toggle = [(attrs, parents) for tag, attrs, parents in page.tags if attrs.get("id") == "lab-show-code"]
    assert len(toggle) == 1 and toggle[0][0].get("type") == "checkbox" and "checked" not in toggle[0][0]
    assert toggle[0][1][-1] == "body" and "main" not in toggle[0][1]
    css = re.sub(r"\s+", " ", text)
    assert "#lab-show-code:not(:checked) ~ main .jp-CodeCell .jp-Cell-inputWrapper { display: none; }" in css
    # Nothing from the network: only plain links may point elsewhere.
    for tag, attrs, _ in page.tags:
        for name in ("src", "href", "data"):
            value = (attrs.get(name) or "").strip()
            assert tag == "a" or not re.match(r"(https?:)?//", value), (tag, attrs)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text)

    bare = (tmp_path / "reports" / "02_bare.html").read_text()
    assert "not declared in this notebook" in bare
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'href="01_study.html"' in index and "A tiny study" in index
    assert "Does the tiny thing\nwork?" in index and "METHOD-TEXT" not in index
    assert ">SYNTHETIC</span>" in index and ">REAL</span>" in index and "run demo" in index
    assert "LLMPerf leaderboard traces" in index
    assert 'href="02_bare.html"' in index and "not declared" in index


def test_title_and_question_come_from_the_first_cell():
    nb = new_notebook(cells=[new_markdown_cell("# Title\nThe question,\non two lines.\n\nMore.")])
    assert report.title_and_question(nb, "fallback") == ("Title", "The question,\non two lines.")
    assert report.title_and_question(new_notebook(cells=[new_code_cell("1")]), "fallback") == ("fallback", "")
