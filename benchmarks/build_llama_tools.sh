#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-perplexity: the anchor for the fidelity and BBQ
# benchmarks) from the llama.cpp source vendored in the llama-cpp-python sdist, at the version
# edgegate's venv runs, so both sides use the same kernels.
#   bash benchmarks/build_llama_tools.sh [target ...]     # default: llama-perplexity
# -> build/llama.cpp/bin/<target>. Needs cmake and a C++ compiler; ~10 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
version=$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
src=build/llama-cpp-python-$version
if [ ! -d "$src" ]; then
  mkdir -p build
  "$PY" -m pip download "llama-cpp-python==$version" --no-binary :all: --no-deps -d build/sdist
  tar xzf "build/sdist/llama_cpp_python-$version.tar.gz" -C build
  mv "build/llama_cpp_python-$version" "$src"
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(llama-perplexity)
cmake -S "$src/vendor/llama.cpp" -B build/llama.cpp -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build build/llama.cpp --target "${targets[@]}" -j "$(nproc)"
echo "built: ${targets[*]} in build/llama.cpp/bin (llama.cpp from llama-cpp-python $version)"
