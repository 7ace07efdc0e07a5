#!/usr/bin/env bash
# Soak run (issue 12 item 8; bench/README.md "Soak"): builds the release gsup and
# examples/drain_server if missing, then runs bench/soak.py with any arguments given.
# Needs wrk (bench/setup.sh). Loopback only; bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "soak.sh: wrk missing (run bench/setup.sh)" >&2; exit 1; }
[ -x target/release/gsup ] || cargo build --release --bin gsup
[ -x target/release/examples/drain_server ] || cargo build --release --example drain_server
exec python3 bench/soak.py "$@"
