"""``lab.llm`` through a run: replay what the run holds, call and record what it lacks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lab import config, llm
from lab.llm import schemas
from lab.records import CallRecord
from lab.store import CallKey, MissingRecord, Run, is_local, now, tagged, versions


class RecordedStream:
    """Text chunks of a streamed call, live or replayed (a replay yields the recorded text at once)."""

    def __init__(self, recorder: Recorder, key: CallKey, live: llm.TextStream | None) -> None:
        self._recorder, self._key, self._live = recorder, key, live
        self.record: CallRecord | None = recorder.run.get(key)

    def __iter__(self) -> Iterator[str]:
        if self.record is not None:
            if self.record.text:
                yield self.record.text
            return
        assert self._live is not None
        yield from self._live
        assert self._live.record is not None
        self.record = self._recorder.keep(self._key, self._live.record)

    @property
    def text(self) -> str:
        return self.record.text if self.record else ""


class Recorder:
    """Calls ``lab.llm`` through ``run``.

    On a miss the call is made and recorded when its endpoint is on this
    machine (the emulator costs nothing) or ``live`` is true (an explicit
    opt-in for paid providers); otherwise :class:`MissingRecord` says what is
    missing and ``collect_hint``, the command that collects it.
    """

    def __init__(self, run: Run, *, live: bool = False, collect_hint: str | None = None,
                 experiment: str | None = None) -> None:
        self.run, self.live, self.collect_hint, self.experiment = run, live, collect_hint, experiment

    def key(self, kind: str, prompt: str, max_tokens: int, options: dict[str, Any], *,
            schema: schemas.Schema | None = None, window: str | None = None, sample: int | None = None) -> CallKey:
        """The store key of a call; ``options`` are the ``lab.llm`` keyword arguments."""
        settings = config.resolve(options.get("provider"), options.get("model"), options.get("base_url"),
                                  require_key=False)
        request = {"prompt": prompt, "system": options.get("system"), "max_tokens": max_tokens,
                   "schema": schemas.json_schema(schema) if schema is not None else None}
        return CallKey(settings.provider, settings.endpoint, settings.model, kind, request, window, sample)

    def _may_call(self, key: CallKey) -> None:
        if self.live or is_local(key.endpoint):
            return
        hint = f"\nCollect it with: {self.collect_hint}" if self.collect_hint else ""
        raise MissingRecord(
            f"run {self.run.id!r} has no record of {key.describe()} and live calls to {key.endpoint} "
            f"are not allowed (pass live=True, or --live on the command line, to pay for them).{hint}"
        )

    def keep(self, key: CallKey, record: CallRecord) -> CallRecord:
        """Tag a fresh record with its run, window and sample, and append it."""
        if not self.run.exists:
            self.run.write_manifest({"run_id": self.run.id, "experiment": self.experiment, "started_at": now(),
                                     "versions": versions()})
        record = tagged(record, self.run, key)
        self.run.append(key, record)
        return record

    def complete(self, prompt: str, *, sample: int | None = None, window: str | None = None,
                 max_tokens: int = llm.api.DEFAULT_MAX_TOKENS, **options: Any) -> llm.Completion:
        """:func:`lab.llm.complete`, recorded; ``options`` as there (provider, model, base_url, ...)."""
        key = self.key("complete", prompt, max_tokens, options, window=window, sample=sample)
        record = self.run.get(key)
        if record is None:
            self._may_call(key)
            record = self.keep(key, llm.complete(prompt, max_tokens=max_tokens, **options).record)
        return llm.Completion(record.text if record.ok else "", record)

    async def acomplete(self, prompt: str, *, sample: int | None = None, window: str | None = None,
                        max_tokens: int = llm.api.DEFAULT_MAX_TOKENS, **options: Any) -> llm.Completion:
        """:func:`lab.llm.acomplete`, recorded."""
        key = self.key("complete", prompt, max_tokens, options, window=window, sample=sample)
        record = self.run.get(key)
        if record is None:
            self._may_call(key)
            record = self.keep(key, (await llm.acomplete(prompt, max_tokens=max_tokens, **options)).record)
        return llm.Completion(record.text if record.ok else "", record)

    def complete_json(self, prompt: str, schema: schemas.Schema, *, sample: int | None = None,
                      window: str | None = None, max_tokens: int = llm.api.DEFAULT_MAX_TOKENS,
                      **options: Any) -> llm.Completion:
        """:func:`lab.llm.complete_json`, recorded; a replay validates the recorded answer again."""
        key = self.key("json", prompt, max_tokens, options, schema=schema, window=window, sample=sample)
        record = self.run.get(key)
        if record is None:
            self._may_call(key)
            record = self.keep(key, llm.complete_json(prompt, schema, max_tokens=max_tokens, **options).record)
        data = schemas.parse(record.text, schema) if record.ok else None
        return llm.Completion(record.text if record.ok else "", record, data)

    def stream(self, prompt: str, *, sample: int | None = None, window: str | None = None,
               max_tokens: int = llm.api.DEFAULT_MAX_TOKENS, **options: Any) -> RecordedStream:
        """:func:`lab.llm.stream`, recorded: iterate for chunks, then read ``.record``."""
        key = self.key("stream", prompt, max_tokens, options, window=window, sample=sample)
        live = None
        if self.run.get(key) is None:
            self._may_call(key)
            live = llm.stream(prompt, max_tokens=max_tokens, **options)
        return RecordedStream(self, key, live)


__all__ = ["MissingRecord", "RecordedStream", "Recorder"]
