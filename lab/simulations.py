"""Simulation results, computed once and kept as a run, so replaying a notebook reads them back.

A notebook's calibrations and coverage checks take minutes to simulate. :func:`cached` returns a
simulation's result (a JSON value or a pandas frame), stored in the run ``simulations``
(``data/runs/simulations/results.jsonl``) under a key made of the simulation's name and its
parameters: the same question is simulated once; a changed parameter (a new n, a new seed, a new
``version`` of the simulation's code) is a new key, simulated when first asked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from lab.store import Run, now

RUN_ID = "simulations"
RESULTS = "results.jsonl"


def key(name: str, params: Mapping[str, Any]) -> str:
    canonical = json.dumps({"name": name, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cached(name: str, params: Mapping[str, Any], compute: Callable[..., Any], *, run: Run | None = None) -> Any:
    """``compute(**params)``, or its stored result when the run already holds it."""
    run = run or Run(RUN_ID)
    digest = key(name, params)
    for _, entry in run.read_lines(RESULTS) if run.dir.is_dir() else ():
        if entry.get("key") == digest:
            return _decode(entry["result"])
    result = compute(**params)
    if not run.exists:
        run.write_manifest({"run_id": run.id, "experiment": "simulations", "started_at": now(), "synthetic": True,
                            "description": "results of simulations, keyed by name and parameters"})
    run.append_line({"key": digest, "name": name, "params": params, "result": _encode(result)}, RESULTS)
    return result


def _encode(result: Any) -> Any:
    if isinstance(result, pd.DataFrame):
        return {"frame": json.loads(result.to_json(orient="split", index=False, double_precision=15))}
    return result


def _decode(stored: Any) -> Any:
    if isinstance(stored, dict) and set(stored) == {"frame"}:
        frame = stored["frame"]
        return pd.DataFrame(frame["data"], columns=frame["columns"])
    return stored
