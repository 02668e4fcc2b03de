#!/usr/bin/env bash
# Build or reuse Debian roots holding the real editors the host tests run: tests/hosts/setup_root.sh NAME...
#
#   gimp-trixie         GIMP 3.0.4   (Debian 13 "trixie")
#   gimp-sid            GIMP 3.2.6   (sid; Python 3.14)
#   krita-trixie        Krita 5.2.9  (trixie; Qt5, PyQt5)
#   krita-experimental  Krita 6.0.4.1 (experimental on a sid base: it needs sid's libc and Qt 6.11; PyQt6)
#   krita-sid           Krita 5.3.4.1 (sid; Qt5, PyQt5)
#
# Why roots: Debian 12 has only GIMP 2.10 and Krita 5.1.5. mmdebstrap builds a newer Debian into a folder without
# touching the system (1-3 minutes each, network bound); the result is also packed as NAME.tar.zst so a later run,
# or a fresh checkout on the same machine, only unpacks it (seconds).
#
# Idempotent: a finished root (its stamp file, written last, names the package list) is left alone; a half-built
# one, or one built from another list, is replaced. env: LUCIDDREAM_ROOTS (default /var/cache/luciddream) holds
# NAME/ and NAME.tar.zst; LUCIDDREAM_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
DIR=${LUCIDDREAM_ROOTS:-/var/cache/luciddream}
MIRROR=${LUCIDDREAM_MIRROR:-http://deb.debian.org/debian}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# fonts: without any, GIMP cannot make text layers (the plug-in must refuse those with a sentence, so tests make one).
# xvfb, xauth, xdotool: the window tests (GIMP's dialog, Krita's docker); x11-apps: xwd for screenshots.
GIMP_PACKAGES=gimp,python3-gi,gir1.2-gimp-3.0,gir1.2-gegl-0.4,fonts-dejavu-core,xvfb,xauth,xdotool
# mmdebstrap's apt variant skips Recommends: Krita only *recommends* the PyQt its Python plug-ins need (and Krita 6
# the Qt6 SVG image plugin its icons need), so they are named here.
KRITA5_PACKAGES=krita,python3-pyqt5,xvfb,xauth,xdotool,x11-apps,fonts-dejavu-core
KRITA6_PACKAGES=krita/experimental,krita-data/experimental,python3-pyqt6,qt6-svg-plugins,xvfb,xauth,xdotool,x11-apps,fonts-dejavu-core
# This archive's sid and experimental Release files are past their Valid-Until date; their signatures still verify.
STALE_OK='Acquire::Check-Valid-Until "false"'

log() { echo "setup_root: $*" >&2; }

# A root may only be deleted when nothing is mounted inside it (a bind-mounted project would be deleted with it).
safe_remove() {
  local dir=$1
  [ -e "$dir" ] || return 0
  if awk -v d="$(realpath "$dir")" '$5 == d || index($5, d "/") == 1 {found=1} END {exit !found}' \
      /proc/self/mountinfo; then
    log "something is mounted inside $dir; unmount it first, refusing to delete it"
    exit 1
  fi
  $SUDO rm -rf --one-file-system "$dir"
}

need_tools() {
  command -v mmdebstrap >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1 && return 0
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y mmdebstrap zstd >/dev/null 2>&1 || {
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y mmdebstrap zstd
  }
}

# setup NAME SUITE PACKAGES CHECK_BINARY VERSION_COMMAND STALE_OK(yes|no) SOURCES...
setup() {
  local name=$1 suite=$2 packages=$3 binary=$4 version_cmd=$5 stale=$6
  shift 6
  local options=(--quiet --variant=apt --include="$packages")
  [ "$stale" = no ] || options+=("--aptopt=$STALE_OK")
  local root="$DIR/$name" cache="$DIR/$name.tar.zst"
  local stamp="$root/.luciddream-root" cache_stamp="$cache.packages"
  [ -f "$stamp" ] || stamp="$root/.luciddream-gimp-root"   # the name setup_gimp.sh's first roots carry
  if [ -f "$stamp" ] && [ -x "$root$binary" ] && grep -qxF "packages $packages" "$stamp"; then
    log "$root is ready ($(head -n1 "$stamp"))"
    return 0
  fi
  $SUDO mkdir -p "$DIR"
  if [ -f "$cache" ] && ! grep -qxF "$packages" "$cache_stamp" 2>/dev/null; then
    log "$cache was built from other packages; building it again"
    $SUDO rm -f "$cache"
  fi
  if [ ! -f "$cache" ]; then
    need_tools
    local partial="$cache.part.tar.zst"   # mmdebstrap picks the compression from the name
    $SUDO rm -f "$partial"
    log "building $name ($suite: ${packages//,/ }); 1-3 minutes"
    local started=$SECONDS
    $SUDO mmdebstrap "${options[@]}" "$suite" "$partial" "$@"
    echo "$packages" | $SUDO tee "$cache_stamp" >/dev/null
    $SUDO mv "$partial" "$cache"
    log "built $cache in $((SECONDS - started)) s"
  fi
  safe_remove "$root"
  safe_remove "$root.unpacking"
  $SUDO mkdir -p "$root.unpacking"
  $SUDO tar --zstd -xpf "$cache" -C "$root.unpacking" --numeric-owner
  local version
  version=$($SUDO chroot "$root.unpacking" sh -c "$version_cmd" | tr -d '\n')
  [ -n "$version" ] || { log "$name: '$version_cmd' printed nothing in the new root"; exit 1; }
  printf '%s, built from %s\npackages %s\n' "$version" "$cache" "$packages" |
    $SUDO tee "$root.unpacking/.luciddream-root" >/dev/null
  $SUDO mv "$root.unpacking" "$root"
  log "$root is ready ($version)"
}

KRITA_VERSION="dpkg-query -W -f='Krita \${Version}' krita"
[ $# -gt 0 ] || { echo "usage: $0 gimp-trixie|gimp-sid|krita-trixie|krita-experimental|krita-sid ..." >&2; exit 2; }
for name in "$@"; do
  case $name in
    gimp-trixie) setup "$name" trixie "$GIMP_PACKAGES" /usr/bin/gimp-console-3.0 'gimp-console-3.0 --version' \
                   no "$MIRROR" ;;
    gimp-sid) setup "$name" sid "$GIMP_PACKAGES,x11-apps" /usr/bin/gimp-console-3.2 'gimp-console-3.2 --version' \
                yes "$MIRROR" ;;
    krita-trixie) setup "$name" trixie "$KRITA5_PACKAGES" /usr/bin/krita "$KRITA_VERSION" no "$MIRROR" ;;
    krita-sid) setup "$name" sid "$KRITA5_PACKAGES" /usr/bin/krita "$KRITA_VERSION" yes "$MIRROR" ;;
    krita-experimental) setup "$name" sid "$KRITA6_PACKAGES" /usr/bin/krita "$KRITA_VERSION" yes \
                          "deb $MIRROR sid main" "deb $MIRROR experimental main" ;;
    *) echo "setup_root: unknown root $name" >&2; exit 2 ;;
  esac
done
