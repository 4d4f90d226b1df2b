#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml. This is the only way a version changes:
# edit a range in pyproject.toml, run `bash scripts/lock.sh`, commit requirements/*.lock.
#
#   requirements/build.lock   pip, setuptools, scikit-build-core, CMake, Ninja: what the
#                             bootstrap builds llama.cpp and this project with
#   requirements/daemon.lock  .venv: the daemon plus the test, voice, metrics, bench,
#                             models and lint extras
#   requirements/nodeps.lock  .venv, installed with --no-deps: the `nodeps` group
#                             (packages the daemon only takes a data file from)
#   requirements/xtts.lock    .venv-xtts: the `xtts` extra only (the XTTS worker's own
#                             environment; this project is added there without deps)
#
# Each lock is universal (every platform, Python >= 3.10) and pins every package with
# the SHA-256 of each of its files on PyPI; scripts/bootstrap.sh installs them with
# `pip --require-hashes`. The tool is uv, itself pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."

uv_version="0.13.9"
tools=".venv-lock"
python="${PYTHON:-python3}"
if ! "$tools/bin/uv" --version 2>/dev/null | grep -q " $uv_version"; then
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "uv==$uv_version"
fi

compile() {
  "$tools/bin/uv" pip compile --quiet --universal --python-version 3.10 --generate-hashes \
    --index-url https://pypi.org/simple --custom-compile-command "bash scripts/lock.sh" "$@"
}

mkdir -p requirements
compile --group pyproject.toml:build -o requirements/build.lock
compile --group pyproject.toml:nodeps --no-deps -o requirements/nodeps.lock
compile pyproject.toml --extra test --extra voice --extra metrics --extra bench \
  --extra models --extra lint -o requirements/daemon.lock
# The XTTS environment gets the `xtts` extra alone, not the daemon's own dependencies.
xtts_in="$(mktemp --suffix=.in)"
trap 'rm -f "$xtts_in"' EXIT
"$python" - >"$xtts_in" <<'PY'
import sys
if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib
with open("pyproject.toml", "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["optional-dependencies"]["xtts"]))
PY
compile "$xtts_in" -o requirements/xtts.lock
sed -i "s#$xtts_in#pyproject.toml (the xtts extra)#" requirements/xtts.lock
echo "locked: $(grep -c '==' requirements/build.lock) build, $(grep -c '==' requirements/nodeps.lock) no-deps, $(grep -c '==' requirements/daemon.lock) daemon, $(grep -c '==' requirements/xtts.lock) xtts packages"
