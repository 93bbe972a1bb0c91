"""Reading source files: plain or gzip-compressed, a head for format detection, JSON documents,
and JSON lines in large blocks parsed by ``pyarrow.json`` with damaged lines reported and skipped."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.json as pa_json

from lab.core import jsontext
from lab.core.errors import BadInput
from lab.store.lines import Where, report

GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 64 * 1024
BLOCK_BYTES = 32 * 1024 * 1024
"""JSON lines are parsed this many bytes at a time (whole lines)."""


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (by content, not name)."""
    handle = open(path, "rb")
    if handle.read(2) == GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def head(path: Path, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of the (decompressed) file."""
    pieces: list[bytes] = []
    with open_binary(path) as handle:
        while sum(map(len, pieces)) < size:
            try:
                piece = handle.read(4096)
            except (OSError, EOFError, zlib.error):
                break  # damaged further on: the import reports where
            if not piece:
                break
            pieces.append(piece)
    return b"".join(pieces)[:size]


def load_json(path: Path) -> Any:
    """A whole JSON document (for the formats that write one document per run)."""
    with open_binary(path) as handle:
        try:
            return jsontext.load(handle)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":
                raise BadInput(f"{path}:{exc.lineno}: more than one JSON document (JSON lines?), where this "
                                 "format has one: check --format") from None
            raise BadInput(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                             "the file is damaged or cut short: export it again") from None
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise BadInput(f"{path}: cannot be read as JSON ({exc}); is the file damaged?") from None


def damaged(path: Path, line: int, problem: str) -> None:
    """Report one unreadable line of a source (skipped; the rest of the file is imported) as a
    :class:`lab.store.lines.DamagedLine` warning."""
    report(Where(path, line), f"{problem}; line skipped")


def json_lines(path: Path, schema: pa.Schema, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    """The file's JSON objects as tables of ``schema`` (other keys ignored), a block of whole lines
    at a time. A line that is not a JSON object of the schema's types is reported with its
    ``file:line`` as a :class:`~lab.store.DamagedLine` warning and skipped."""
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    first_line = 1
    rest = b""
    with open_binary(path) as handle:
        while True:
            data, end = _read_block(path, handle, block_bytes, first_line + rest.count(b"\n"))
            block = rest + data
            if not block:
                return
            if not end:
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    rest = block  # one line longer than a block: read on
                    continue
                block, rest = block[:cut], block[cut:]
            else:
                rest = b""
            table = _parse_block(path, block, first_line, schema, options)
            first_line += block.count(b"\n")
            if table.num_rows:
                yield table
            if end:
                return


def _read_block(path: Path, handle: IO[bytes], size: int, line: int) -> tuple[bytes, bool]:
    """Up to ``size`` bytes and whether the file ended; a compressed file damaged or cut short ends
    at the damage (what came before is kept), reported."""
    pieces, total = [], 0
    step = 1 << 16 if isinstance(handle, gzip.GzipFile) else size  # gzip: damage costs at most a step
    while total < size:
        try:
            piece = handle.read(min(step, size - total))
        except (OSError, EOFError, zlib.error) as exc:
            damaged(path, line + sum(p.count(b"\n") for p in pieces), f"the file ends in damaged data ({exc})")
            return b"".join(pieces), True
        if not piece:
            return b"".join(pieces), True
        pieces.append(piece)
        total += len(piece)
    return b"".join(pieces), False


def _parse_block(path: Path, block: bytes, first_line: int, schema: pa.Schema,
                 options: pa_json.ParseOptions) -> pa.Table:
    try:
        return _read(block, options)
    except pa.ArrowInvalid:
        pass
    good = []
    opening = first_line == 1  # an unreadable first line: not this format at all
    for number, line in enumerate(block.split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            _read(line, options)
        except pa.ArrowInvalid as exc:
            problem = str(exc).removeprefix("JSON parse error: ")
            if opening:
                raise BadInput(f"{path}:{number}: not a JSON line of this format ({problem}): check --format, "
                                 "or the file is damaged from its start") from None
            damaged(path, number, f"unreadable ({problem})")
        else:
            good.append(line)
        opening = False
    return _read(b"\n".join(good), options) if good else schema.empty_table()


def _read(data: bytes, options: pa_json.ParseOptions) -> pa.Table:
    read = pa_json.ReadOptions(block_size=max(1 << 20, min(len(data) + 1, 8 << 20)))
    return pa_json.read_json(io.BytesIO(data), read_options=read, parse_options=options)


def json_objects(path: Path, block_chars: int = 1 << 20) -> Iterator[tuple[int, Any]]:
    """(line, value) of each JSON value in a file of values written one after another, pretty-printed
    or not (not necessarily one a line). A damaged value is reported with its line and skipped: reading
    resumes at the next line that opens an object at its start (``{`` in the first column)."""
    decoder = json.JSONDecoder()
    with open_binary(path) as handle, io.TextIOWrapper(handle, encoding="utf-8", errors="replace") as text:
        buffer, line, ended = "", 1, False
        while True:
            position = len(buffer) - len(buffer.lstrip())
            line += buffer.count("\n", 0, position)
            buffer = buffer[position:]
            if not buffer and ended:
                return
            try:
                value, stop = decoder.raw_decode(buffer) if buffer else (None, 0)
            except json.JSONDecodeError as exc:
                resume = buffer.find("\n{", 1)
                if (resume < 0 or exc.pos > resume) and not ended:  # cut at the block's end: read on
                    more, ended = _more(path, text, block_chars, line + buffer.count("\n"))
                    buffer += more
                    continue
                damaged(path, line + buffer.count("\n", 0, exc.pos), f"not JSON ({exc.msg}); skipped to the next "
                        "object")
                if resume < 0:
                    return
                line += buffer.count("\n", 0, resume + 1)
                buffer = buffer[resume + 1:]
                continue
            if not buffer:
                more, ended = _more(path, text, block_chars, line)
                buffer += more
                continue
            if stop == len(buffer) and not ended:  # a number or a value that may go on
                more, ended = _more(path, text, block_chars, line + buffer.count("\n"))
                if more:
                    buffer += more
                    continue
            yield line, value
            line += buffer.count("\n", 0, stop)
            buffer = buffer[stop:]


def _more(path: Path, text: IO[str], size: int, line: int) -> tuple[str, bool]:
    """Up to ``size`` more characters, and whether the file ended (a damaged compressed end is reported)."""
    try:
        piece = text.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        damaged(path, line, f"the file ends in damaged data ({exc})")
        return "", True
    return piece, not piece


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, decompressed when gzip; a damaged compressed end
    is reported and ends the file."""
    with open_binary(path) as handle, io.TextIOWrapper(handle, encoding="utf-8", errors="replace") as text:
        number = 0
        while True:
            try:
                raw = text.readline()
            except (OSError, EOFError) as exc:
                damaged(path, number + 1, f"the file ends in damaged data ({exc})")
                return
            if not raw:
                return
            number += 1
            if raw.strip():
                yield number, raw
