"""The review sample and its key, the scoring rules, and the emulator's synthetic reviewer."""

from __future__ import annotations

import ast
import json
import re
import statistics
from collections import Counter

import pytest

from lab import llm
from lab.core.paths import DATA_DIR
from lab.emulator import Emulator, LatencyProfile
from lab.emulator.content import ChatRequest
from lab.review import prompts
from lab.review.emulated import REVIEWER_PROFILES, ReviewerProfile, detect, extract_code, profile_for, reviewer
from lab.review.schema import Finding, Findings, KeyIssue
from lab.review.scoring import load_key, score

SAMPLE = (DATA_DIR / "review" / "sample_code.py").read_text(encoding="utf-8")
LINES = SAMPLE.splitlines()
KEY = load_key()
# The token each key issue's lines must contain.
TELLTALE = {
    "hardcoded-secret": 'SECRET_KEY = "',
    "bare-except": "except:",
    "md5-password-hash": "hashlib.md5(",
    "sql-injection": 'f"SELECT',
    "none-equality": "== None",
    "mutable-default": "= []",
    "type-comparison": "type(quantity) !=",
    "swallowed-exception": "except Exception:",
    "unclosed-file": "= open(",
}
CALLS = {prompts.ASSESSMENT: prompts.assessment, prompts.LINE_FEEDBACK: prompts.line_feedback,
         prompts.FINDINGS: prompts.findings}


def finding(line: int, category: str = "security", severity: str = "high") -> Finding:
    return Finding(line=line, category=category, severity=severity, description="d", recommendation="r")


def issue(id: str, first: int, last: int, category: str = "security", severity: str = "high") -> KeyIssue:
    return KeyIssue(id=id, first_line=first, last_line=last, category=category, severity=severity, title=id)


def request(task: str, model: str = "claude-sonnet-4-6", variant: int = 0, code: str = SAMPLE) -> ChatRequest:
    return ChatRequest(api="anthropic", model=model, prompt=CALLS[task](code, "sample_code.py"), max_tokens=4096,
                       stream=False, output_tokens=20, variant=variant)


# --- the sample and its key ---------------------------------------------------------------------


def test_sample_parses_and_has_a_realistic_size():
    ast.parse(SAMPLE)
    assert 80 <= len(LINES) <= 130


def test_key_has_nine_issues_three_per_category():
    assert len(KEY) == 9 and len({k.id for k in KEY}) == 9
    assert Counter(k.category for k in KEY) == {"security": 3, "error_handling": 3, "best_practice": 3}
    assert all(k.severity in ("high", "critical") for k in KEY if k.category == "security")


@pytest.mark.parametrize("key_issue", KEY, ids=lambda k: k.id)
def test_key_lines_point_at_the_issue(key_issue):
    assert 1 <= key_issue.first_line <= key_issue.last_line <= len(LINES)
    assert key_issue.last_line - key_issue.first_line <= 2
    assert TELLTALE[key_issue.id] in "\n".join(LINES[key_issue.first_line - 1 : key_issue.last_line])


def test_key_ranges_do_not_overlap():
    spans = sorted((k.first_line, k.last_line) for k in KEY)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


# --- detect() -----------------------------------------------------------------------------------


def test_detect_finds_exactly_the_nine_key_issues():
    findings = detect(SAMPLE)
    result = score(findings, KEY, tolerance=0)
    assert result.recall == 1.0 and result.unmatched == 0 and result.missed == ()
    assert result.category_agreement == 1.0 and result.severity_agreement == 1.0
    assert detect(SAMPLE) == findings  # deterministic


def test_detect_other_rules():
    code = ('from os.path import *\nimport os, pickle, subprocess\npassword = "hunter2"\n'
            "def f(list, x={}):\n    try:\n        return eval(list)\n    except ValueError:\n        return None\n"
            "def g(cmd, data):\n    subprocess.run(cmd, shell=True)\n    pickle.loads(data)\n"
            '    q = "DELETE FROM t WHERE id = %s" % cmd\n    if None != cmd:\n        open(cmd)\n')
    found = {(f.line, f.category) for f in detect(code)}
    assert found == {(1, "best_practice"), (3, "security"), (4, "best_practice"), (6, "security"),
                     (8, "error_handling"), (10, "security"), (11, "security"), (12, "security"),
                     (13, "best_practice"), (14, "error_handling")}
    assert len([f for f in detect(code) if f.line == 4]) == 2  # mutable default and shadowed builtin


def test_detect_does_not_flag_clean_code():
    code = ('import json\n\ndef load(path, default=None):\n    with open(path) as fh:\n        return json.load(fh)\n\n'
            'def find(conn, name):\n    if name is None or not isinstance(name, str):\n        raise ValueError(name)\n'
            '    return conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()\n')
    assert detect(code) == []


def test_detect_reports_unparseable_code():
    (only,) = detect("def broken(:\n    pass\n")
    assert only.line == 1 and "does not parse" in only.description


# --- score() ------------------------------------------------------------------------------------


def test_tolerance_widens_the_range():
    key = [issue("a", 10, 11)]
    assert score([finding(13)], key).found == ("a",)
    assert score([finding(13)], key, tolerance=1).found == ()
    assert score([finding(8)], key, tolerance=2).recall == 1.0
    assert score([finding(7)], key, tolerance=2).unmatched == 1
    assert score([finding(11)], key, tolerance=0).recall == 1.0
    with pytest.raises(ValueError):
        score([], key, tolerance=-1)


def test_matching_is_one_to_one():
    key = [issue("a", 10, 10), issue("b", 12, 12)]
    # Two findings on the same issue: one match, one unmatched.
    result = score([finding(10), finding(10)], key[:1])
    assert result.found == ("a",) and result.unmatched == 1 and result.recall == 1.0
    # One finding near two issues matches the closer one only.
    result = score([finding(11, severity="low")], [issue("a", 9, 9), issue("b", 12, 12)])
    assert result.found == ("b",) and result.missed == ("a",) and result.unmatched == 0
    # Closest first: 12 goes to b (distance 0), leaving 10 for a.
    result = score([finding(12), finding(10)], key)
    assert result.found == ("a", "b") and result.unmatched == 0


def test_ties_prefer_the_same_category_then_key_order():
    key = [issue("sec", 10, 10, "security"), issue("bp", 12, 12, "best_practice")]
    assert score([finding(11, "best_practice")], key).found == ("bp",)
    assert score([finding(11, "security")], key).found == ("sec",)
    same = [issue("first", 10, 10), issue("second", 12, 12)]
    assert score([finding(11)], same).found == ("first",)


def test_agreements_and_unmatched():
    key = [issue("a", 10, 10, "security", "high"), issue("b", 20, 20, "error_handling", "medium")]
    result = score([finding(10, "security", "high"), finding(20, "best_practice", "low"), finding(50)], key)
    assert result.found == ("a", "b") and result.missed == () and result.unmatched == 1
    assert result.severity_agreement == 0.5 and result.category_agreement == 0.5


def test_empty_findings():
    result = score([], KEY)
    assert result.recall == 0.0 and result.found == () and len(result.missed) == 9 and result.unmatched == 0
    assert result.severity_agreement is None and result.category_agreement is None


def test_nothing_matches():
    result = score([finding(200)], KEY)
    assert result.recall == 0.0 and result.unmatched == 1 and result.severity_agreement is None


# --- the synthetic reviewer ---------------------------------------------------------------------


def test_extract_code_strips_line_numbers():
    assert extract_code(prompts.findings(SAMPLE, "sample_code.py")) == SAMPLE.rstrip("\n")


def test_answer_shapes():
    respond = reviewer()
    assessment = respond(request(prompts.ASSESSMENT))
    assert re.fullmatch(r"Score: ([1-9]|10)/10", assessment.splitlines()[-1])
    assert len(assessment.split()) < 400
    feedback = respond(request(prompts.LINE_FEEDBACK)).splitlines()
    numbers = [int(re.match(r"Line (\d+) \[(critical|high|medium|low)\]: \S", line).group(1)) for line in feedback]
    assert numbers == sorted(numbers) and numbers
    text = respond(request(prompts.FINDINGS))
    parsed = Findings.model_validate_json(text)
    assert parsed.findings and len(text.split()) < 400


def test_same_variant_same_answer_and_variants_differ():
    respond = reviewer()
    for task in prompts.TASKS:
        assert respond(request(task, variant=42)) == respond(request(task, variant=42))
    answers = {respond(request(prompts.FINDINGS, variant=v)) for v in range(20)}
    assert len(answers) > 1


def test_other_prompts_fall_back_to_the_default_responder():
    respond = reviewer()
    plain = ChatRequest(api="anthropic", model="claude-sonnet-4-6", prompt="Why does reliability matter?",
                        max_tokens=100, stream=False, output_tokens=8)
    assert "Score:" not in respond(plain) and len(respond(plain).split()) >= 5
    structured = ChatRequest(api="openai", model="gpt-4o", prompt="Give a number.", max_tokens=100, stream=False,
                             schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    assert "n" in json.loads(respond(structured))


def test_profiles_by_model_substring():
    assert profile_for("claude-sonnet-4-6") is REVIEWER_PROFILES["claude"]
    assert profile_for("gpt-4o-mini") is REVIEWER_PROFILES["gpt"]
    assert profile_for("llama-3") is REVIEWER_PROFILES["*"]
    custom = {"llama": ReviewerProfile(detection={"security": 0.0, "error_handling": 0.0, "best_practice": 0.0},
                                       false_positive=0.0)}
    assert Findings.model_validate_json(reviewer(custom)(request(prompts.FINDINGS, model="llama-3"))).findings == []


def _stats(model: str, n: int = 200) -> tuple[float, float, Counter]:
    respond = reviewer()
    recalls, scores, missed = [], [], Counter()
    for variant in range(n):
        result = score(Findings.model_validate_json(respond(request(prompts.FINDINGS, model, variant))).findings, KEY)
        recalls.append(result.recall)
        missed.update(k.category for k in KEY if k.id in result.missed)
        last = respond(request(prompts.ASSESSMENT, model, variant)).splitlines()[-1]
        scores.append(int(re.fullmatch(r"Score: (\d+)/10", last).group(1)))
    return statistics.mean(recalls), statistics.mean(scores), missed


def test_profiles_reproduce_the_report_over_many_reviews():
    claude_recall, claude_score, _ = _stats("claude-sonnet-4-6")
    gpt_recall, gpt_score, gpt_missed = _stats("gpt-4o")
    assert claude_recall > gpt_recall and claude_score < gpt_score
    assert 8 <= 9 * claude_recall <= 9 and 2.5 <= claude_score <= 3.5
    assert 4 <= 9 * gpt_recall <= 5 and 4.5 <= gpt_score <= 5.5
    assert gpt_missed["best_practice"] > gpt_missed["error_handling"] > gpt_missed["security"]


def test_end_to_end_through_the_emulator():
    with Emulator(LatencyProfile.fixed(ttft_ms=1, itl_ms=0, output_tokens=5), responder=reviewer()) as emu:
        completion = llm.complete_json(prompts.findings(SAMPLE, "sample_code.py"), Findings, max_tokens=4096,
                                       system=prompts.SYSTEM, provider="anthropic", model="claude-sonnet-4-6",
                                       base_url=emu.url_for("anthropic"))
        assert completion.ok, completion.record.error_message
        assert isinstance(completion.data, Findings) and completion.record.synthetic
        assert score(completion.data.findings, KEY).recall >= 5 / 9
        text = llm.complete(prompts.assessment(SAMPLE, "sample_code.py"), max_tokens=4096, provider="anthropic",
                            model="claude-sonnet-4-6", base_url=emu.url_for("anthropic")).text
        assert re.search(r"Score: \d+/10$", text)
