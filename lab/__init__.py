"""inference-lab: measure how LLM providers behave, with confidence intervals.

``lab.CallRecord`` and ``lab.records_frame`` are the call record and its frame (:mod:`lab.core.records`); the
rest lives in the layers' packages (see ``docs/design.md``). Nothing heavy is imported with the package.
"""

from typing import Any

__all__ = ["CallRecord", "records_frame"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lab.core import records

        return getattr(records, name)
    raise AttributeError(f"module 'lab' has no attribute {name!r}")
