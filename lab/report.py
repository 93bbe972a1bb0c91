"""``make report``: execute every notebook and write self-contained HTML to ``reports/``."""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

TEMPLATES = Path(__file__).parent / "templates"


def render(notebook: Path, out_dir: Path, timeout_s: int = 1800) -> Path:
    """Execute one notebook in its own folder and write ``out_dir/<stem>.html``."""
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    target = out_dir / f"{notebook.stem}.html"
    target.write_text(body, encoding="utf-8")
    return target


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
        pages.append((render(notebook, out), _title(notebook)))
    items = "\n".join(f'<li><a href="{p.name}">{html.escape(t)}</a></li>' for p, t in pages)
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>inference-lab reports</title></head>\n"
        f"<body><h1>inference-lab reports</h1>\n<ul>\n{items}\n</ul></body></html>\n",
        encoding="utf-8",
    )
    print(f"wrote {len(pages)} reports and {index}")
    return [p for p, _ in pages] + [index]
