"""``make report``: execute every notebook and write self-contained HTML to ``reports/``."""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

TEMPLATES = Path(__file__).parent / "templates"


def execute(notebook: Path, timeout_s: int = 1800) -> nbformat.NotebookNode:
    """Execute a notebook in its own folder, as nbval does; consecutive stream outputs merged."""
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    return nb


def render(nb: nbformat.NotebookNode, name: str, out_dir: Path) -> Path:
    """Write an executed notebook as ``out_dir/<name>.html``, with nothing loaded from the network."""
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": name}})
    target = out_dir / f"{name}.html"
    target.write_text(body, encoding="utf-8")
    return target


def refresh(notebooks_dir: str | Path = "notebooks") -> None:
    """Maintainers: re-execute every notebook in place, so its committed outputs are current."""
    for notebook in sorted(Path(notebooks_dir).glob("*.ipynb")):
        print(f"executing {notebook} ...", flush=True)
        nbformat.write(execute(notebook), notebook)


def _title(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem


def build(notebooks_dir: str | Path = "notebooks", out_dir: str | Path = "reports") -> list[Path]:
    """Render every ``*.ipynb`` of ``notebooks_dir`` and an ``index.html`` that links them."""
    notebooks = sorted(Path(notebooks_dir).glob("*.ipynb"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for notebook in notebooks:
        print(f"executing {notebook} ...", flush=True)
        pages.append((render(execute(notebook), notebook.stem, out), _title(notebook)))
    items = "\n".join(f'<li><a href="{p.name}">{html.escape(t)}</a></li>' for p, t in pages)
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>inference-lab reports</title></head>\n"
        f"<body><h1>inference-lab reports</h1>\n<ul>\n{items}\n</ul></body></html>\n",
        encoding="utf-8",
    )
    print(f"wrote {len(pages)} reports and {index}")
    return [p for p, _ in pages] + [index]
