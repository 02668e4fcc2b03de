#!/usr/bin/env bash
# Install real Krita 5 (Debian 12 ships 5.1.5), the PyQt5 its Python plug-ins use, and Xvfb, for the host tests in
# tests/test_krita_*.py. Idempotent: exits at once when all three are there; runs `apt-get update` only when the
# install fails without it (a fresh machine with empty package lists).
set -euo pipefail
have() { command -v krita >/dev/null 2>&1 && command -v kritarunner >/dev/null 2>&1 &&
         command -v xvfb-run >/dev/null 2>&1 && /usr/bin/python3 -c "import PyQt5.QtCore" >/dev/null 2>&1; }
if have; then
  echo "setup_krita: krita, python3-pyqt5 and xvfb are already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
packages=(krita python3-pyqt5 xvfb)
if ! $SUDO apt-get install -y "${packages[@]}"; then
  $SUDO apt-get update
  $SUDO apt-get install -y "${packages[@]}"
fi
have || { echo "setup_krita: krita, kritarunner, xvfb-run or PyQt5 for /usr/bin/python3 still missing" >&2; exit 1; }
echo "setup_krita: installed ${packages[*]}"
