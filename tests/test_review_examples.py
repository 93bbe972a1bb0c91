"""The review assistant three ways (direct Anthropic, direct OpenAI, abstracted), run for real over
HTTP against the emulator, and the migration table computed from their source."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lab.emulator import Emulator, LatencyProfile
from lab.emulator.content import ChatRequest, default_responder
from lab.review import migration, prompts
from lab.review.schema import Findings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BEFORE, AFTER, ABSTRACTED = (EXAMPLES / f"{name}.py" for name in
                             ("review_direct_anthropic", "review_direct_openai", "review_abstracted"))
SAMPLE = '''import os\n\n\ndef run(cmd):\n    os.system("sh -c " + cmd)\n'''
LINES_CHANGED = 22  # what the two direct files measure; update together with them


def reviewer(request: ChatRequest) -> str:
    """Default answers, except that an assessment ends with a score."""
    if request.schema is None and prompts.ASSESSMENT in request.prompt:
        return "Short and readable, but it passes user input to a shell.\nScore: 4/10"
    return default_responder(request)


def load(path: Path) -> ModuleType:
    name = f"_review_example_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def emulator():
    with Emulator(LatencyProfile.fixed(ttft_ms=1, itl_ms=0, output_tokens=30), responder=reviewer) as emu:
        yield emu


@pytest.fixture
def env(emulator, monkeypatch, tmp_path):
    """SDKs and ``lab.llm`` pointed at the emulator with fake keys; returns the file to review."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.url_for("anthropic"))
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.url_for("openai"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    for name in ("LLM_PROVIDER", "LLM_MODEL", "ANTHROPIC_MODEL", "OPENAI_MODEL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    emulator.reset_log()
    sample = tmp_path / "runner.py"
    sample.write_text(SAMPLE)
    return sample


def check(result, emulator: Emulator, api: str, model: str | None, out: str) -> None:
    assert result.score == 4
    assert result.feedback and result.feedback in out  # printed as it streamed
    assert isinstance(result.findings, Findings) and result.findings.findings
    assert all(f.category in ("security", "error_handling", "best_practice") for f in result.findings.findings)
    log = emulator.wait_for_requests(3)
    assert [(e.api, e.stream, e.outcome, e.auth_present) for e in log] == [
        (api, False, "ok", True), (api, True, "ok", True), (api, False, "ok", True)
    ]
    if model is not None:
        assert {e.model for e in log} == {model}


@pytest.mark.parametrize(("path", "api", "model"), [(BEFORE, "anthropic", "claude-sonnet-4-6"),
                                                    (AFTER, "openai", "gpt-5-mini")])
def test_direct_examples(env, emulator, capsys, path, api, model):
    result = load(path).main(str(env))
    check(result, emulator, api, model, capsys.readouterr().out)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_abstracted_example(env, emulator, capsys, monkeypatch, provider):
    monkeypatch.setenv("LLM_PROVIDER", provider)
    result = load(ABSTRACTED).main(str(env))
    check(result, emulator, provider, None, capsys.readouterr().out)


def test_score_absent_is_none(env, emulator):
    """With the default responder's prose there is no 'Score: N/10' line."""
    with Emulator(LatencyProfile.fixed(ttft_ms=1, itl_ms=0, output_tokens=30)) as plain:
        module = load(BEFORE)
        with module.anthropic.Anthropic(base_url=plain.url_for("anthropic"), max_retries=0) as client:
            assert module.assess(client, prompts.assessment(SAMPLE, "runner.py")) is None


def test_diff_stats():
    direct = migration.diff_stats(BEFORE, AFTER)
    assert direct.files_changed == 1
    assert direct.lines_changed == LINES_CHANGED and 5 <= direct.lines_changed <= 25
    assert direct.lines_added >= 1 and direct.lines_removed >= 1
    assert max(direct.lines_added, direct.lines_removed) <= direct.lines_changed
    assert migration.diff_stats(ABSTRACTED, ABSTRACTED) == migration.DiffStats(0, 0, 0, 0)


def test_diff_stats_counts_replaced_blocks_as_their_longer_side(tmp_path):
    before, after = tmp_path / "a.py", tmp_path / "b.py"
    before.write_text("a\nb\nc\nd\n")
    after.write_text("a\nB\nB2\nB3\nd\ne\n")  # b,c -> B,B2,B3 (3 changed) and e inserted (1)
    assert migration.diff_stats(before, after) == migration.DiffStats(1, 4, 2, 4)


def kinds(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for site in migration.call_sites(path):
        found.setdefault(site.kind, []).append(site.text)
    return found


def test_call_sites():
    assert kinds(BEFORE) == {
        "call": ["client.messages.create", "client.messages.create"],
        "response_shape": ["response.content[0].text", "response.content[0].text"],
        "stream": ["client.messages.stream", "stream.text_stream"],
        "client": ["anthropic.Anthropic"],
    }
    assert kinds(AFTER) == {
        "call": ["client.chat.completions.create", "client.chat.completions.create"],
        "response_shape": ["response.choices[0].message.content", "response.choices[0].message.content"],
        "stream": ["client.chat.completions.create(stream=True)", "chunk.choices[0].delta.content"],
        "client": ["openai.OpenAI"],
    }
    assert migration.call_sites(ABSTRACTED) == []
    lines = [site.line for site in migration.call_sites(BEFORE)]
    assert lines == sorted(lines) and all(lines)


def test_call_sites_follow_aliases(tmp_path):
    source = tmp_path / "aliased.py"
    source.write_text(
        "from anthropic import Anthropic as A\n"
        "llm = A()\n"
        "reply = llm.messages.create(model='m', max_tokens=1, messages=[])\n"
        "print(reply.content[0].text, reply.usage.output_tokens)\n"
    )
    assert [(s.line, s.kind, s.text) for s in migration.call_sites(source)] == [
        (2, "client", "A"),
        (3, "call", "llm.messages.create"),
        (4, "response_shape", "reply.content[0].text"),
        (4, "response_shape", "reply.usage.output_tokens"),
    ]


def test_migration_table():
    table = migration.migration_table(BEFORE, AFTER, ABSTRACTED)
    assert table.shape == (4, 2) and list(table.columns) == ["direct", "abstracted"]
    assert table.loc["files changed"].tolist() == [1, 0]
    assert table.loc["lines changed"].tolist() == [LINES_CHANGED, 0]
    assert table.loc["provider-specific call sites (before)"].tolist() == [7, 0]
    assert table.loc["provider-specific call sites (after)"].tolist() == [7, 0]


def test_migration_module_imports_no_sdk():
    tree = ast.parse(Path(migration.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"anthropic", "openai", "httpx", "httpx2", "lab"}
