"""The formats the lab imports, one module each, and telling them apart by content.

A format module has ``NAME``, ``DESCRIPTION``, ``sniff(head: bytes) -> bool`` (does the start of
the file look like this format?) and ``batches(path) -> Iterator[pyarrow.Table]`` (record columns
it holds; the ``csv`` format also takes a column mapping).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from lab.core.errors import BadInput
from lab.imports import FORMATS, aiperf, genai_perf, guidellm, litellm, llmperf, otel, vllm_bench
from lab.imports import table as tabular
from lab.imports.files import head

MODULES: dict[str, ModuleType] = {m.NAME: m for m in (
    aiperf, genai_perf, guidellm, vllm_bench, litellm, otel, llmperf, tabular)}
"""Format name -> module, in the order :func:`detect` tries them (``csv`` last: it takes any table)."""
assert set(MODULES) == set(FORMATS), "lab.imports.FORMATS names every format module"


def names() -> str:
    return ", ".join(MODULES)


def module(name: str) -> ModuleType:
    """The module of a format name (``-`` and ``_`` alike); ``ValueError`` naming the formats otherwise."""
    found = MODULES.get(name.strip().lower().replace("_", "-"))
    if found is None:
        raise BadInput(f"unknown format {name!r}: use one of {names()}")
    return found


def detect(path: Path) -> str:
    """The format of a file, from its content; ``ValueError`` naming the formats when no one fits."""
    if path.is_dir():
        raise BadInput(f"{path} is a folder: name one file (a folder of LLMPerf results: --format llmperf)")
    start = head(path)
    if not start.strip():
        raise BadInput(f"{path} is empty: nothing to import")
    for name, candidate in MODULES.items():
        if candidate.sniff(start):
            return name
    raise BadInput(f"cannot tell the format of {path} from its content: give --format, one of {names()} "
                     "(csv takes --map field=column for a table of your own)")
