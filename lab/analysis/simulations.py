"""Simulation results, computed once and kept as a run, so replaying a notebook reads them back.

A notebook's calibrations and coverage checks take minutes to simulate. :func:`cached` returns a
simulation's result (a JSON value or a pandas frame), stored in the run ``simulations``
(``data/runs/simulations/results.jsonl``) under a key that names the question: the simulation's
name, the ``version`` of its code and its parameters as the question states them (which fit of
which reference data, which run, n, seed, reading). Fitted floats do not belong in a key; a float
that does is rounded to :data:`KEY_DIGITS` significant digits, so the last-digit noise of another
machine's arithmetic names the same question. The result itself is kept exact.

A replay never simulates: with ``LAB_REPLAY_ONLY=1`` (set by ``make test`` for the notebooks and by
``make report``), a key the cache lacks raises :class:`MissingSimulation`, which names the simulation
and the command that fills the cache (``make notebooks``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab.core import config
from lab.core.errors import LabError
from lab.store import Run, now

RUN_ID = "simulations"
RESULTS = "results.jsonl"
KEY_DIGITS = 6
"""Significant digits a float keeps in a key."""
FILL_COMMAND = "make notebooks"


class MissingSimulation(LabError, LookupError):
    """A simulation the cache does not hold, asked for in a replay."""


def canonical(value: Any) -> Any:
    """``value`` as plain JSON for a key: dataclasses as dicts, arrays as lists, numpy scalars as Python
    numbers, floats rounded to :data:`KEY_DIGITS` significant digits (non-finite ones as text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [canonical(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        rounded = float(f"{value:.{KEY_DIGITS}g}")
        return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded
    return value if value is None or isinstance(value, str) else str(value)


def key(name: str, params: Mapping[str, Any], version: int = 1) -> str:
    """The cache key of a simulation: a hash of its name, code version and canonical parameters."""
    question = {"name": name, "version": version, "params": canonical(params)}
    return hashlib.sha256(json.dumps(question, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cached(name: str, params: Mapping[str, Any], compute: Callable[..., Any], *, version: int = 1,
           run: Run | None = None) -> Any:
    """``compute(**params)``, or its stored result when the run already holds it (see the module's notes)."""
    run = run or Run(RUN_ID)
    digest = key(name, params, version)
    for _, entry in run.read_lines(RESULTS) if run.dir.is_dir() else ():
        if entry.get("key") == digest:
            return _decode(entry["result"])
    if config.replay_only():
        raise MissingSimulation(
            f"simulation {name!r} (version {version}, {_describe(params)}) is not in the cache {run.dir / RESULTS}, "
            f"and this is a replay ({config.REPLAY_ONLY}=1), which never simulates: run `{FILL_COMMAND}` to "
            "simulate it, then commit data/runs/simulations")
    result = compute(**params)
    if not run.exists:
        run.write_manifest({"run_id": run.id, "experiment": "simulations", "started_at": now(), "synthetic": True,
                            "description": "results of simulations, keyed by name, version and parameters"})
    run.append_line({"key": digest, "name": name, "version": version, "params": canonical(params),
                     "result": _encode(result)}, RESULTS)
    return result


def cache_state(folder: Path | str | None = None) -> tuple[int, int] | None:
    """The size and modification time of the cache a notebook in ``folder`` reads (None when there is none):
    it changes when something was simulated."""
    with contextlib.chdir(folder) if folder else contextlib.nullcontext():
        path = Run(RUN_ID).dir / RESULTS  # the runs folder is found from the working folder, as a kernel finds it
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _describe(params: Mapping[str, Any], width: int = 160) -> str:
    text = json.dumps(canonical(params), sort_keys=True)
    return text if len(text) <= width else text[:width - 3] + "..."


def _encode(result: Any) -> Any:
    if isinstance(result, pd.DataFrame):
        return {"frame": json.loads(result.to_json(orient="split", index=False, double_precision=15))}
    return result


def _decode(stored: Any) -> Any:
    if isinstance(stored, dict) and set(stored) == {"frame"}:
        frame = stored["frame"]
        return pd.DataFrame(frame["data"], columns=frame["columns"])
    return stored
