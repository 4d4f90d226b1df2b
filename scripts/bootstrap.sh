#!/usr/bin/env bash
# Set up the project's environments from the lock files (idempotent), then run one job:
#   bash scripts/bootstrap.sh demo    daemon + test client on the embedded models, WAV written
#   bash scripts/bootstrap.sh test    the whole test suite (what CI runs), Godot included
#   bash scripts/bootstrap.sh bench   the TTFA benchmark
#   bash scripts/bootstrap.sh setup   only set up .venv
#   bash scripts/bootstrap.sh xtts    only set up .venv-xtts, the XTTS-v2 worker's environment
#   bash scripts/bootstrap.sh godot   only install Godot 4 and llama-server for the tests
#                                     (scripts/sid_tools.sh)
# Every package comes from requirements/*.lock, pinned with hashes (`pip --require-hashes`);
# `bash scripts/lock.sh` refreshes them from pyproject.toml. The first run builds llama.cpp
# from source (about 6-9 minutes on 2 cores). `test` and `xtts` also create .venv-xtts
# (coqui-tts with torch 2.8: about 4 GB of downloads).
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-demo}"
shift || true
python="${PYTHON:-python3}"

# A portable CPU build of llama.cpp: GGML_NATIVE would compile for every instruction
# of the build machine (AMX, AVX-512...), and some VMs and sandboxes forbid AMX tiles
# (the daemon then dies with SIGILL in the first decode). AVX2+FMA is x86-64-v3.
# llama.cpp's own thread pool instead of OpenMP: OpenMP's spin barriers stall when a
# core is taken by another process, so the daemon's second thread (`[llm]
# burst_threads`, BENCHMARKS.md "Threads") is only safe with this build.
# Override CMAKE_ARGS for a GPU build, e.g. CMAKE_ARGS="-DGGML_CUDA=on -DGGML_OPENMP=OFF".
if [ "$(uname -m)" = "x86_64" ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_OPENMP=OFF}"
else
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_OPENMP=OFF}"
fi

stamp_of() {  # a name that changes whenever what the environment is built from changes
  echo "$1/.bootstrap-$(cat requirements/build.lock requirements/nodeps.lock "$2" pyproject.toml scripts/bootstrap.sh \
    | sha256sum | cut -c1-16)"
}

pip_in() { local venv="$1"; shift; "$venv/bin/python" -m pip install --quiet "$@"; }

# One locked package (its line and hash lines) as a requirements file of its own.
lock_entry() {
  awk -v name="$2" '$0 ~ "^"name"==" {keep=1; print; next}
                    keep && /^ / {print; next} {keep=0}' "$1"
}

# Build tools first (hash-checked), then everything else built with them rather than
# with unpinned build environments.
setup_venv() {
  local venv="$1" lock="$2" stamp
  stamp="$(stamp_of "$venv" "$lock")"
  [ -f "$stamp" ] && return 0
  echo "== setting up $venv from $lock"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  pip_in "$venv" --require-hashes -r requirements/build.lock
  if grep -q '^llama-cpp-python==' "$lock"; then
    echo "== building llama.cpp (llama-cpp-python; first time several minutes)"
    local entry
    entry="$(mktemp --suffix=.txt)"
    lock_entry "$lock" llama-cpp-python >"$entry"
    # Never from pip's wheel cache: a cached wheel may have been compiled with other
    # CMAKE_ARGS (e.g. native AMX code) on this same machine. Rebuilt when the locked
    # version or CMAKE_ARGS changed (pip alone would keep an installed build as it is).
    local built="$venv/.llama-cpp-build" wanted
    wanted="$(head -1 "$entry") $CMAKE_ARGS"
    if [ "$(cat "$built" 2>/dev/null)" != "$wanted" ]; then
      pip_in "$venv" --no-cache-dir --no-build-isolation --require-hashes --no-deps \
        --force-reinstall -r "$entry"
      echo "$wanted" >"$built"
    fi
    rm -f "$entry"
  fi
  pip_in "$venv" --no-build-isolation --require-hashes -r "$lock"
  if [ "$lock" = requirements/daemon.lock ]; then
    # Data-only packages (Smart Turn's model inside pipecat-ai): never imported, so
    # none of their own dependencies are wanted.
    pip_in "$venv" --no-deps --require-hashes -r requirements/nodeps.lock
  fi
  pip_in "$venv" --no-build-isolation --no-deps -e .
  # Every requirement met (the XTTS environment has this project without its own
  # dependencies, on purpose: the worker needs none of them; the no-deps packages
  # likewise).
  local problems nodeps_names
  nodeps_names="$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/^\1 /p' requirements/nodeps.lock | paste -sd'|')"
  problems="$("$venv/bin/python" -m pip check 2>&1 | grep -v -E "${nodeps_names:-^\$^}" \
    | grep -v -e '^npc-voice-bridge ' \
    -e '^No broken requirements' -e '^WARNING: Location' || true)"
  if [ -n "$problems" ]; then
    echo "$problems" >&2
    exit 1
  fi
  rm -f "$venv"/.bootstrap-*
  touch "$stamp"
}

# XTTS-v2 needs torch and torchaudio versions that import together (the `xtts` extra
# pins them), unlike the daemon's own environment (which has no torch at all): it gets an
# environment of its own, with this project installed without its dependencies (no
# second llama.cpp build). The daemon runs it as a worker process
# ([xtts] python = ".venv-xtts/bin/python").
setup_xtts() { setup_venv .venv-xtts requirements/xtts.lock; }

# Godot 4 (the addon's tests) and llama-server (the LLM server backend's tests), from
# Debian sid, where they can be installed (Linux x86-64 as root); elsewhere those tests
# skip with one line saying why (CI fails instead).
setup_tool() {  # setup_tool NAME ENV_VAR
  if [ -n "${!2:-}" ]; then
    return 0
  fi
  local path
  if path="$(bash scripts/sid_tools.sh "$1")"; then
    export "$2=$path"
  elif [ -n "${CI:-}" ]; then
    echo "CI needs $1 for the tests and it could not be installed" >&2
    exit 1
  fi
}
setup_godot() {
  setup_tool godot NPC_VOICE_GODOT
  setup_tool llama-server NPC_VOICE_LLAMA_SERVER
}

case "$job" in
  setup) setup_venv .venv requirements/daemon.lock ;;
  xtts) setup_xtts; echo "XTTS worker interpreter: $(pwd)/.venv-xtts/bin/python" ;;
  godot) setup_godot
         echo "Godot: ${NPC_VOICE_GODOT:-not installed}"
         echo "llama-server: ${NPC_VOICE_LLAMA_SERVER:-not installed}" ;;
  demo) setup_venv .venv requirements/daemon.lock; exec .venv/bin/npc-voice demo "$@" ;;
  test)
    setup_venv .venv requirements/daemon.lock
    setup_xtts
    setup_godot
    export NPC_VOICE_XTTS_PYTHON="$(pwd)/.venv-xtts/bin/python"
    exec .venv/bin/python -m pytest "$@" ;;
  bench) setup_venv .venv requirements/daemon.lock; exec .venv/bin/npc-voice bench "$@" ;;
  *) echo "usage: bash scripts/bootstrap.sh [setup|demo|test|bench|xtts|godot] [args...]" >&2
     exit 2 ;;
esac
