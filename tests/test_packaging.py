"""A wheel built from the repository works on its own: installed into a fresh venv outside the
checkout, its ``lab`` command serves the emulator, collects a run and renders a notebook that
reads the package's price table and reference figures."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import anthropic
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
NOT_SOURCES = {".git", ".venv", ".lock-venv", ".pytest_cache", "build", "data", "notebooks", "reports"}
PACKAGE_DATA = ["lab/data/prices.csv", "lab/data/reference/experiment1_windows.csv",
                "lab/data/reference/experiment1_aggregates.csv", "lab/data/reference/experiment2_review.csv",
                "lab/data/reference/experiment2_migration.csv", "lab/data/review/sample_code.py",
                "lab/data/review/answer_key.json", "lab/templates/share/index.html.j2",
                "lab/templates/share/conf.json"]
STEP_TIMEOUT_S = 300  # only against a hang; each step takes seconds

pytestmark = pytest.mark.slow


def copy_sources(target: Path) -> Path:
    """The repository without its virtualenv, history, runs and notebooks: a build leaves its
    ``build/`` and ``*.egg-info`` there, not in the checkout others work in."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        top = NOT_SOURCES if Path(folder) == REPO else set()
        return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}
    return Path(shutil.copytree(REPO, target, ignore=ignore))


def build_wheel(sources: Path, dist: Path) -> Path:
    """``pip wheel``; without build isolation when this venv's setuptools can build the project
    (77+, for the SPDX ``license``), else pip gets ``setuptools>=77`` from the package index."""
    isolation = ["--no-build-isolation"] if int(metadata.version("setuptools").split(".")[0]) >= 77 else []
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(dist), str(sources)])
    (wheel,) = dist.glob("inference_lab-*.whl")
    return wheel


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed; its dependencies are this venv's, through a ``.pth``
    file added after the install (so pip never sees the checkout's editable install), their data
    files (nbconvert's templates, the kernel spec) through ``JUPYTER_PATH``, see :func:`user_env`."""
    run([sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)])
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "lab_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin"


def user_env() -> dict[str, str]:
    """A user's environment: no runs folder set (runs go to ./data/runs), no path of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LAB_RUNS_DIR")}
    env["JUPYTER_PATH"] = str(Path(sysconfig.get_paths()["data"]) / "share" / "jupyter")
    return env


def run(command: list[str], **options) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, **options)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


NOTEBOOK_SETUP = """import pandas as pd
import lab
from lab import report
from lab.core import prices
from lab.core.paths import REFERENCE_DIR
print("lab from", lab.__file__)
print("priced:", prices.cost_usd("anthropic", "claude-haiku-4-5", 1000, 1000) is not None)
windows = pd.read_csv(REFERENCE_DIR / "experiment1_windows.csv")
print("reference windows:", len(windows))"""


def test_an_installed_wheel_serves_collects_and_reports(tmp_path):
    wheel = build_wheel(copy_sources(tmp_path / "src"), tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert [name for name in PACKAGE_DATA if name not in names] == []
    assert not [name for name in names if "/runs/" in name]
    bin_dir = fresh_venv(tmp_path / "venv", wheel)

    work = tmp_path / "work"  # a folder of the user's, outside the checkout
    work.mkdir()
    env = user_env()
    lab = str(bin_dir / "lab")

    # lab emulator: serves until interrupted, and answers an SDK.
    port = free_port()
    server = subprocess.Popen([lab, "emulator", "--port", str(port), "--profile", "fixed"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with selectors.DefaultSelector() as ready:
            ready.register(server.stdout, selectors.EVENT_READ)
            assert ready.select(STEP_TIMEOUT_S), "lab emulator printed nothing"
        assert f"127.0.0.1:{port}" in server.stdout.readline()
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="test-key", max_retries=0)
        answer = client.messages.create(model="claude-haiku-4-5", max_tokens=16,
                                        messages=[{"role": "user", "content": "hello"}])
        assert answer.content[0].text
    finally:
        server.send_signal(signal.SIGTERM)  # (a test run in the background ignores SIGINT, as its shell does)
        server.communicate(timeout=STEP_TIMEOUT_S)
    assert server.returncode == 0

    # lab collect: a synthetic run in ./data/runs of the user's folder.
    out = run([lab, "collect", "variance", "--run", "t", "--window", "w", "--emulator", "report", "--n", "2",
               "--pause", "0"], cwd=work, env=env)
    assert "2 calls made" in out
    assert len((work / "data" / "runs" / "t" / "calls.jsonl").read_text().splitlines()) == 2

    # lab report: a notebook that reads the package's data and declares the run.
    notebooks = work / "notebooks"
    notebooks.mkdir()
    nb = new_notebook(cells=[new_markdown_cell("# Installed\n\n**Question.** Does the wheel carry its data?"),
                             new_code_cell(NOTEBOOK_SETUP), new_code_cell('report.sources("t")')],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, notebooks / "tiny.ipynb")
    run([lab, "report", "--notebooks", "notebooks", "--out", "reports"], cwd=work, env=env)

    page = (work / "reports" / "tiny.html").read_text()
    assert f"lab from {tmp_path / 'venv'}" in page and str(REPO / "lab") not in page
    assert "priced: True" in page and "reference windows: 10" in page
    assert "run t, " in page and "SYNTHETIC" in page
    assert "Does the wheel carry its data?" in (work / "reports" / "index.html").read_text()
