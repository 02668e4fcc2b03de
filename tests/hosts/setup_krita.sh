#!/usr/bin/env bash
# Real Krita for the host tests in tests/test_krita_*.py: Krita 5.1.5 on this Debian 12 system (apt: krita, the PyQt5
# its Python plug-ins use, and Xvfb), then Krita 5.2.9 (trixie), 5.3.4.1 (sid) and 6.0.4.1 (experimental, Qt6) in
# roots built by setup_root.sh. Idempotent: apt runs only when something is missing, and `apt-get update` only when
# the install fails without it (a fresh machine with empty package lists). Arguments choose roots (default all three;
# "none" for the system's Krita alone).
set -euo pipefail
have() { command -v krita >/dev/null 2>&1 && command -v kritarunner >/dev/null 2>&1 &&
         command -v xvfb-run >/dev/null 2>&1 && /usr/bin/python3 -c "import PyQt5.QtCore" >/dev/null 2>&1; }
roots=("$@")
[ $# -gt 0 ] || roots=(krita-trixie krita-sid krita-experimental)
[ "${roots[*]}" != none ] || roots=()
if have; then
  echo "setup_krita: krita, python3-pyqt5 and xvfb are already installed"
  [ ${#roots[@]} -eq 0 ] || exec "$(dirname "$0")/setup_root.sh" "${roots[@]}"
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
[ ${#roots[@]} -eq 0 ] || exec "$(dirname "$0")/setup_root.sh" "${roots[@]}"
