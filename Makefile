# Every target builds what it needs: a fresh clone needs only python3 (>= 3.11) and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench clean

$(STAMP): pyproject.toml verifier/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e './verifier[test,ed25519,redis]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/hookgate dev

# Two processes, a test file each at a time (its fixtures stay in one process); schemathesis
# on its own, since its operations share one test id and xdist would run only one of them.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests --ignore=tests/test_schemathesis.py
	$(BIN)/python -m pytest -q tests/test_schemathesis.py
	$(BIN)/python -m pytest -q verifier/tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd verifier && ../$(BIN)/ruff check . && ../$(BIN)/ruff format --check . && ../$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
