#!/usr/bin/env bash
# Build or reuse a Debian trixie root with real GIMP 3 (3.0.4) and its Python bindings, for tests/test_gimp_*.py.
#
# Why a root: Debian 12 only has GIMP 2.10, which cannot run Python 3 plug-ins. mmdebstrap builds trixie's GIMP into
# a folder without touching the system (~90 s, ~640 MB); the result is also packed as a tar.zst (~190 MB) so a
# later run, or a fresh checkout on the same machine, only unpacks it (~4 s).
#
# Idempotent: a finished root (it carries a stamp file, written last) is left alone; a half-built one is replaced.
# env: LUCIDDREAM_GIMP_ROOT (default /var/cache/luciddream/gimp-trixie), LUCIDDREAM_GIMP_CACHE (the tar.zst).
set -euo pipefail
ROOT=${LUCIDDREAM_GIMP_ROOT:-/var/cache/luciddream/gimp-trixie}
CACHE=${LUCIDDREAM_GIMP_CACHE:-/var/cache/luciddream/gimp-trixie.tar.zst}
STAMP="$ROOT/.luciddream-gimp-root"
# fonts: without any, GIMP cannot make text layers (the plug-in must refuse those with a sentence, so tests make one).
# xvfb, xauth, xdotool: the interactive test opens the dialog in the real GIMP window, presses OK and Ctrl+Z.
PACKAGES=gimp,python3-gi,gir1.2-gimp-3.0,gir1.2-gegl-0.4,fonts-dejavu-core,xvfb,xauth,xdotool
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The stamp names the packages: a root (or cached tar) built from another list is rebuilt.
if [ -f "$STAMP" ] && [ -x "$ROOT/usr/bin/gimp-console-3.0" ] && grep -qF "packages $PACKAGES" "$STAMP"; then
  echo "setup_gimp: $ROOT is ready ($(head -n1 "$STAMP"))"
  exit 0
fi
CACHE_STAMP="$CACHE.packages"
if [ -f "$CACHE" ] && ! grep -qxF "$PACKAGES" "$CACHE_STAMP" 2>/dev/null; then
  echo "setup_gimp: $CACHE was built from other packages; building it again"
  $SUDO rm -f "$CACHE"
fi

# A root may only be deleted when nothing is mounted inside it (a bind-mounted project would be deleted with it).
safe_remove() {
  local dir=$1
  [ -e "$dir" ] || return 0
  if awk -v d="$(realpath "$dir")" '$5 == d || index($5, d "/") == 1 {found=1} END {exit !found}' \
      /proc/self/mountinfo; then
    echo "setup_gimp: something is mounted inside $dir; unmount it first, refusing to delete it" >&2
    exit 1
  fi
  $SUDO rm -rf --one-file-system "$dir"
}

$SUDO mkdir -p "$(dirname "$ROOT")" "$(dirname "$CACHE")"
if [ ! -f "$CACHE" ]; then
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y mmdebstrap zstd >/dev/null 2>&1 || {
      $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
      $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y mmdebstrap zstd
    }
  fi
  partial="$CACHE.part.tar.zst"   # mmdebstrap picks the compression from the name
  rm -f "$partial"
  echo "setup_gimp: building a trixie root with GIMP 3 (about 90 s)"
  $SUDO mmdebstrap --quiet --variant=apt --include="$PACKAGES" trixie "$partial" http://deb.debian.org/debian
  echo "$PACKAGES" | $SUDO tee "$CACHE_STAMP" >/dev/null
  $SUDO mv "$partial" "$CACHE"
fi

safe_remove "$ROOT"
safe_remove "$ROOT.unpacking"
$SUDO mkdir -p "$ROOT.unpacking"
$SUDO tar --zstd -xpf "$CACHE" -C "$ROOT.unpacking" --numeric-owner
$SUDO chroot "$ROOT.unpacking" gimp-console-3.0 --version >/dev/null
version=$($SUDO chroot "$ROOT.unpacking" gimp-console-3.0 --version | tr -d '\n')
printf '%s, built from %s\npackages %s\n' "$version" "$CACHE" "$PACKAGES" |
  $SUDO tee "$ROOT.unpacking/.luciddream-gimp-root" >/dev/null
$SUDO mv "$ROOT.unpacking" "$ROOT"
echo "setup_gimp: $ROOT is ready ($version)"
