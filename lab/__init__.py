"""inference-lab: measure how LLM providers behave, with confidence intervals."""

from lab.core.records import CallRecord, records_frame

__all__ = ["CallRecord", "records_frame"]
