"""The field report's migration table, computed from source files instead of remembered.

:func:`diff_stats` measures a migration as a line diff of two versions of a module;
:func:`call_sites` finds, with :mod:`ast`, the places that tie a module to one provider's SDK;
:func:`migration_table` puts both side by side for the direct and the abstracted assistant.
Pure analysis: files are parsed, never imported, so no SDK is loaded here.

Call-site kinds: ``client`` (an SDK client is built, ``anthropic.Anthropic(...)``), ``call`` (a
request through a client, ``client.messages.create(...)``), ``stream`` (streaming mechanics:
``client.messages.stream(...)``, ``create(..., stream=True)``, ``stream.text_stream``,
``chunk.choices[0].delta.content``) and ``response_shape`` (reading a response,
``response.content[0].text``, ``response.choices[0].message.content``).
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

SDK_MODULES: frozenset[str] = frozenset({"anthropic", "openai"})
Kind = Literal["client", "call", "response_shape", "stream"]
KINDS: tuple[str, ...] = ("client", "call", "response_shape", "stream")

# What the field report states for its own migration, for comparison with the measured rows.
REPORTED: dict[str, dict[str, int]] = {
    "direct": {"files changed": 1, "lines changed": 8},
    "abstracted": {"files changed": 0, "lines changed": 0},
}


@dataclass(frozen=True)
class DiffStats:
    """A line diff of two versions of a file. ``lines_changed`` counts an inserted or deleted line
    once and a replaced block as ``max(len_before, len_after)``; added/removed count as git does."""

    files_changed: int
    lines_added: int
    lines_removed: int
    lines_changed: int


@dataclass(frozen=True)
class CallSite:
    """One provider-specific place in a module: its 1-based line, kind and source text."""

    line: int
    kind: Kind
    text: str


def diff_stats(before: Path, after: Path) -> DiffStats:
    """Diff two versions of a module line by line (``difflib.SequenceMatcher`` opcodes)."""
    a = Path(before).read_text().splitlines()
    b = Path(after).read_text().splitlines()
    added = removed = changed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        added += j2 - j1
        removed += i2 - i1
        changed += max(i2 - i1, j2 - j1)
    return DiffStats(int(changed > 0), added, removed, changed)


def _root(node: ast.expr) -> tuple[str | None, bool]:
    """The name an attribute/subscript/call chain starts from, and whether the chain passes a call."""
    through_call = False
    while True:
        if isinstance(node, ast.Call):
            node, through_call = node.func, True
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id, through_call
        else:
            return None, through_call


class _Bindings:
    """Names bound to SDK modules, SDK clients and SDK results (responses, streams, chunks).

    Scopes are ignored (one namespace per module), which suits small scripts like the examples."""

    def __init__(self, tree: ast.Module) -> None:
        self.modules: set[str] = set()
        self.clients: set[str] = set()
        self.streams: set[str] = set()
        self.results: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                self.modules |= {a.asname or a.name for a in node.names if a.name.split(".")[0] in SDK_MODULES}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in SDK_MODULES:
                self.modules |= {a.asname or a.name for a in node.names}
        while self._grow(tree):
            pass

    def is_stream_call(self, call: ast.Call) -> bool:
        streaming = any(k.arg == "stream" and isinstance(k.value, ast.Constant) and k.value.value is True
                        for k in call.keywords)
        return streaming or (isinstance(call.func, ast.Attribute) and call.func.attr == "stream")

    def _grow(self, tree: ast.Module) -> bool:
        """One pass of binding propagation; True if any name was added."""
        size = len(self.clients) + len(self.streams) + len(self.results)
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and node.annotation is not None:
                if _root(node.annotation)[0] in self.modules:
                    self.clients.add(node.arg)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.withitem)):
                value = node.context_expr if isinstance(node, ast.withitem) else node.value
                targets = [node.optional_vars] if isinstance(node, ast.withitem) else \
                    node.targets if isinstance(node, ast.Assign) else [node.target]
                self._bind([t for t in targets if isinstance(t, ast.Name)], value)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                source = node.iter
                if isinstance(node.target, ast.Name) and isinstance(source, ast.Name) and source.id in self.streams:
                    self.streams.add(node.target.id)  # chunks of a stream are stream-specific too
        return len(self.clients) + len(self.streams) + len(self.results) > size

    def _bind(self, names: list[ast.Name], value: ast.expr | None) -> None:
        if not isinstance(value, ast.Call) or not names:
            return
        root, through_call = _root(value.func)
        ids = {n.id for n in names}
        if root in self.modules and not through_call:
            self.clients |= ids
        elif root in self.clients:
            (self.streams if self.is_stream_call(value) else self.results).update(ids)


def call_sites(path: Path) -> list[CallSite]:
    """Every provider-specific call and response access in a module, in source order."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    names = _Bindings(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    sites: list[CallSite] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            root, through_call = _root(node.func)
            text = ast.unparse(node.func)
            if root in names.modules:
                sites.append(CallSite(node.lineno, "call" if through_call else "client", text))
            elif root in names.clients:
                stream = names.is_stream_call(node)
                if stream and any(k.arg == "stream" for k in node.keywords):
                    text += "(stream=True)"
                sites.append(CallSite(node.lineno, "stream" if stream else "call", text))
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            parent = parents.get(node)
            if isinstance(parent, (ast.Attribute, ast.Subscript)) and parent.value is node:
                continue  # only the longest chain counts
            root, _ = _root(node)
            if root in names.streams or root in names.results:
                text = ast.unparse(node)
                stream = root in names.streams or ".delta" in text
                sites.append(CallSite(node.lineno, "stream" if stream else "response_shape", text))
    return sorted(sites, key=lambda site: (site.line, site.text))


def migration_table(direct_before: Path, direct_after: Path, abstracted: Path) -> pd.DataFrame:
    """The computable rows of the field report's table, direct vs abstracted.

    Migrating the abstracted assistant is setting ``LLM_PROVIDER``: its "after" is the same file."""
    direct, same = diff_stats(direct_before, direct_after), diff_stats(abstracted, abstracted)
    rows = {
        "files changed": (direct.files_changed, same.files_changed),
        "lines changed": (direct.lines_changed, same.lines_changed),
        "provider-specific call sites (before)": (len(call_sites(direct_before)), len(call_sites(abstracted))),
        "provider-specific call sites (after)": (len(call_sites(direct_after)), len(call_sites(abstracted))),
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["direct", "abstracted"])
    table.index.name = "metric"
    return table
