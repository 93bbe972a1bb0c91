"""``lab report``: execute the notebooks and write HTML pages a reader can share.

A page opens with what its reader needs: the notebook's first cell (its title and
question), a box that names every source of its data as SYNTHETIC or REAL with run id
and dates, then the findings, then everything else. Code is hidden until the reader
ticks "Show code" (plain CSS, no script); nothing is loaded from the network, so a
page can be sent as a single file. ``index.html`` lists each notebook with its title,
its question and its data labels.

What a notebook does for this:

- **Title and question**: its first cell is markdown, a ``# Title`` line, then the
  question as the first paragraph (the index quotes that paragraph).
- **Data**: it declares its sources with :func:`sources`, as the last line of a cell
  (or inside ``display``). A run id is looked up in the store, read only: whether the
  data are synthetic (the emulator's answers) or real, which providers answered and
  on which days all come from the run's call records. Any other text is a source
  described by hand, and must say ``REAL`` or ``SYNTHETIC`` in capitals::

      report.sources("emulator-demo", "LLMPerf leaderboard traces, REAL, December 2023")

  The cell shows a banner ("Data: run emulator-demo, SYNTHETIC (emulator), collected
  2026-11-27"); the same declaration travels in the output under the MIME type
  :data:`MIME`, where the page and the index read it. A run whose answered calls are
  partly synthetic is MIXED, with the counts. Banner and declaration depend only on
  the run, so strict nbval compares them like any other output. A page whose notebook
  declares nothing says so in its data box.
- **Findings**: the cells that state them carry the tag ``findings`` (cell metadata
  ``tags``; in JupyterLab, the property inspector). A markdown cell, or a code cell
  whose output states them with numbers computed above it. Tagged cells are shown
  right after the first cell, in notebook order, wherever they sit in the notebook:
  findings can be computed last and still be read first. The notebook is not changed.
"""

from __future__ import annotations

import copy
import html
import os
import re
import subprocess
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lab.core.errors import BadInput, LabError
from lab.core.paths import TEMPLATES_DIR
from lab.store import MissingRecord

MIME = "application/vnd.inference-lab.sources+json"
"""The MIME type under which a :func:`sources` output carries its declaration."""

FINDINGS_TAG = "findings"
_LABEL_WORD = re.compile(r"\b(SYNTHETIC|REAL|MIXED)\b")
_LABEL_STYLE = {  # inline, so the banner looks the same in JupyterLab and in a page
    "SYNTHETIC": "background:#fde68a;color:#713f12",
    "REAL": "background:#bbf7d0;color:#14532d",
    "MIXED": "background:#e9d5ff;color:#581c87",
}


# -- declaring data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One source of a notebook's data: what it is, SYNTHETIC, REAL or MIXED, and when."""

    text: str
    label: str
    run_id: str | None = None
    first_day: str | None = None
    last_day: str | None = None
    providers: tuple[str, ...] = ()

    @classmethod
    def described(cls, text: str) -> Source:
        """A source described by hand; its text must say REAL or SYNTHETIC (both: MIXED)."""
        found = set(_LABEL_WORD.findall(text)) - {"MIXED"}
        if not found:
            raise BadInput(f"{text!r} is neither a recorded run nor a source that says REAL or SYNTHETIC: "
                             "collect the run first, or describe the data, e.g. "
                             "'LLMPerf leaderboard traces, REAL, December 2023'")
        return cls(" ".join(text.split()), found.pop() if len(found) == 1 else "MIXED")

    @classmethod
    def from_run(cls, run: Any) -> Source:
        """The source a recorded run (a :class:`lab.store.Run`) is, from its call records. The label
        is judged on the calls that were answered: a failed call (cancelled, refused) may carry no
        answer to judge, so failures count only in a run where no call succeeded."""
        from lab.analysis.calls import Calls

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # damage is the loading code's to report, not the label's
                found = Calls(run).provenance  # in DuckDB: an import of 100 million calls is never loaded
        except MissingRecord as exc:
            raise BadInput(f"{exc}: collect it before declaring it as data") from None
        synthetic, real, providers = found["synthetic"], found["real"], found["providers"]
        first, last = found["first"], found["last"]
        real_part = f"REAL ({', '.join(providers) or 'provider not recorded'})"
        if synthetic and real:
            label, kind = "MIXED", f"MIXED: {synthetic:,} SYNTHETIC (emulator) and {real:,} {real_part} calls"
        elif synthetic:
            label, kind = "SYNTHETIC", "SYNTHETIC (emulator)"
        else:
            label, kind = "REAL", real_part
        when = "on an unknown date" if first is None else first if first == last else f"{first} to {last}"
        return cls(f"run {run.id}, {kind}, collected {when}", label, run.id, first, last, tuple(providers))

    def as_html(self) -> str:
        """The text, HTML-escaped, with its label words set as coloured badges."""
        badge = ('<span class="lab-label" style="{style};padding:0 .35em;border-radius:3px;'
                 'font-weight:600">{word}</span>')
        return _LABEL_WORD.sub(lambda m: badge.format(style=_LABEL_STYLE[m[1]], word=m[1]), html.escape(self.text))


class Sources:
    """A notebook's declared data, displayed as a banner (see :func:`sources`)."""

    def __init__(self, items: Iterable[Source]) -> None:
        self.items = tuple(items)

    def __repr__(self) -> str:
        lines = [s.text for s in self.items]
        return "Data: " + lines[0] if len(lines) == 1 else "\n- ".join(["Data:", *lines])

    def _repr_html_(self) -> str:
        return banner_html(self.items)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": repr(self), "text/html": self._repr_html_(),
                MIME: {"sources": [asdict(s) for s in self.items]}}


def sources(*items: str | Source, root: Path | str | None = None) -> Sources:
    """Declare a notebook's data: run ids (looked up in the runs folder, or ``root``) or
    sources described by hand ("LLMPerf leaderboard traces, REAL, December 2023").
    Show the result: it renders as a banner and is what the HTML report labels."""
    from lab.core.paths import valid_run_id
    from lab.store import Run

    found = []
    for item in items:
        if isinstance(item, Source):
            found.append(item)
            continue
        run = Run(item, root) if valid_run_id(item) else None
        found.append(Source.from_run(run) if run is not None and run.exists else Source.described(item))
    if not found:
        raise BadInput("sources() needs at least one run id or described source")
    return Sources(found)


def banner_html(items: Iterable[Source]) -> str:
    """The data banner: each source on its line, labels as badges (or that none was declared)."""
    lines = "".join(f"<li>{s.as_html()}</li>" for s in items)
    if not lines:
        return ('<div class="lab-sources lab-undeclared" style="border-left:4px solid #dc2626;padding:.35em .8em;'
                'margin:.3em 0"><strong>Data</strong>: not declared in this notebook (lab.report.sources)</div>')
    return ('<div class="lab-sources" style="border-left:4px solid #64748b;background:#f8fafc;'
            'padding:.35em .8em;margin:.3em 0"><strong>Data</strong>'
            f'<ul style="margin:.2em 0;padding-left:1.2em">{lines}</ul></div>')


_SOURCE_FIELDS = frozenset(f.name for f in fields(Source))


def declared(nb: Any) -> list[Source]:
    """The sources a notebook's outputs declare, each once, in order."""
    found: dict[Source, None] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for item in output.get("data", {}).get(MIME, {}).get("sources", []):
                if isinstance(item, dict) and {"text", "label"} <= item.keys():
                    known = {k: v for k, v in item.items() if k in _SOURCE_FIELDS}
                    found.setdefault(Source(**{**known, "providers": tuple(known.get("providers") or ())}))
    return list(found)


# -- pages --------------------------------------------------------------------------------------


class NotebookFailed(RuntimeError):
    """A notebook that could not be executed: the message names it, the cell and what happened."""


REPLAY_TIMEOUT_S = 600
"""A replayed cell's time limit: a replay reads recorded data and never simulates, so minutes mean a fault."""


def notebook_tools() -> None:
    """Refuse, in one line, where the notebook tools (an optional extra of the package) are not installed."""
    import importlib.util

    missing = [m for m in ("nbformat", "nbclient", "nbconvert", "ipykernel") if importlib.util.find_spec(m) is None]
    if missing:
        raise LabError(f"pages are written with the notebook tools, and {', '.join(missing)} is not installed: "
                       "pip install 'inference-lab[notebooks]'")


def execute(notebook: Path, timeout_s: int = 1800, env: Mapping[str, str] | None = None) -> Any:
    """Execute a notebook in its own folder, as nbval does (``env``: the kernel's environment, by default
    this process's); consecutive stream outputs merged. A cell that fails or runs past ``timeout_s`` raises
    :class:`NotebookFailed`, which names the notebook, the cell and the error."""
    notebook_tools()
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb = nbformat.read(notebook, as_version=4)
    at = {"cell": None}

    def started(cell: Any, cell_index: int) -> None:
        at["cell"] = cell_index

    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3", on_cell_start=started,
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute(stderr=subprocess.DEVNULL,  # the kernel process's own log; cell output is kept
                       **({"env": dict(env)} if env is not None else {}))
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        where = f"{notebook}, cell {at['cell'] + 1}" if at["cell"] is not None else str(notebook)
        if isinstance(exc, CellTimeoutError):
            what = f"the cell ran past its {timeout_s} s limit"
        elif isinstance(exc, DeadKernelError):
            what = "the kernel died (out of memory?)"
        else:
            what = f"{exc.ename}: {' '.join(str(exc.evalue).split())}"
        raise NotebookFailed(f"{where}: {what}") from exc
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    return nb


def title_and_question(nb: Any, fallback: str) -> tuple[str, str]:
    """The first cell's ``# Title`` and the markdown of its first paragraph (the question)."""
    first = nb.cells[0] if nb.cells and nb.cells[0].cell_type == "markdown" else None
    if first is None:
        return fallback, ""
    lines = first.source.strip().splitlines()
    title = next((line[2:].strip() for line in lines if line.startswith("# ")), fallback)
    text = "\n".join(line for line in lines if not line.startswith("#"))
    question = next((block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()), "")
    return title, question


def for_readers(nb: Any, title: str) -> Any:
    """A copy of an executed notebook in reading order: first cell, data box, findings, the rest."""
    from nbformat.v4 import new_markdown_cell

    page = copy.deepcopy(nb)
    page.metadata["title"] = title
    cells = page.cells
    head = cells[:1] if cells and cells[0].cell_type == "markdown" else []
    for cell in cells:  # the data box at the top shows every declaration once: not again where it was made
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if MIME not in o.get("data", {})]
    findings = [c for c in cells[len(head):] if FINDINGS_TAG in c.metadata.get("tags", [])]
    rest = [c for c in cells[len(head):] if FINDINGS_TAG not in c.metadata.get("tags", [])]
    page.cells = head + [new_markdown_cell(banner_html(declared(nb)))] + findings + rest
    return page


def render(nb: Any, name: str, out_dir: Path) -> Path:
    """Write an executed notebook as ``out_dir/<name>.html`` for readers (see the module's notes)."""
    from nbconvert import HTMLExporter

    title, _ = title_and_question(nb, name)
    exporter = HTMLExporter(template_name="share", extra_template_basedirs=[str(TEMPLATES_DIR)],
                            exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(for_readers(nb, title), resources={"metadata": {"name": name}})
    target = Path(out_dir) / f"{name}.html"
    target.write_text(body, encoding="utf-8")
    return target


def refresh(notebooks_dir: str | Path = "notebooks") -> None:
    """Maintainers: re-execute every notebook in place, so its committed outputs are current. A notebook
    that simulated something the cache lacked (:mod:`lab.analysis.simulations`) is executed again as a replay, so its
    committed outputs are what ``make test`` and ``make report`` will see (no simulation's warnings)."""
    import nbformat

    from lab.analysis.simulations import cache_state
    from lab.core.config import REPLAY_ONLY

    for notebook in sorted(Path(notebooks_dir).glob("*.ipynb")):
        print(f"executing {notebook} ...", flush=True)
        before = cache_state(notebook.parent)
        nb = execute(notebook)
        if cache_state(notebook.parent) != before:
            print(f"executing {notebook} again, as a replay of what it simulated ...", flush=True)
            nb = execute(notebook, REPLAY_TIMEOUT_S, {**os.environ, REPLAY_ONLY: "1"})
        for cell in nb.cells:  # when each cell ran says nothing about the notebook: keep it out of the diff
            cell.metadata.pop("execution", None)
        nbformat.write(nb, notebook)


# -- the index ----------------------------------------------------------------------------------

INDEX_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60em; margin: 2em auto;
       padding: 0 1em; color: #1e293b; }
li.notebook { margin: 0 0 1.4em; list-style: none; }
ul.notebooks { padding: 0; }
li.notebook h2 { font-size: 1.15em; margin: 0 0 .2em; }
.question p { margin: .2em 0; }
.lab-sources ul { margin: .2em 0; list-style: disc; }
"""


def index_html(entries: Iterable[tuple[str, str, str, list[Source]]]) -> str:
    """The index page: per notebook (page file, title, question markdown, sources)."""
    from nbconvert.filters import markdown2html

    items = []
    for page, title, question, found in entries:
        items.append(f'<li class="notebook"><h2><a href="{html.escape(page)}">{html.escape(title)}</a></h2>\n'
                     f'<div class="question">{markdown2html(question)}</div>\n{banner_html(found)}</li>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">"
            f"<title>inference-lab reports</title><style>{INDEX_STYLE}</style></head>\n"
            "<body><h1>inference-lab reports</h1>\n<p>Each page opens with its question, its data and its "
            "findings; its code is hidden until you ask for it.</p>\n"
            f"<ul class=\"notebooks\">\n{chr(10).join(items)}\n</ul></body></html>\n")


def build(notebooks_dir: str | Path = "notebooks", out_dir: str | Path = "reports") -> tuple[list[Path], list[str]]:
    """Replay and render every ``*.ipynb`` of ``notebooks_dir``, then an ``index.html`` that lists them.

    A replay never simulates or calls (``LAB_REPLAY_ONLY=1`` in the kernels). A notebook that fails is named
    with its cell and error, and the others are still rendered: returns the pages written (index last) and
    one line per failure."""
    from lab.core.config import REPLAY_ONLY

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, REPLAY_ONLY: "1"}
    pages, entries, failures = [], [], []
    for notebook in sorted(Path(notebooks_dir).glob("*.ipynb")):
        print(f"executing {notebook} ...", flush=True)
        try:
            nb = execute(notebook, REPLAY_TIMEOUT_S, env)
        except NotebookFailed as exc:
            print(f"  failed: {exc}", flush=True)
            failures.append(str(exc))
            continue
        page = render(nb, notebook.stem, out)
        title, question = title_and_question(nb, notebook.stem)
        pages.append(page)
        entries.append((page.name, title, question, declared(nb)))
    index = out / "index.html"
    index.write_text(index_html(entries), encoding="utf-8")
    print(f"wrote {len(pages)} reports and {index}")
    return [*pages, index], failures
