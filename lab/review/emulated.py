"""SYNTHETIC reviewer for the emulator: answers review prompts like a code reviewer would.

Nothing here is a model. :func:`detect` runs fixed rules (``ast`` checks) over the code in the
prompt; :func:`reviewer` builds an emulator :data:`~lab.emulator.content.Responder` that reports a
random subset of those findings per request, shaped by a per-model :class:`ReviewerProfile`
(detection rate per category, severity habit, score tendency, false positives). All randomness
comes from ``random.Random(request.variant)``, so a run is reproducible from the emulator seed.
The three call sites are separate requests, so the three answers of one review need not agree.
The defaults mimic the field report (claude: ~8-9 of 9 issues, ~3/10; gpt: ~4-5, ~5/10).
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from lab.emulator.content import ChatRequest, Responder, default_responder
from lab.review import prompts
from lab.review.schema import SEVERITIES, Finding, Findings

# rule -> (category, severity, description template, recommendation); ``{0}`` is the rule's detail.
_RULES: dict[str, tuple[str, str, str, str]] = {
    "sql_injection": ("security", "critical", "SQL query built by string formatting from variables: SQL injection.",
                      "Use placeholders and pass the values as query parameters."),
    "hardcoded_secret": ("security", "high", "Hard-coded secret in `{0}`: anyone with the source has it.",
                         "Load it from the environment or a secrets manager."),
    "weak_hash": ("security", "high", "`{0}` is a fast, broken hash, unfit for passwords or signatures.",
                  "Use a salted slow hash (hashlib.scrypt, bcrypt or argon2)."),
    "eval": ("security", "critical", "`{0}()` runs arbitrary code from its input.",
             "Parse the input instead (ast.literal_eval, json)."),
    "unsafe_deserialization": ("security", "high", "`{0}` on untrusted data can execute code.",
                               "Use a data-only format such as JSON."),
    "shell": ("security", "high", "Command run through the shell (`{0}`): command injection.",
              "Pass an argument list with shell=False."),
    "bare_except": ("error_handling", "medium", "Bare `except:` catches everything, even KeyboardInterrupt, "
                    "and hides the cause.", "Catch the specific exceptions and log or re-raise the rest."),
    "swallowed_exception": ("error_handling", "high", "`except {0}: pass` silently swallows failures.",
                            "Handle the error, log it, or let it propagate."),
    "silent_none": ("error_handling", "medium", "Returns None on failure, so callers cannot tell why it failed.",
                    "Raise a meaningful exception instead."),
    "unclosed_file": ("error_handling", "medium", "File opened without `with` and never closed: the handle "
                      "leaks and buffered data may be lost.", "Use `with open(...) as f:`."),
    "mutable_default": ("best_practice", "medium", "Mutable default argument `{0}` is shared between calls.",
                        "Default to None and create a new object inside the function."),
    "none_comparison": ("best_practice", "low", "Comparison to None with `{0}`.", "Use `is None` / `is not None`."),
    "type_comparison": ("best_practice", "low", "Type check with `type(...) {0}` ignores subclasses.",
                        "Use isinstance()."),
    "wildcard_import": ("best_practice", "low", "Wildcard import from `{0}` pollutes the namespace.",
                        "Import the names you use explicitly."),
    "shadowed_builtin": ("best_practice", "low", "Name `{0}` shadows a builtin.", "Rename it."),
}
_SPURIOUS: tuple[tuple[str, str, str, str], ...] = (
    ("best_practice", "low", "Magic value; consider a named constant.", "Move it to a module-level constant."),
    ("error_handling", "medium", "Inputs are used without validation.", "Validate arguments and raise ValueError."),
    ("best_practice", "low", "This line is hard to read.", "Split it or extract a helper function."),
    ("security", "medium", "Possible information leak through returned or logged data.",
     "Avoid exposing internal details."),
)
_SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT\s+INTO|UPDATE\b.*\bSET|DELETE\s+FROM)\b", re.I | re.S)
_SECRET_NAME = re.compile(r"pass(word|wd)?$|pwd$|secret|token$|api_?key|private_?key|credential", re.I)
_BUILTINS = frozenset({"list", "dict", "set", "str", "int", "float", "id", "type", "input", "max", "min", "sum",
                       "len", "filter", "map", "object", "format", "hash", "all", "any", "open", "tuple", "bytes",
                       "iter", "next", "file", "range", "vars", "dir", "compile", "zip"})
_EQ = (ast.Eq, ast.NotEq)
_CODE_BLOCK = re.compile(r"```python\n(.*?)\n```", re.S)
_NUMBER_PREFIX = re.compile(r"^\s*\d+ \| ?")


def _text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) for v in node.values)
    return ""


def _formatted_sql(node: ast.AST) -> bool:
    """A string built from variables whose literal text looks like SQL."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return bool(_SQL.search(_text(node)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return bool(_SQL.search(_text(node.left) + _text(node.right)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return bool(_SQL.search(_text(node.func.value)))
    return False


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _names(target: ast.expr) -> Iterator[ast.expr]:
    if isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _names(element)
    elif isinstance(target, (ast.Name, ast.Attribute)):
        yield target


def _hits(tree: ast.AST) -> Iterator[tuple[str, int, str]]:
    """(rule, line, detail) for every rule violation in ``tree``."""
    with_items = {id(item.context_expr) for node in ast.walk(tree) if isinstance(node, (ast.With, ast.AsyncWith))
                  for item in node.items}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if _formatted_sql(node):
            yield "sql_injection", line, ""
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str) and node.value.value:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for name in (_dotted(t) for target in targets for t in _names(target)):
                if _SECRET_NAME.search(name.rsplit(".", 1)[-1]):
                    yield "hardcoded_secret", line, name
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            first_arg = _text(node.args[0]).lower() if node.args else ""
            if last in ("md5", "sha1") or (name == "hashlib.new" and first_arg in ("md5", "sha1")):
                yield "weak_hash", line, name if last != "new" else f"hashlib.new({first_arg!r})"
            if name in ("eval", "exec"):
                yield "eval", line, name
            if name in ("pickle.loads", "pickle.load", "marshal.loads", "dill.loads") or (
                    name == "yaml.load" and not any(k.arg == "Loader" for k in node.keywords)):
                yield "unsafe_deserialization", line, name
            if name in ("os.system", "os.popen") or any(
                    k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords):
                yield "shell", line, f"{name}(...)" if name.startswith("os.") else "shell=True"
            if name in ("open", "io.open", "codecs.open") and id(node) not in with_items:
                yield "unclosed_file", line, ""
        if isinstance(node, ast.ExceptHandler):
            body_is_pass = all(isinstance(s, (ast.Pass, ast.Continue)) or (
                isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and s.value.value is Ellipsis)
                for s in node.body)
            if node.type is None:
                yield "bare_except", line, ""
            elif body_is_pass and _dotted(node.type) in ("Exception", "BaseException"):
                yield "swallowed_exception", line, _dotted(node.type)
            elif len(node.body) == 1 and isinstance(node.body[0], ast.Return) and (
                    node.body[0].value is None or (isinstance(node.body[0].value, ast.Constant)
                                                   and node.body[0].value.value is None)):
                yield "silent_none", node.body[0].lineno, ""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            positional = node.args.posonlyargs + node.args.args
            pairs = [*zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults),
                     *zip(node.args.kwonlyargs, node.args.kw_defaults)]
            for arg, default in pairs:
                if isinstance(default, (ast.List, ast.Dict, ast.Set)) or (
                        isinstance(default, ast.Call) and _dotted(default.func) in ("list", "dict", "set")):
                    yield "mutable_default", default.lineno, f"{arg.arg}={ast.unparse(default)}"
            every_arg = [*positional, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]
            for arg in filter(None, every_arg):
                if arg.arg in _BUILTINS:
                    yield "shadowed_builtin", arg.lineno, arg.arg
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in _BUILTINS:
            yield "shadowed_builtin", line, node.name
        if isinstance(node, (ast.Assign, ast.For)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for t in _names(target):
                    if isinstance(t, ast.Name) and t.id in _BUILTINS:
                        yield "shadowed_builtin", line, t.id
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:]):
                if not isinstance(op, _EQ):
                    continue
                symbol = "==" if isinstance(op, ast.Eq) else "!="
                if any(isinstance(x, ast.Constant) and x.value is None for x in (left, right)):
                    yield "none_comparison", line, f"{symbol} None"
                if any(isinstance(x, ast.Call) and _dotted(x.func) == "type" for x in (left, right)):
                    yield "type_comparison", line, symbol
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            yield "wildcard_import", line, node.module or "."


def detect(code: str) -> list[Finding]:
    """Every rule violation in ``code`` (deterministic, no randomness), sorted by line.
    Code that does not parse gives one finding saying so."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [Finding(line=exc.lineno or 1, category="best_practice", severity="high",
                        description=f"The file does not parse: {exc.msg}.", recommendation="Fix the syntax error.")]
    findings = []
    for rule, line, detail in sorted(set(_hits(tree)), key=lambda hit: (hit[1], hit[0], hit[2])):
        category, severity, description, recommendation = _RULES[rule]
        findings.append(Finding(line=line, category=category, severity=severity,  # type: ignore[arg-type]
                                description=description.format(detail), recommendation=recommendation))
    return findings


@dataclass(frozen=True)
class ReviewerProfile:
    """How one (emulated) model reviews. ``detection``: probability of reporting an issue, per
    category. ``milder``/``harsher``: probability of rating a reported issue one severity level
    lower/higher than the rules do. Score: ``round(base_score - per_issue * n_reported +
    gauss(0, score_sd))`` clipped to 1..10. ``false_positive``: probability of one extra finding
    on a line at least 3 lines from every detected issue."""

    detection: Mapping[str, float] = field(default_factory=lambda: {
        "security": 0.9, "error_handling": 0.75, "best_practice": 0.5})
    milder: float = 0.1
    harsher: float = 0.05
    base_score: float = 7.3
    per_issue: float = 0.5
    score_sd: float = 0.6
    false_positive: float = 0.1


REVIEWER_PROFILES: dict[str, ReviewerProfile] = {
    # Anthropic-like: reports nearly everything, severities as the rules have them: ~8.4 of 9, ~3/10.
    "claude": ReviewerProfile(detection={"security": 0.97, "error_handling": 0.93, "best_practice": 0.85},
                              milder=0.05, harsher=0.1, false_positive=0.15),
    # OpenAI-like: security mostly, error handling half the time, best practice rarely; rates one
    # level lower half the time: ~4.6 of 9, ~5/10.
    "gpt": ReviewerProfile(detection={"security": 0.9, "error_handling": 0.5, "best_practice": 0.12},
                           milder=0.5, harsher=0.0, false_positive=0.05),
    "*": ReviewerProfile(),
}


def profile_for(model: str, profiles: Mapping[str, ReviewerProfile] = REVIEWER_PROFILES) -> ReviewerProfile:
    """The first profile whose key is a substring of ``model`` (case-insensitive), else ``"*"``."""
    for key, profile in profiles.items():
        if key != "*" and key.lower() in model.lower():
            return profile
    return profiles.get("*", REVIEWER_PROFILES["*"])


def _shift(severity: str, levels: int) -> str:
    index = min(max(SEVERITIES.index(severity) + levels, 0), len(SEVERITIES) - 1)
    return SEVERITIES[index]


def review(code: str, profile: ReviewerProfile, rng: random.Random) -> tuple[list[Finding], int]:
    """One emulated review of ``code``: the reported findings (sorted by line) and the score out of 10.
    Always draws the same number of random values for the same code, whatever gets reported."""
    detected = detect(code)
    reported = []
    for finding in detected:
        seen, u = rng.random() < profile.detection.get(finding.category, 0.0), rng.random()
        levels = 1 if u < profile.milder else -1 if u > 1 - profile.harsher else 0
        if seen:
            reported.append(finding.model_copy(update={"severity": _shift(finding.severity, levels)}))
    spurious, pick, template = rng.random() < profile.false_positive, rng.random(), rng.choice(_SPURIOUS)
    issue_lines = {f.line for f in detected}
    lines = code.splitlines()
    quiet = [n for n, text in enumerate(lines, 1)
             if text.strip() and not text.strip().startswith("#") and all(abs(n - i) > 2 for i in issue_lines)]
    if spurious and quiet:
        category, severity, description, recommendation = template
        reported.append(Finding(line=quiet[int(pick * len(quiet))], category=category, severity=severity,  # type: ignore[arg-type]
                                description=description, recommendation=recommendation))
    noise = rng.gauss(0.0, profile.score_sd)
    score = min(10, max(1, round(profile.base_score - profile.per_issue * len(reported) + noise)))
    return sorted(reported, key=lambda f: f.line), score


_CATEGORY_NAMES = {"security": "security", "error_handling": "error handling", "best_practice": "Python best practice"}


def _assessment(findings: list[Finding], score: int) -> str:
    if not findings:
        return f"The code is small, readable and I found nothing that needs fixing.\n\nScore: {score}/10"
    worst = sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.line))[:3]
    counts = [f"{sum(f.category == c for f in findings)} {name}" for c, name in _CATEGORY_NAMES.items()]
    parts = [f"The module is short and readable, but I found {len(findings)} issue"
             f"{'s' if len(findings) != 1 else ''} ({', '.join(counts)}).",
             "The most serious: " + "; ".join(f"{f.description.rstrip('.')} (line {f.line})" for f in worst) + "."]
    if any(f.severity in ("critical", "high") for f in findings):
        parts.append("Fix the high-severity problems before this code handles real users or data.")
    else:
        parts.append("None of them is severe, but they are worth cleaning up.")
    return " ".join(parts) + f"\n\nScore: {score}/10"


def _line_feedback(findings: list[Finding]) -> str:
    if not findings:
        return "No issues found."
    return "\n".join(f"Line {f.line} [{f.severity}]: {f.description} {f.recommendation}" for f in findings)


def extract_code(prompt: str) -> str | None:
    """The code of the prompt's fenced ```python block, without ``prompts.numbered``'s prefixes."""
    match = _CODE_BLOCK.search(prompt)
    if match is None:
        return None
    return "\n".join(_NUMBER_PREFIX.sub("", line, count=1) for line in match.group(1).splitlines())


def task_of(prompt: str) -> str | None:
    """The prompt's ``TASK:`` line (the first line of the user message; a system prompt may precede it)."""
    return next((line.strip() for line in prompt.splitlines() if line.startswith("TASK:")), None)


def reviewer(profiles: Mapping[str, ReviewerProfile] | None = None) -> Responder:
    """An emulator responder that answers the three review prompts (see :mod:`lab.review.prompts`)
    with a synthetic review; any other prompt gets :func:`~lab.emulator.content.default_responder`."""
    table = REVIEWER_PROFILES if profiles is None else profiles

    def respond(request: ChatRequest) -> str:
        task, code = task_of(request.prompt), extract_code(request.prompt)
        if task not in prompts.TASKS or code is None:
            return default_responder(request)
        findings, score = review(code, profile_for(request.model, table), random.Random(request.variant))
        if task == prompts.ASSESSMENT:
            return _assessment(findings, score)
        if task == prompts.LINE_FEEDBACK:
            return _line_feedback(findings)
        return json.dumps(Findings(findings=findings).model_dump())

    return respond
