"""LiteLLM (``BerriAI/litellm``): the proxy's logs of calls, in either of its two shapes.

- ``StandardLoggingPayload`` objects, one per JSON line (what LiteLLM hands custom callbacks and
  writes to its bucket loggers): times in epoch seconds, ``status`` ``success``/``failure``,
  ``error_information`` for a failure, ``stream``, ``response_cost``.
- Spend-log rows (``LiteLLM_SpendLogs``, as the proxy's ``/spend/logs`` returns them: a JSON list,
  or JSON lines): times in ISO 8601, ``spend``, ``request_id``, the failure in ``metadata``.

Both: ``started_at`` ``startTime``; ``latency_ms`` ``endTime - startTime`` (LiteLLM's end of the
call: for a stream, when it logged the finished stream); ``kind`` from the call's ``stream``
parameter (spend logs: a first chunk before the end marks a stream; unknown for a failure); tokens
from usage; ``provider`` ``custom_llm_provider``; ``model``; ``cost_usd`` the cost LiteLLM computed
(empty when it could not price the model, or logged 0); ``endpoint`` ``api_base``; ``text`` and ``stop_reason`` the response's
message and ``finish_reason`` (in a spend-log row only when the proxy stores responses). A time
without a zone is taken as UTC.

``ttft_ms``: ``completionStartTime`` is when LiteLLM's stream wrapper returned its first chunk,
whatever the chunk held, and nothing in either shape tells what it held. An OpenAI-API stream
(``openai`` and the OpenAI-compatible providers) opens with a role-only chunk, sent before any
text: its ``completionStartTime`` is not a time to first token, so TTFT is left empty. LiteLLM's
Anthropic stream returns no chunk for the events before the first text (checked against the
emulator's planned first token in ``tests/fixtures/litellm``): for ``anthropic``
(:data:`FIRST_CHUNK_IS_CONTENT`) ``completionStartTime - startTime`` is the TTFT, and ``tpot_ms``
follows ((latency - TTFT) / (output tokens - 1); the latency ends when LiteLLM logged the stream). A call that was
not streamed has no TTFT (its ``completionStartTime`` is its end).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lab.core import jsontext
from lab.core.errors import BadInput
from lab.imports import FORMATS, files
from lab.imports import columns as cols
from lab.imports.files import damaged, json_lines, load_json, text_lines

NAME = "litellm"
DESCRIPTION = FORMATS[NAME]
BATCH_ROWS = 100_000
FIRST_CHUNK_IS_CONTENT = frozenset({"anthropic"})
"""The ``custom_llm_provider`` values whose first chunk, as LiteLLM logs it, carries content."""
NO_TTFT_REASON = ("LiteLLM's completionStartTime of an OpenAI-API stream is its role-only first chunk, sent before "
                  "any text, and the log holds no later chunk time")

_PAYLOAD = pa.schema([
    ("id", pa.string()), ("call_type", pa.string()), ("stream", pa.bool_()),
    ("model_parameters", pa.struct([("stream", pa.bool_())])), ("status", pa.string()),
    ("custom_llm_provider", pa.string()), ("model", pa.string()), ("prompt_tokens", pa.float64()),
    ("api_base", pa.string()), ("completion_tokens", pa.float64()), ("startTime", pa.float64()), ("endTime", pa.float64()),
    ("completionStartTime", pa.float64()), ("response_cost", pa.float64()), ("error_str", pa.string()),
    ("response", pa.struct([("choices", pa.list_(pa.struct([
        ("finish_reason", pa.string()), ("message", pa.struct([("content", pa.string())]))])))])),
    ("response_cost_failure_debug_info", pa.struct([("error_message", pa.string())])),
    ("error_information", pa.struct([("error_code", pa.string()), ("error_class", pa.string()),
                                     ("error_message", pa.string()),
                                     ("normalized_error", pa.string())])),
])
_SPEND = pa.schema([
    ("request_id", pa.string()), ("call_type", pa.string()), ("status", pa.string()),
    ("custom_llm_provider", pa.string()), ("model", pa.string()), ("prompt_tokens", pa.float64()),
    ("api_base", pa.string()), ("completion_tokens", pa.float64()), ("startTime", pa.string()), ("endTime", pa.string()),
    ("completionStartTime", pa.string()), ("spend", pa.float64()), ("metadata", pa.string()),
    ("response", pa.string()),
])


def sniff(head: bytes) -> bool:
    start = head.lstrip()[:16384]
    return start[:1] in (b"{", b"[") and b'"startTime"' in start and b'"endTime"' in start and (
        b'"call_type"' in start or b'"completionStartTime"' in start)


def batches(path: Path) -> Iterator[pa.Table]:
    start = files.head(path).lstrip()
    if start.startswith(b"["):  # the /spend/logs answer: one JSON list
        rows = load_json(path)
        if not isinstance(rows, list):
            raise BadInput(f"{path} is not a list of LiteLLM spend-log rows")
        yield _spend_records(_required(_spend_table(rows), path))
    elif b'"spend"' in start and b'"request_id"' in start:  # spend-log rows, one per line
        yield from (_spend_records(_required(table, path)) for table in _spend_lines(path))
    else:
        for raw in json_lines(path, _PAYLOAD):
            yield _payload_records(_required(raw, path))


def _required(table: pa.Table, path: Path) -> pa.Table:
    return cols.require(table, ("startTime", "endTime"), path, NAME) or table


def _spend_lines(path: Path) -> Iterator[pa.Table]:
    """Spend-log rows (as :func:`_spend_table`) from JSON lines, decoded one by one: exports keep ``metadata`` as text or as
    an object, which no single column type fits."""
    rows = []
    for number, line in text_lines(path):
        try:
            row = jsontext.loads(line)
        except ValueError as exc:
            if number == 1:
                raise BadInput(f"{path}:1: not JSON ({exc}): check --format") from None
            damaged(path, number, f"unreadable ({exc})")
            continue
        rows.append(row)
        if len(rows) == BATCH_ROWS:
            yield _spend_table(rows)
            rows = []
    if rows:
        yield _spend_table(rows)


def _spend_table(rows: list[Any]) -> pa.Table:
    """Spend-log rows as a table of :data:`_SPEND` (text fields that hold JSON kept as JSON text)."""
    text = {f.name for f in _SPEND if f.type == pa.string()}
    return pa.Table.from_pylist([{k: _text(r.get(k)) if k in text else r.get(k) for k in _SPEND.names}
                                 for r in rows if isinstance(r, dict)], schema=_SPEND)


def _payload_records(raw: pa.Table) -> pa.Table:
    start, end, first = (cols.epoch(raw[name], "s") for name in ("startTime", "endTime", "completionStartTime"))
    failed = pc.not_equal(pc.fill_null(raw["status"], "failure"), "success")
    asked = pc.coalesce(raw["stream"], cols.column(raw, "model_parameters.stream"))
    streamed = pc.coalesce(asked, _first_chunk_before_end(first, end, failed))
    index = cols.failed_rows(failed)
    errors = (_error(*info) for info in zip(
        *(cols.column(raw, f"error_information.{k}").take(index).to_pylist()
          for k in ("error_code", "error_class", "error_message", "normalized_error")),
        strict=True))
    kinds, codes = cols.scatter(raw.num_rows, index, errors)
    unpriced = pc.is_valid(raw["response_cost_failure_debug_info"])
    cost = pc.if_else(pc.or_(unpriced, pc.less_equal(raw["response_cost"], 0.0)), None, raw["response_cost"])
    choices = [(c or [None])[0] or {} for c in cols.column(raw, "response.choices").to_pylist()]
    text = pa.array([(c.get("message") or {}).get("content") for c in choices], pa.string())
    reason = pa.array([c.get("finish_reason") for c in choices], pa.string())
    return _common(raw, start, end, first, failed, streamed, kinds, codes, cost,
                   message=pc.coalesce(cols.column(raw, "error_information.error_message"), raw["error_str"]),
                   request_id=raw["id"], text=text, stop_reason=reason)


def _spend_records(raw: pa.Table) -> pa.Table:
    start, end, first = (cols.timestamps(raw[name]) for name in ("startTime", "endTime", "completionStartTime"))
    failed = pc.equal(pc.fill_null(raw["status"], "success"), "failure")
    streamed = _first_chunk_before_end(first, end, failed)  # spend logs keep no stream flag
    index = cols.failed_rows(failed)
    information = [_metadata_error(m) for m in raw["metadata"].take(index).to_pylist()]
    kinds, codes = cols.scatter(raw.num_rows, index, (_error(*info) for info in information))
    messages = [None] * raw.num_rows
    for i, info in zip(index, information, strict=True):
        messages[i] = info[2]
    cost = pc.if_else(pc.less_equal(pc.fill_null(raw["spend"], 0.0), 0.0), None, raw["spend"])
    answers = [_answer(r) for r in raw["response"].to_pylist()]
    return _common(raw, start, end, first, failed, streamed, kinds, codes, cost,
                   message=pa.array(messages, pa.string()), request_id=raw["request_id"],
                   text=pa.array([a[0] for a in answers], pa.string()),
                   stop_reason=pa.array([a[1] for a in answers], pa.string()))


def _answer(response: str | None) -> tuple[str | None, str | None]:
    """The text and finish reason of a spend-log row's stored response (``{}`` when not stored)."""
    try:
        choices = (jsontext.loads(response or "{}") or {}).get("choices") or []
        choice = choices[0] if choices else {}
        return (choice.get("message") or {}).get("content"), choice.get("finish_reason")
    except (ValueError, AttributeError, TypeError, IndexError):
        return None, None


def _first_chunk_before_end(first: pa.Array, end: pa.Array, failed: pa.Array) -> pa.Array:
    """Streamed or not, for a call that succeeded: LiteLLM logs a first chunk before the end only
    for a stream (else ``completionStartTime`` is ``endTime``); unknown for a failure."""
    return pc.if_else(failed, pa.scalar(None, pa.bool_()), pc.less(first, end))


def _common(raw: pa.Table, start: pa.Array, end: pa.Array, first: pa.Array, failed: pa.Array, streamed: pa.Array,
            kinds: pa.Array, codes: pa.Array, cost: pa.Array, *, message: pa.Array, request_id: pa.Array,
            text: pa.Array, stop_reason: pa.Array) -> pa.Table:
    content_first = pc.is_in(pc.utf8_lower(pc.fill_null(raw["custom_llm_provider"], "")),
                             pa.array(sorted(FIRST_CHUNK_IS_CONTENT)))
    held = pc.and_(pc.and_(pc.fill_null(streamed, False), pc.invert(failed)), content_first)
    ttft = pc.if_else(held, cols.ms_between(start, first), None)
    return pa.table({
        "text": pc.if_else(failed, None, text),
        "stop_reason": pc.if_else(failed, None, stop_reason),
        "provider": raw["custom_llm_provider"],
        "endpoint": pc.if_else(pc.equal(pc.fill_null(raw["api_base"], ""), ""), None, raw["api_base"]),
        "model": raw["model"],
        "kind": pc.if_else(streamed, "stream", "complete"),  # null where unknown
        "started_at": start,
        "latency_ms": cols.ms_between(start, end),
        "tpot_ms": cols.tpot(cols.ms_between(start, end), ttft, pc.if_else(failed, None, raw["completion_tokens"])),
        "status": pc.if_else(failed, "error", "ok"),
        "ttft_ms": ttft,
        "input_tokens": pc.if_else(failed, None, raw["prompt_tokens"]),
        "output_tokens": pc.if_else(failed, None, raw["completion_tokens"]),
        "cost_usd": cost,
        "error_type": kinds,
        "http_status": codes,
        "error_message": pc.if_else(failed, message, None),
        "request_id": request_id,
    })


def _error(code: str | None, name: str | None, message: str | None, normalized: str | None
           ) -> tuple[str, int | None]:
    """LiteLLM's error information: ``error_code`` (an HTTP status, or a provider's code such as
    ``server_error``), the exception class, the message, and ``normalized_error`` (``500_...``)."""
    digits = str(code) if code is not None and str(code).isdigit() else (normalized or "").partition("_")[0]
    return cols.classify(f"{name or ''} {message or ''}", int(digits) if digits.isdigit() else None, "litellm_error")


def _metadata_error(metadata: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """The error information kept in a spend-log row's metadata JSON."""
    try:
        info = (jsontext.loads(metadata or "{}") or {}).get("error_information") or {}
    except (ValueError, AttributeError):
        return None, None, None, None
    return info.get("error_code"), info.get("error_class"), info.get("error_message"), info.get("normalized_error")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)
