#!/usr/bin/env bash
# Install Godot 4 for the project's tests: Debian's `godot` package from the `sid` suite
# (bookworm, the machines' own suite, has only Godot 3), unpacked into a minimal Debian
# root with debootstrap. Idempotent and cached: a second run only checks the launcher.
#
#   bash scripts/install_godot.sh        prints the path of the `godot` launcher
#
# The launcher runs the sid binary on the host through sid's own dynamic loader and
# libraries, so no chroot is needed at run time: Godot sees the host's files (the
# project under test) and its loopback (the daemon under test).
#
# Environment:
#   NPC_VOICE_GODOT_HOME     where to install (default ~/.cache/npc-voice/godot)
#   NPC_VOICE_GODOT_VERSION  Debian version of the package (default below); when the
#                            mirror no longer has it, the newest 4.x there is taken,
#                            with a warning
#   DEBIAN_MIRROR            default: the first deb.debian.org-style URI in apt's sources
# Needs root (debootstrap), Linux x86-64, about 1 GB of disk and 1 minute.
set -euo pipefail

home="${NPC_VOICE_GODOT_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/npc-voice/godot}"
version="${NPC_VOICE_GODOT_VERSION:-4.6.3+ds-3}"
root="$home/sid"
launcher="$home/bin/godot"

log() { echo "install_godot: $*" >&2; }

if [ -x "$launcher" ] && "$launcher" --version >/dev/null 2>&1; then
  echo "$launcher"
  exit 0
fi
if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  log "only Linux x86-64 is supported here; install Godot 4.3+ yourself and set NPC_VOICE_GODOT"
  exit 1
fi
if [ "$(id -u)" != "0" ]; then
  log "needs root (debootstrap); install Godot 4.3+ yourself and set NPC_VOICE_GODOT"
  exit 1
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
    | grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q debootstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }
fi

started=$(date +%s)
if [ ! -x "$root/usr/bin/apt-get" ]; then
  log "creating a minimal Debian sid root in $root from $mirror (about 45 s)"
  rm -rf "$root"
  mkdir -p "$root"
  debootstrap --variant=minbase sid "$root" "$mirror" >"$home/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $home/debootstrap.log"; exit 1; }
fi

# The mirror's sid Release file may be past its Valid-Until date: accept it.
apt_in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q \
  -o Acquire::Check-Valid-Until=false "$@"; }
log "installing godot=$version in the sid root"
apt_in_root update >"$home/apt.log" 2>&1
if ! apt_in_root install -y --no-install-recommends "godot=$version" >>"$home/apt.log" 2>&1; then
  available="$(chroot "$root" apt-cache policy godot | awk '/Candidate:/ {print $2}')"
  case "$available" in
    4.*) log "WARNING: godot $version is not on the mirror; installing $available instead"
         apt_in_root install -y --no-install-recommends godot >>"$home/apt.log" 2>&1 ;;
    *) log "no Godot 4 package on the mirror (candidate: ${available:-none}); see $home/apt.log"
       exit 1 ;;
  esac
fi

mkdir -p "$home/bin"
libs="$root/usr/lib/x86_64-linux-gnu"
cat >"$launcher" <<EOF
#!/bin/sh
# Godot from Debian sid ($root), run with sid's loader and libraries.
exec "$root/usr/lib64/ld-linux-x86-64.so.2" \\
  --library-path "$libs:$libs/pulseaudio" "$root/usr/bin/godot" "\$@"
EOF
chmod +x "$launcher"
"$launcher" --version >/dev/null || { log "the installed Godot does not start"; exit 1; }
log "Godot $("$launcher" --version) ready in $(( $(date +%s) - started )) s"
echo "$launcher"
