"""Where runs live: LAB_RUNS_DIR, else the nearest data/runs from the working folder, else ./data/runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.collect import experiment, review
from lab.store import Run, run_ids, runs_dir


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A project folder with data/runs and notebooks/, LAB_RUNS_DIR unset."""
    monkeypatch.delenv("LAB_RUNS_DIR", raising=False)
    (tmp_path / "data" / "runs").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def test_a_notebook_folder_finds_the_project_runs(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks")
    assert runs_dir() == project / "data" / "runs"
    assert Run("r1").dir == project / "data" / "runs" / "r1"


def test_the_nearest_data_runs_wins(project, monkeypatch):
    inner = project / "notebooks" / "data" / "runs"
    inner.mkdir(parents=True)
    monkeypatch.chdir(project / "notebooks")
    assert runs_dir() == inner


def test_lab_runs_dir_is_read_when_a_run_is_made_not_at_import(project, monkeypatch, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(project)
    assert Run("r1").dir == project / "data" / "runs" / "r1"
    monkeypatch.setenv("LAB_RUNS_DIR", str(elsewhere))  # set after lab.store was imported
    assert runs_dir() == elsewhere
    assert Run("r1").dir == elsewhere / "r1"
    monkeypatch.setenv("LAB_RUNS_DIR", "")  # empty counts as unset
    assert runs_dir() == project / "data" / "runs"


def test_without_data_runs_it_is_the_working_folders_and_not_created_until_written(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB_RUNS_DIR", raising=False)
    if any((folder / "data" / "runs").is_dir() for folder in tmp_path.parents):
        pytest.skip(f"a parent of {tmp_path} has a data/runs folder")
    monkeypatch.chdir(tmp_path)
    run = Run("fresh")
    assert runs_dir() == tmp_path / "data" / "runs" and run.dir == tmp_path / "data" / "runs" / "fresh"
    assert not (tmp_path / "data").exists() and run_ids() == []
    run.append_line({"i": 1}, "events.jsonl")
    assert (tmp_path / "data" / "runs" / "fresh" / "events.jsonl").exists()


def test_an_explicit_root_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "ignored"))
    assert Run("r1", tmp_path).dir == tmp_path / "r1"
    assert Run("r1", str(tmp_path)).dir == tmp_path / "r1"


def test_the_experiment_loaders_default_to_runs_dir(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks")
    for load in (experiment.load, review.reviews):  # a run id is looked for in the project's runs, found nowhere
        with pytest.raises(Exception, match=str(project / "data" / "runs" / "absent")):
            load("absent")


def test_no_module_keeps_a_runs_dir_constant():
    lab = Path(__file__).resolve().parents[1] / "lab"
    offenders = [str(p) for p in lab.rglob("*.py") if re.search(r"\bRUNS_DIR\b", p.read_text())]
    assert offenders == []  # evaluated at import, it would ignore the folder a notebook runs in
