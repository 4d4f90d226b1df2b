#!/usr/bin/env bash
# Install Godot 4 for the project's tests (Debian sid's package); prints the launcher.
# Kept for its name: the work is done by scripts/sid_tools.sh.
set -euo pipefail
exec bash "$(dirname "$0")/sid_tools.sh" godot
