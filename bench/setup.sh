#!/usr/bin/env bash
# Installs the benchmark peers and hyperfine from Debian (bookworm names, checked with
# apt-cache policy: tini 0.19.0, dumb-init 1.2.5, catatonit 0.1.7, hyperfine 1.15.0,
# wrk 4.1.0 for reload.py).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (apt-get, and orphans.sh needs unshare --pid)" >&2
    exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y tini dumb-init catatonit hyperfine supervisor wrk
for tool in tini dumb-init catatonit hyperfine wrk unshare python3; do
    command -v "$tool" >/dev/null || { echo "setup.sh: $tool missing after install" >&2; exit 1; }
done
