# The two commands a newcomer needs: `make report` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_NOTEBOOKS := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg
# The public LLMPerf traces some notebooks and tests read (REAL data, not copied into the repository).
LLMPERF_DIR ?= $(abspath ../shared/datasets/llmperf-leaderboard)
export LLMPERF_DIR

.PHONY: report test test-fast lab notebooks lock benchmark clean

# Set up .venv with the exact locked versions (strict nbval compares outputs
# that change with library versions), then the project itself, editable.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("inference-lab needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e '.[notebooks,test]'
	touch $(STAMP)

## Replay every notebook (never simulating or calling) and write shareable HTML to reports/.
report: $(STAMP)
	$(BIN)/lab report --notebooks notebooks --out reports

## Run the whole test suite, notebooks included (strict nbval against committed outputs, replayed: the
## notebooks never simulate or call). This is what CI runs.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope $(PYTEST_NOTEBOOKS) tests notebooks

## Developers: the same without the minutes-long subprocess tests (marked slow: kills, mounts, wheels).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope -m "not slow" $(PYTEST_NOTEBOOKS) tests notebooks

## Open the notebooks in JupyterLab (kernel: .venv's Python; as root, with --allow-root). Running
## cells rewrites the outputs `make test` compares: `git checkout notebooks/` restores them.
## LAB_PORT and LAB_BROWSER=no: another port, no browser (on a server: make lab LAB_PORT=8890 LAB_BROWSER=no).
LAB_PORT ?= 8888
LAB_BROWSER ?= yes
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(LAB_PORT) $(if $(filter no,$(LAB_BROWSER)),--no-browser) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

## Maintainers: re-execute the notebooks in place after changing code or data; simulates what the cache
## (data/runs/simulations) lacks. Commit the notebooks and the cache.
notebooks: $(STAMP)
	$(BIN)/lab report --notebooks notebooks --in-place

## Maintainers: re-resolve and pin every dependency (run in a clean venv).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[notebooks,test]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
	rm -rf .lock-venv

## Run by hand on a quiet machine; results go in the issue note, not in pass/fail tests.
benchmark: $(STAMP)
	$(BIN)/python -m benchmarks.clock
	$(BIN)/python -m benchmarks.emulator
	$(BIN)/python -m benchmarks.openloop
	$(BIN)/python -m benchmarks.proxy
	$(BIN)/python -m benchmarks.import_scale

clean:
	rm -rf $(VENV) reports .pytest_cache
