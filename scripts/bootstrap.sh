#!/usr/bin/env bash
# Set up the project's virtual environment (idempotent), then run one job:
#   bash scripts/bootstrap.sh demo    daemon + test client on the embedded models, WAV written
#   bash scripts/bootstrap.sh test    the whole test suite (what CI runs)
#   bash scripts/bootstrap.sh bench   the TTFA benchmark
#   bash scripts/bootstrap.sh setup   only set up .venv
# The first run builds llama.cpp from source (about 5-8 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-demo}"
shift || true
python="${PYTHON:-python3}"
venv=".venv"
stamp="$venv/.bootstrap-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"

# A portable CPU build of llama.cpp: GGML_NATIVE would compile for every instruction
# of the build machine (AMX, AVX-512...), and some VMs and sandboxes forbid AMX tiles
# (the daemon then dies with SIGILL in the first decode). AVX2+FMA is x86-64-v3.
# Override CMAKE_ARGS for a GPU build, e.g. CMAKE_ARGS="-DGGML_CUDA=on".
if [ "$(uname -m)" = "x86_64" ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
fi

if [ ! -f "$stamp" ]; then
  echo "== setting up $venv (first time: builds llama.cpp, several minutes)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # Built apart and never from pip's wheel cache: a cached wheel may have been
  # compiled with other CMAKE_ARGS (e.g. native AMX code) on this same machine.
  "$venv/bin/python" -m pip install --quiet --no-cache-dir "llama-cpp-python==0.3.36"
  # Voice input needs torch (silero-vad). Pin the CPU build where one is available
  # (a plain "torch" from PyPI brings several GB of CUDA libraries).
  "$venv/bin/python" -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}" \
    || echo "note: torch ${TORCH_VERSION:-2.13.0} not available; the voice extra picks one"
  "$venv/bin/python" -m pip install --quiet -e ".[test,metrics,bench,models,voice]"
  rm -f "$venv"/.bootstrap-*
  touch "$stamp"
fi

case "$job" in
  setup) ;;
  demo) exec "$venv/bin/npc-voice" demo "$@" ;;
  test) exec "$venv/bin/python" -m pytest "$@" ;;
  bench) exec "$venv/bin/npc-voice" bench "$@" ;;
  *) echo "usage: bash scripts/bootstrap.sh [setup|demo|test|bench] [args...]" >&2; exit 2 ;;
esac
