# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= all,dev

.PHONY: venv demo test lint fixtures clean

$(BIN)/edgegate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

venv: $(BIN)/edgegate

demo: venv
	$(BIN)/python -m edgegate.demo

test: venv
	EDGEGATE_REQUIRE_RUNTIMES=1 $(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks fixtures
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
