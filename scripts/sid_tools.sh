#!/usr/bin/env bash
# Tools the tests need from Debian's `sid` suite, installed into a minimal Debian root
# made with debootstrap (the machines' own suite, bookworm, has only Godot 3 and no
# llama.cpp). Idempotent and cached: a second run only checks the launcher.
#
#   bash scripts/sid_tools.sh godot          prints the path of a `godot` launcher
#   bash scripts/sid_tools.sh llama-server   prints the path of a `llama-server` launcher
#
# Launchers:
#   godot         runs sid's binary on the host through sid's own dynamic loader and
#                 libraries: Godot sees the host's files (the project under test) and
#                 its loopback (the daemon under test). No chroot at run time.
#   llama-server  runs in the sid root (chroot: llama.cpp loads its CPU backends from
#                 the root's library folder). It shares the host's loopback; a model
#                 given with -m/--model is copied into the root first (never a bind
#                 mount of the host: deleting the cache must not reach the host's files).
#
# Environment:
#   NPC_VOICE_SID_HOME   where to install (default ~/.cache/npc-voice/sid-tools)
#   GODOT_DEB_VERSION    Debian version of `godot` (default below)
#   LLAMA_DEB_VERSION    Debian version of `llama.cpp-tools` (default below)
#   DEBIAN_MIRROR        default: the first deb.debian.org-style URI in apt's sources
# When the mirror no longer has the pinned version, the newest there is taken, with a
# warning. Needs root (debootstrap, chroot), Linux x86-64, about 1.3 GB and a minute.
set -euo pipefail

tool="${1:?usage: bash scripts/sid_tools.sh godot|llama-server}"
home="${NPC_VOICE_SID_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/npc-voice/sid-tools}"
root="$home/sid"
launcher="$home/bin/$tool"

log() { echo "sid_tools: $*" >&2; }

case "$tool" in
  godot) package="godot" version="${GODOT_DEB_VERSION:-4.6.3+ds-3}" check="--version" ;;
  llama-server) package="llama.cpp-tools" version="${LLAMA_DEB_VERSION:-1:0.7.0+dfsg-2}"
                check="--version" ;;
  *) log "unknown tool $tool (godot or llama-server)"; exit 2 ;;
esac

if [ -x "$launcher" ] && "$launcher" $check >/dev/null 2>&1; then
  echo "$launcher"
  exit 0
fi
if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  log "only Linux x86-64 is supported here; install $tool yourself (see README)"
  exit 1
fi
if [ "$(id -u)" != "0" ]; then
  log "needs root (debootstrap, chroot); install $tool yourself (see README)"
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
mkdir -p "$home/bin"
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
log "installing $package=$version in the sid root"
apt_in_root update >"$home/apt-$tool.log" 2>&1
if ! apt_in_root install -y --no-install-recommends "$package=$version" \
    >>"$home/apt-$tool.log" 2>&1; then
  available="$(chroot "$root" apt-cache policy "$package" | awk '/Candidate:/ {print $2}')"
  if [ -z "$available" ] || [ "$available" = "(none)" ]; then
    log "no $package package on the mirror; see $home/apt-$tool.log"
    exit 1
  fi
  log "WARNING: $package $version is not on the mirror; installing $available instead"
  apt_in_root install -y --no-install-recommends "$package" >>"$home/apt-$tool.log" 2>&1
fi

libs="$root/usr/lib/x86_64-linux-gnu"
case "$tool" in
  godot)
    cat >"$launcher" <<EOF
#!/bin/sh
# Godot from Debian sid ($root), run with sid's loader and libraries.
exec "$root/usr/lib64/ld-linux-x86-64.so.2" \\
  --library-path "$libs:$libs/pulseaudio" "$root/usr/bin/godot" "\$@"
EOF
    ;;
  llama-server)
    cat >"$launcher" <<EOF
#!/bin/sh
# llama-server from Debian sid, run in its root ($root). A model file given on the
# command line is copied into the root (kept while unchanged) and named by its path there.
root="$root"
mkdir -p "\$root/models"
n=\$#
i=0
take_model=0
while [ \$i -lt \$n ]; do
  arg="\$1"; shift; i=\$((i + 1))
  if [ \$take_model = 1 ] && [ -f "\$arg" ]; then
    name="\$(basename "\$arg")"
    if [ ! -f "\$root/models/\$name" ] || [ "\$arg" -nt "\$root/models/\$name" ] \\
        || [ "\$(stat -c %s "\$arg")" != "\$(stat -c %s "\$root/models/\$name")" ]; then
      cp "\$arg" "\$root/models/\$name.part" && mv "\$root/models/\$name.part" "\$root/models/\$name"
    fi
    arg="/models/\$name"
  fi
  take_model=0
  case "\$arg" in -m|--model) take_model=1 ;; esac
  set -- "\$@" "\$arg"
done
exec chroot "\$root" /usr/bin/llama-server "\$@"
EOF
    ;;
esac
chmod +x "$launcher"
"$launcher" $check >/dev/null 2>&1 || { log "the installed $tool does not start"; exit 1; }
log "$tool ready in $(( $(date +%s) - started )) s"
echo "$launcher"
