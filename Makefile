# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck pytest pytest-postgres coverage-report bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/python -m fractal_jupyter.demo

test: $(STAMP) lint typecheck pytest pytest-postgres coverage-report

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy fractal_jupyter

pytest: $(STAMP)
	$(BIN)/pytest -q --cov --cov-report=

# The same suite on a real PostgreSQL started by scripts/postgres-test.sh; skipped, loudly,
# only where it cannot be started (not root and no PostgreSQL server installed).
pytest-postgres: $(STAMP)
	@url=$$(scripts/postgres-test.sh start) ; rc=$$? ; \
	if [ $$rc -eq 3 ]; then echo "*** SKIPPED: PostgreSQL run (could not start a server, see above) ***"; exit 0; fi ; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi ; \
	FRACTAL_TEST_DB_URL=$$url $(BIN)/pytest -q -p no:cacheprovider --cov --cov-append \
	  --cov-report= --ignore=tests/test_compatibility.py --ignore=tests/services --ignore=tests/e2e ; rc=$$? ; \
	scripts/postgres-test.sh stop >/dev/null ; exit $$rc

coverage-report: $(STAMP)
	$(BIN)/coverage report

bench: $(STAMP)
	$(BIN)/python bench/images.py

clean:
	rm -rf $(VENV) .peer .tmp .coverage
