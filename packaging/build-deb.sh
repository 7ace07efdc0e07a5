#!/usr/bin/env bash
# Builds the Debian package target/debian/gsup_<version>-1_<arch>.deb (DESIGN §1):
# /usr/bin/gsup, the template unit gsup@.service (one instance per /etc/gsup/NAME.toml),
# the man page and the bash, zsh and fish completions, the example config. The man page
# and the completions come from the binary just built (`gsup man`, `gsup completions
# SHELL`), so they never drift from its --help. Needs cargo-deb (`cargo install cargo-deb
# --locked`). Extra arguments go to `cargo build` (e.g. --target).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "$CARGO_TARGET_DIR" != target ]; then
    echo "build-deb.sh: the package's assets are under ./target; unset CARGO_TARGET_DIR" >&2
    exit 2
fi
command -v cargo-deb >/dev/null || {
    echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 2
}

# Release, without the test fixture (default features off), as cargo-deb would build it.
cargo build --release --locked --no-default-features --bin gsup "$@"
gsup=target/release/gsup

out=target/packaging
rm -rf "$out"
mkdir -p "$out/completions"
"$gsup" man > "$out/gsup.1"
gzip -9n -f "$out/gsup.1"
"$gsup" completions bash > "$out/completions/gsup"
"$gsup" completions zsh > "$out/completions/_gsup"
"$gsup" completions fish > "$out/completions/gsup.fish"

cargo deb --no-build --locked
