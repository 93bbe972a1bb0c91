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


MODES = ("replay", "local", "live")


class Recorder:
    """Calls ``lab.llm`` through ``run``.

    What happens on a miss depends on ``mode``: ``replay`` never calls;
    ``local`` (the default) calls endpoints on this machine, such as the
    emulator, which cost nothing; ``live`` also calls paid providers (an
    explicit opt-in). A miss that may not be called raises
    :class:`MissingRecord`, naming what is missing and ``collect_hint``, the
    command that collects it.
    """

    def __init__(self, run: Run, *, mode: str = "local", collect_hint: str | None = None,
                 experiment: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.run, self.mode, self.collect_hint, self.experiment = run, mode, collect_hint, experiment

    def key(self, kind: str, prompt: str, max_tokens: int, options: dict[str, Any], *,
            schema: schemas.Schema | None = None, window: str | None = None, sample: int | None = None) -> CallKey:
        """The store key of a call; ``options`` are the ``lab.llm`` keyword arguments."""
        settings = config.resolve(options.get("provider"), options.get("model"), options.get("base_url"),
                                  require_key=False)
        request = {"prompt": prompt, "system": options.get("system"), "max_tokens": max_tokens,
                   "schema": schemas.json_schema(schema) if schema is not None else None}
        return CallKey(settings.provider, settings.endpoint, settings.model, kind, request, window, sample)

    def _may_call(self, key: CallKey) -> None:
        if self.mode == "live" or (self.mode == "local" and is_local(key.endpoint)):
            return
        hint = f"\nCollect it with: {self.collect_hint}" if self.collect_hint else ""
        why = "this is a replay" if self.mode == "replay" else (
            f"calls to {key.endpoint} are paid: pass mode='live', or --live on the command line")
        raise MissingRecord(f"run {self.run.id!r} has no record of {key.describe()} and {why}.{hint}")

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




class Tagged:
    """A recorder with the window and sample fixed: the same methods as ``lab.llm``, recorded."""

    def __init__(self, recorder: Recorder, *, window: str | None = None, sample: int | None = None) -> None:
        self._recorder, self._tags = recorder, {"window": window, "sample": sample}

    def complete(self, prompt: str, **options: Any) -> llm.Completion:
        return self._recorder.complete(prompt, **self._tags, **options)

    def stream(self, prompt: str, **options: Any) -> RecordedStream:
        return self._recorder.stream(prompt, **self._tags, **options)

    def complete_json(self, prompt: str, schema: schemas.Schema, **options: Any) -> llm.Completion:
        return self._recorder.complete_json(prompt, schema, **self._tags, **options)


__all__ = ["MissingRecord", "RecordedStream", "Recorder", "Tagged"]
