"""``lab.llm`` through a run: replay what the run holds, call and record what it lacks."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from lab import llm
from lab.core import config
from lab.core.endpoints import is_local
from lab.core.records import CallRecord
from lab.core.redact import clean_url
from lab.llm import schemas
from lab.llm.completion import Completion
from lab.store import CallKey, MissingRecord, Run, now, tagged, versions

Labels = Mapping[str, Any]
"""Record fields a collection fills in beyond run, window and sample: ``target``, ``task``, and a
``window`` label when the key's window is not the one to show."""


class RecordedStream:
    """Text chunks of a streamed call, live or replayed (a replay yields the recorded text at once)."""

    def __init__(self, recorder: Recorder, key: CallKey, labels: Labels | None, record: CallRecord | None,
                 live: Any) -> None:
        self._recorder, self._key, self._labels = recorder, key, labels
        self.record, self._stream = record, live

    def __iter__(self) -> Iterator[str]:
        if self.record is not None:
            yield from [self.record.text] if self.record.text else []
            return
        yield from self._stream  # type: ignore[misc]
        self._keep()

    async def __aiter__(self) -> AsyncIterator[str]:
        if self.record is not None:
            if self.record.text:
                yield self.record.text
            return
        async for chunk in self._stream:  # type: ignore[union-attr]
            yield chunk
        self._keep()

    def _keep(self) -> None:
        assert self._stream is not None and self._stream.record is not None
        self.record = self._recorder.keep(self._key, self._stream.record, self._labels)

    @property
    def text(self) -> str:
        return self.record.text if self.record else ""


MODES = ("replay", "local", "live")


class Recorder:
    """Calls ``lab.llm`` through ``run``.

    What happens on a miss depends on ``mode``: ``replay`` never calls;
    ``local`` (the default) calls endpoints on this machine, such as the
    emulator, which cost nothing; ``live`` also calls paid providers (an
    explicit opt-in); with ``LAB_REPLAY_ONLY=1`` every mode replays. A miss that may not be called raises
    :class:`MissingRecord`, naming what is missing and ``collect_hint``, the
    command that collects it. Every method takes the ``lab.llm`` keyword
    arguments (provider, model, base_url, system, timeout, retry) plus the
    ``window`` and ``sample`` of the key and the ``labels`` of the record.
    """

    def __init__(self, run: Run, *, mode: str = "local", collect_hint: str | None = None,
                 experiment: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.run, self.mode, self.collect_hint, self.experiment = run, mode, collect_hint, experiment

    def key(self, kind: str, prompt: str, max_tokens: int, options: Mapping[str, Any], *,
            schema: schemas.Schema | None = None, window: str | None = None, sample: int | None = None) -> CallKey:
        """The store key of a call; ``options`` are the ``lab.llm`` keyword arguments."""
        settings = config.resolve(options.get("provider"), options.get("model"), options.get("base_url"),
                                  require_key=False)
        request = {"prompt": prompt, "system": options.get("system"), "max_tokens": max_tokens,
                   "schema": schemas.json_schema(schema) if schema is not None else None}
        return CallKey(settings.provider, settings.endpoint, settings.model, kind, request, window, sample)

    def _may_call(self, key: CallKey) -> None:
        replay = self.mode == "replay" or config.replay_only()
        if not replay and (self.mode == "live" or (self.mode == "local" and is_local(key.endpoint))):
            return
        hint = f"\nCollect it with: {self.collect_hint}" if self.collect_hint else ""
        why = "this is a replay" if self.mode == "replay" else (
            f"this is a replay ({config.REPLAY_ONLY}=1)") if replay else (
            f"calls to {clean_url(key.endpoint)} are paid: pass mode='live', or --live on the command line")
        raise MissingRecord(f"run {self.run.id!r} has no record of {key.describe()} and {why}.{hint}")

    def keep(self, key: CallKey, record: CallRecord, labels: Labels | None = None) -> CallRecord:
        """Tag a fresh record with its run, window, sample and labels, and append it."""
        if not self.run.exists:
            self.run.write_manifest({"run_id": self.run.id, "experiment": self.experiment, "started_at": now(),
                                     "versions": versions()})
        record = tagged(record, self.run, key)
        if labels:
            record = dataclasses.replace(record, **labels)
        self.run.append(key, record)
        return record

    def _lookup(self, kind: str, prompt: str, max_tokens: int, options: dict[str, Any],
                schema: schemas.Schema | None = None) -> tuple[CallKey, CallRecord | None]:
        window, sample = options.pop("window", None), options.pop("sample", None)
        key = self.key(kind, prompt, max_tokens, options, schema=schema, window=window, sample=sample)
        record = self.run.get(key)
        if record is None:
            self._may_call(key)
        return key, record

    def complete(self, prompt: str, *, max_tokens: int = llm.DEFAULT_MAX_TOKENS, labels: Labels | None = None,
                 **options: Any) -> Completion:
        """:func:`lab.llm.complete`, recorded."""
        key, record = self._lookup("complete", prompt, max_tokens, options)
        if record is None:
            record = self.keep(key, llm.complete(prompt, max_tokens=max_tokens, **options).record, labels)
        return Completion.of(record)

    async def acomplete(self, prompt: str, *, max_tokens: int = llm.DEFAULT_MAX_TOKENS,
                        labels: Labels | None = None, **options: Any) -> Completion:
        """:func:`lab.llm.acomplete`, recorded."""
        key, record = self._lookup("complete", prompt, max_tokens, options)
        if record is None:
            record = self.keep(key, (await llm.acomplete(prompt, max_tokens=max_tokens, **options)).record, labels)
        return Completion.of(record)

    def complete_json(self, prompt: str, schema: schemas.Schema, *, max_tokens: int = llm.DEFAULT_MAX_TOKENS,
                      labels: Labels | None = None, **options: Any) -> Completion:
        """:func:`lab.llm.complete_json`, recorded; a replay validates the recorded answer again."""
        key, record = self._lookup("json", prompt, max_tokens, options, schema)
        if record is None:
            record = self.keep(key, llm.complete_json(prompt, schema, max_tokens=max_tokens, **options).record,
                               labels)
        data = schemas.parse(record.text, schema) if record.ok else None
        return Completion.of(record, data)

    def stream(self, prompt: str, *, max_tokens: int = llm.DEFAULT_MAX_TOKENS, labels: Labels | None = None,
               **options: Any) -> RecordedStream:
        """:func:`lab.llm.stream`, recorded: iterate for chunks, then read ``.record``."""
        key, record = self._lookup("stream", prompt, max_tokens, options)
        live = None if record is not None else llm.stream(prompt, max_tokens=max_tokens, **options)
        return RecordedStream(self, key, labels, record, live)

    def astream(self, prompt: str, *, max_tokens: int = llm.DEFAULT_MAX_TOKENS, labels: Labels | None = None,
                **options: Any) -> RecordedStream:
        """:func:`lab.llm.astream`, recorded: ``async for`` the chunks, then read ``.record``."""
        key, record = self._lookup("stream", prompt, max_tokens, options)
        live = None if record is not None else llm.astream(prompt, max_tokens=max_tokens, **options)
        return RecordedStream(self, key, labels, record, live)


class Tagged:
    """A recorder with the window and sample fixed: the same methods as ``lab.llm``, recorded."""

    def __init__(self, recorder: Recorder, *, window: str | None = None, sample: int | None = None) -> None:
        self._recorder, self._tags = recorder, {"window": window, "sample": sample}

    def complete(self, prompt: str, **options: Any) -> Completion:
        return self._recorder.complete(prompt, **self._tags, **options)

    def stream(self, prompt: str, **options: Any) -> RecordedStream:
        return self._recorder.stream(prompt, **self._tags, **options)

    def complete_json(self, prompt: str, schema: schemas.Schema, **options: Any) -> Completion:
        return self._recorder.complete_json(prompt, schema, **self._tags, **options)


__all__ = ["MissingRecord", "RecordedStream", "Recorder", "Tagged"]
