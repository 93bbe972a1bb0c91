"""A battery of bad experiment files and bad imports: each is refused before anything starts, in one line
that names the file and what is wrong, with exit 2, no traceback, no hang and no run folder left behind."""

from __future__ import annotations

import gzip
import json
import signal
from pathlib import Path

import pytest

from lab import cli

VALID = {
    "targets": '[[targets]]\nname = "a"\nprovider = "openai"\nmodel = "gpt-5-mini"\n',
    "prompts": '[prompts]\nitems = [{id = "p", task = "t", prompt = "Say hi.", max_tokens = 8}]\n',
    "design": '[design]\nmode = "serial"\nrepeats = 2\npause_s = 0\nseed = 1\n',
}
OPEN = '[design]\nmode = "open-loop"\nrate_per_s = 5\nrequests = 10\n'


def variant(**parts: str) -> str:
    return "".join(parts.get(k, v) for k, v in VALID.items()) + parts.get("extra", "")


def design(line: str, base: str = VALID["design"]) -> str:
    return variant(design=base + line + "\n")


def target(line: str) -> str:
    return variant(targets=VALID["targets"] + line + "\n")


def prompt(item: str) -> str:
    return variant(prompts=f"[prompts]\nitems = [{item}]\n")


BAD_FILES = {
    # the file as a whole
    "empty": "", "not toml": "not toml [", "unknown top key": variant(extra="colour = 1\n"),
    "name not text": "name = 5\n" + variant(), "name empty": 'name = ""\n' + variant(),
    "binary": "\x00\x01\x02", "targets a number": "targets = 5\n" + VALID["prompts"],
    "targets a text": 'targets = "a"\n' + VALID["prompts"], "targets a table": "[targets]\nprovider = 'openai'\n"
    + VALID["prompts"], "no targets": VALID["prompts"], "no prompts": VALID["targets"],
    "design a number": 'design = 5\n' + VALID["targets"] + VALID["prompts"],
    "prompts a number": VALID["targets"] + "prompts = 5\n",
    # targets
    "provider missing": '[[targets]]\nmodel = "x"\n' + VALID["prompts"],
    "provider unknown": target('provider = "nope"').replace('provider = "openai"\n', "", 1),
    "provider a number": '[[targets]]\nprovider = 5\n' + VALID["prompts"],
    "model a number": target("").replace('model = "gpt-5-mini"', "model = 5"),
    "model empty": target("").replace('model = "gpt-5-mini"', 'model = ""'),
    "model a list": target("").replace('model = "gpt-5-mini"', 'model = ["x"]'),
    "name a number": target("").replace('name = "a"', "name = 5"),
    "name with a newline": target("").replace('name = "a"', 'name = "a\\nb"'),
    "name too long": target("").replace('name = "a"', f'name = "{"x" * 101}"'),
    "two targets one name": VALID["targets"] * 2 + VALID["prompts"],
    "base_url ftp": target('base_url = "ftp://example.com/v1"'),
    "base_url no host": target('base_url = "http://"'),
    "base_url a number": target("base_url = 5"),
    "base_url with a space": target('base_url = "http://exa mple.com"'),
    "base_url not a url": target('base_url = "localhost:8000"'),
    "emulator unknown": target('emulator = "turbo"'),
    "emulator bad parameter": target('emulator = "fixed:ttft_ms=-1"'),
    "emulator a number": target("emulator = 5"),
    "target unknown key": target("colour = 1"),
    "target a list": "targets = [5]\n" + VALID["prompts"],
    # prompts
    "prompts neither file nor items": VALID["targets"] + "[prompts]\nother = 1\n",
    "prompts both file and items": VALID["targets"] + '[prompts]\nfile = "p.jsonl"\nitems = [{prompt = "x"}]\n',
    "prompts file absent": VALID["targets"] + '[prompts]\nfile = "absent.jsonl"\n',
    "prompts file a number": VALID["targets"] + "[prompts]\nfile = 5\n",
    "prompts file a folder": VALID["targets"] + '[prompts]\nfile = "."\n',
    "items not a list": VALID["targets"] + "[prompts]\nitems = 5\n",
    "item not a table": prompt("5"), "item without prompt": prompt('{id = "p"}'),
    "prompt a number": prompt("{prompt = 5}"), "prompt empty": prompt('{prompt = ""}'),
    "prompt a list": prompt('{prompt = ["x"]}'), "system a number": prompt('{prompt = "x", system = 5}'),
    "max_tokens zero": prompt('{prompt = "x", max_tokens = 0}'),
    "max_tokens negative": prompt('{prompt = "x", max_tokens = -5}'),
    "max_tokens a float": prompt('{prompt = "x", max_tokens = 8.5}'),
    "max_tokens 1e12": prompt('{prompt = "x", max_tokens = 1e12}'),
    "max_tokens huge": prompt('{prompt = "x", max_tokens = 1000000000000}'),
    "max_tokens a text": prompt('{prompt = "x", max_tokens = "8"}'),
    "prompt unknown key": prompt('{prompt = "x", colour = 1}'),
    "task a number": prompt('{prompt = "x", task = 5}'),
    "id a float": prompt('{prompt = "x", id = 1.5}'),
    "id a bool": prompt('{prompt = "x", id = true}'),
    "two prompts one id": prompt('{prompt = "x", id = "a"}, {prompt = "y", id = "a"}'),
    # design: types
    "mode unknown": design('mode = "burst"', ""), "mode a number": design("mode = 5", ""),
    "repeats a float": design("repeats = 1.5", ""), "repeats a text": design('repeats = "2"', ""),
    "repeats zero": design("repeats = 0", ""), "repeats negative": design("repeats = -1", ""),
    "repeats a billion": design("repeats = 1000000000", ""), "repeats a bool": design("repeats = true", ""),
    "pause nan": design("pause_s = nan", ""), "pause inf": design("pause_s = inf", ""),
    "pause negative": design("pause_s = -1", ""), "pause a year": design("pause_s = 31536000", ""),
    "pause a text": design('pause_s = "0.3"', ""),
    "seed a text": design('seed = "abc"', ""), "seed negative": design("seed = -1", ""),
    "seed a float": design("seed = 1.5", ""), "seed huge": design("seed = 99999999999999", ""),
    "stream a text": design('stream = "no"', ""), "stream a number": design("stream = 0", ""),
    "kinds unknown": design('kinds = ["batch"]', ""), "kinds empty": design("kinds = []", ""),
    "kinds repeated": design('kinds = ["stream", "stream"]', ""), "kinds a text": design('kinds = "stream"', ""),
    "order unknown": design('order = "random"', ""), "timeout zero": design("timeout_s = 0", ""),
    "timeout nan": design("timeout_s = nan", ""), "timeout a day": design("timeout_s = 86400", ""),
    "design unknown key": design("colour = 1", ""), "design max_tokens zero": design("max_tokens = 0", ""),
    "design max_tokens a float": design("max_tokens = 1e12", ""),
    "too many calls": design("repeats = 999999", "") + "",
    # open loop
    "open loop without rate": design("", '[design]\nmode = "open-loop"\nrequests = 10\n'),
    "open loop without size": design("", '[design]\nmode = "open-loop"\nrate_per_s = 5\n'),
    "open loop both sizes": design("duration_s = 10", OPEN),
    "rate zero": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = 0")),
    "rate negative": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = -5")),
    "rate 1e-9": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = 1e-9")),
    "rate inf": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = inf")),
    "rate nan": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = nan")),
    "rate a text": design("", OPEN.replace("rate_per_s = 5", 'rate_per_s = "5"')),
    "rates with a text": design("", OPEN.replace("rate_per_s = 5", 'rate_per_s = [5, "x"]')),
    "rate too high": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = 1e9")),
    "requests 1e9": design("", OPEN.replace("requests = 10", "requests = 1e9")),
    "requests a billion": design("", OPEN.replace("requests = 10", "requests = 1000000000")),
    "requests zero": design("", OPEN.replace("requests = 10", "requests = 0")),
    "schedule of months": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = 0.001")
                                 .replace("requests = 10", "requests = 100000")),
    "duration nan": design("", OPEN.replace("requests = 10", "duration_s = nan")),
    "duration negative": design("", OPEN.replace("requests = 10", "duration_s = -1")),
    "duration a year": design("", OPEN.replace("requests = 10", "duration_s = 31536000")),
    "duration plans too many": design("", OPEN.replace("rate_per_s = 5", "rate_per_s = 50000")
                                      .replace("requests = 10", "duration_s = 600")),
    "open loop two kinds": design('kinds = ["stream", "complete"]', OPEN),
    "max_concurrency zero": design("max_concurrency = 0", OPEN),
    "max_concurrency a float": design("max_concurrency = 2.5", OPEN),
    "arrival unknown": design('arrival = "burst"', OPEN),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "p.jsonl").write_text('{"prompt": "x"}\n')
    return tmp_path


def refused(argv: list[str], capsys) -> str:
    """Run ``lab`` in this process with a 60 s hang detector; it must exit 2 with one line on stderr."""
    def hang(*_):
        raise TimeoutError(f"lab {' '.join(argv)} hung")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("lab: "), (code, err)
    assert "Traceback" not in err
    return err


def test_the_battery_is_large():
    assert len(BAD_FILES) >= 90 and len(BAD_IMPORTS) >= 50


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_experiment_file_is_refused_before_anything_starts(workdir, capsys, name):
    path = workdir / "bad.toml"
    path.write_bytes(BAD_FILES[name].encode())
    err = refused(["collect", "run", str(path), "--run", "r", "--emulator", "instant"], capsys)
    assert "bad.toml" in err or "p.jsonl" in err or "absent.jsonl" in err, err
    assert not (workdir / "runs" / "r").exists()  # nothing left behind


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode())


AIPERF_LINE = {"metadata": {"request_start_ns": 1_700_000_000_000_000_000, "x_request_id": "a"},
               "metrics": {"request_latency": {"value": 120.0}}}
CSV_MAP = ["--map", "latency_ms=latency_ms", "--map", "status=status"]
BAD_IMPORTS: dict[str, tuple[bytes, list[str]]] = {
    "empty file": (b"", []), "only spaces": (b"   \n\n", []), "binary": (bytes(range(256)), []),
    "not gzip inside .gz": (b"not gzip", []), "truncated gzip": (_gz("{}" * 100)[:30], []),
    "a JSON number": (b"5", []), "a JSON text": (b'"x"', []), "a JSON null": (b"null", []),
    "an empty list": (b"[]", []), "an empty object": (b"{}", []), "a list of numbers": (b"[1, 2, 3]", []),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, []),
    "deeply nested as guidellm": (b"[" * 100_000 + b"]" * 100_000, ["--format", "guidellm"]),
    "deeply nested as aiperf": (b"{\"a\": " * 50_000 + b"1" + b"}" * 50_000, ["--format", "aiperf"]),
    "deeply nested as llmperf": (b"[" * 100_000 + b"]" * 100_000, ["--format", "llmperf"]),
    "deeply nested as litellm": (b"[" * 100_000 + b"]" * 100_000, ["--format", "litellm"]),
    "deeply nested as otel": (b"[" * 100_000 + b"]" * 100_000, ["--format", "otel"]),
    "deeply nested as genai-perf": (b"[" * 100_000 + b"]" * 100_000, ["--format", "genai-perf"]),
    "deeply nested as vllm-bench": (b"[" * 100_000 + b"]" * 100_000, ["--format", "vllm-bench"]),
    "aiperf as guidellm": (json.dumps(AIPERF_LINE).encode(), ["--format", "guidellm"]),
    "aiperf as litellm": (json.dumps(AIPERF_LINE).encode(), ["--format", "litellm"]),
    "aiperf as otel": (json.dumps(AIPERF_LINE).encode(), ["--format", "otel"]),
    "aiperf as genai-perf": (json.dumps(AIPERF_LINE).encode(), ["--format", "genai-perf"]),
    "aiperf as vllm-bench": (json.dumps(AIPERF_LINE).encode(), ["--format", "vllm-bench"]),
    "aiperf as llmperf": (json.dumps(AIPERF_LINE).encode(), ["--format", "llmperf"]),
    "junk lines as aiperf": (b'{"a": 1}\n{"b": 2}\n', ["--format", "aiperf"]),
    "junk lines as litellm": (b'{"a": 1}\n{"b": 2}\n', ["--format", "litellm"]),
    "junk list as litellm": (b'[{"a": 1}]', ["--format", "litellm"]),
    "aiperf negative latency": (json.dumps({**AIPERF_LINE, "metrics": {"request_latency": {"value": -5.0}}}
                                           ).encode(), []),
    "aiperf infinite latency": (json.dumps({**AIPERF_LINE, "metrics": {"request_latency": {"value": 1e999}}}
                                           ).encode(), []),
    "csv without a latency": (b"status,model\nok,m\n", ["--format", "csv"]),
    "csv latency not mapped": (b"e2e,status\n1,ok\n", ["--map", "status=status"]),
    "csv negative latency": (b"latency_ms,status\n-1,ok\n", CSV_MAP),
    "csv infinite latency": (b"latency_ms,status\ninf,ok\n", CSV_MAP),
    "csv negative tokens": (b"latency_ms,status,output_tokens\n1,ok,-3\n", [*CSV_MAP, "--map",
                                                                              "output_tokens=output_tokens"]),
    "csv negative cost": (b"latency_ms,status,cost_usd\n1,ok,-0.5\n", [*CSV_MAP, "--map", "cost_usd=cost_usd"]),
    "csv text latency": (b"latency_ms,status\nfast,ok\n", CSV_MAP),
    "csv map to an unknown field": (b"a\n1\n", ["--map", "colour=a"]),
    "csv map from an absent column": (b"a\n1\n", ["--map", "latency_ms=b"]),
    "csv map with a bad unit": (b"a\n1\n", ["--map", "latency_ms=a:fortnights"]),
    "csv map without =": (b"a\n1\n", ["--map", "latency_ms"]),
    "csv map twice": (b"a\n1\n", ["--map", "latency_ms=a", "--map", "latency_ms=a"]),
    "csv unknown status": (b"latency_ms,status\n1,maybe\n", CSV_MAP),
    "csv only a header": (b"latency_ms,status\n", CSV_MAP),
    "csv ragged rows": (b"latency_ms,status\n1,ok,extra,more\n", CSV_MAP),
    "csv not utf-8": (b"latency_ms,status\n1,\xff\xfe\n", CSV_MAP),
    "map for a json format": (json.dumps(AIPERF_LINE).encode(), ["--format", "aiperf", "--map", "latency_ms=a"]),
    "unknown format": (b"x", ["--format", "nope"]),
    "llmperf object not list": (b'{"error_code": null}', ["--format", "llmperf"]),
    "otel no spans": (b'{"resourceSpans": []}', ["--format", "otel"]),
    "guidellm no benchmarks": (b'{"benchmarks": []}', ["--format", "guidellm"]),
    "genai-perf no experiments": (b'{"experiments": []}', ["--format", "genai-perf"]),
    "vllm-bench no rows": (b'{"ttfts": []}', ["--format", "vllm-bench"]),
}


@pytest.mark.parametrize("name", list(BAD_IMPORTS))
def test_a_bad_import_is_refused_in_one_line(workdir, capsys, name):
    data, options = BAD_IMPORTS[name]
    path = workdir / ("trace.jsonl.gz" if "gzip" in name else "trace.csv" if "csv" in name else "trace.json")
    path.write_bytes(data)
    err = refused(["import", str(path), "--run", "imported", *options], capsys)
    assert not (workdir / "runs" / "imported").exists(), err  # nothing left behind


def test_a_folder_of_deep_json_lines_is_listed_and_checked(workdir, capsys):
    run = workdir / "runs" / "deep"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": "deep", "experiment": "x", "started_at": "2026"}))
    (run / "calls.jsonl").write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    assert cli.main(["runs"]) == 0
    assert cli.main(["runs", "check", "--run", "deep"]) == 1  # damaged, said with file and line
    out, err = capsys.readouterr()
    assert "calls.jsonl:1" in out + err and "Traceback" not in out + err


@pytest.mark.slow
def test_an_import_killed_at_any_moment_leaves_no_half_run(tmp_path):
    import os
    import random
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    rows = 400_000
    trace = tmp_path / "big.csv"
    with open(trace, "w") as out:
        out.write("latency_ms,status\n")
        out.writelines(f"{100 + i % 997},{'ok' if i % 50 else 'error'}\n" for i in range(rows))
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "lab.cli", "import", str(trace), "--run", "big", "--map", "latency_ms=latency_ms",
               "--map", "status=status"]
    rng = random.Random(5)
    for _ in range(4):
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 3.0))  # a random moment: before, during or after the import
        process.kill()
        process.wait(60)
        manifest = tmp_path / "runs" / "big" / "manifest.json"
        if manifest.exists():  # it finished before the kill: whole
            assert json.loads(manifest.read_text())["rows"] == rows
            break
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert (done.returncode == 0) != ("already exists" in done.stderr), done.stderr
    assert json.loads((tmp_path / "runs" / "big" / "manifest.json").read_text())["rows"] == rows
    assert not list((tmp_path / "runs" / "big").glob("*.partial"))
    listed = subprocess.run([sys.executable, "-m", "lab.cli", "runs"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A small collected run, copied by each test that damages it."""
    import os

    root = tmp_path_factory.mktemp("collected")
    previous = os.environ.get("LAB_RUNS_DIR")
    os.environ["LAB_RUNS_DIR"] = str(root)
    try:
        assert cli.main(["collect", "variance", "--run", "good", "--window", "w", "--n", "3", "--pause", "0",
                         "--emulator", "instant"]) == 0
    finally:
        if previous is None:
            os.environ.pop("LAB_RUNS_DIR")
        else:
            os.environ["LAB_RUNS_DIR"] = previous
    return root / "good"


def _damaged(collected: Path, workdir: Path, change) -> None:
    import shutil

    run = workdir / "runs" / "good"
    shutil.copytree(collected, run)
    change(run)


def _without_endpoints(run: Path) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["sessions"][0]["endpoints"]
    (run / "manifest.json").write_text(json.dumps(manifest))


def _missing_a_call(run: Path) -> None:
    lines = (run / "calls.jsonl").read_text().splitlines()
    (run / "calls.jsonl").write_text("\n".join(lines[:-1]) + "\n")


@pytest.mark.parametrize("change", [_without_endpoints, _missing_a_call])
def test_analyze_and_compare_of_a_damaged_run_are_one_line(collected, workdir, capsys, change):
    _damaged(collected, workdir, change)
    for argv in (["analyze", "--run", "good", "--out", str(workdir / "page.html")], ["compare", "--run", "good", "--run", "good"]):
        err = refused(argv, capsys)
        assert "good" in err
    assert cli.main(["runs", "check", "--run", "good"]) != 0 or change is _missing_a_call
    capsys.readouterr()
