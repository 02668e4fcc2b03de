#!/usr/bin/env bash
# Build or reuse the Debian roots with real GIMP for tests/test_gimp_host.py: GIMP 3.0.4 (trixie) and GIMP 3.2.6
# (sid). Debian 12 only has GIMP 2.10, which cannot run Python 3 plug-ins; see setup_root.sh (cache, stamps, env).
# Arguments choose roots (default both): tests/hosts/setup_gimp.sh gimp-sid
set -euo pipefail
[ $# -gt 0 ] || set -- gimp-trixie gimp-sid
exec "$(dirname "$0")/setup_root.sh" "$@"
