#!/usr/bin/env bash
# CI check of the Debian package (issue 15): build it, list it, unpack it into a scratch
# root and check what an operator gets: /usr/bin/gsup (and no test fixture), the unit
# passing `systemd-analyze verify` against the unpacked tree, the man page, the three
# completions (bash loads its own), the example config.
set -euo pipefail
cd "$(dirname "$0")/.."

packaging/build-deb.sh
deb=$(ls -t target/debian/gsup_*.deb | head -1)
contents=$(dpkg-deb --contents "$deb")
fail() { echo "check-deb.sh: $deb: $*" >&2; exit 1; }
for path in \
    ./usr/bin/gsup \
    ./usr/lib/systemd/system/gsup@.service \
    ./usr/share/man/man1/gsup.1.gz \
    ./usr/share/bash-completion/completions/gsup \
    ./usr/share/zsh/vendor-completions/_gsup \
    ./usr/share/fish/vendor_completions.d/gsup.fish \
    ./usr/share/doc/gsup/supervisor.example.toml; do
    grep -q " $path\$" <<<"$contents" || fail "no $path in:
$contents"
done
if grep -q 'gsup-test-child' <<<"$contents"; then fail "ships the test fixture"; fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# The scratch root is a system with systemd's own units (verify needs sysinit.target and
# friends) and nothing of gsup but the package.
mkdir -p "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
dpkg-deb -x "$deb" "$root"
unit="$root/usr/lib/systemd/system/gsup@.service"
grep -q '^ExecStart=/usr/bin/gsup run$' "$unit" || fail "ExecStart is not /usr/bin/gsup run"
grep -q '^Environment=GSUP_CONFIG=/etc/gsup/%i.toml$' "$unit" || fail "not one instance per /etc/gsup/NAME.toml"
# verify resolves ExecStart= (/usr/bin/gsup) inside the root; it exits 0 on unknown keys,
# so anything it prints is a failure too.
complaints=$(systemd-analyze verify --root="$root" --man=no gsup@api.service 2>&1) ||
    fail "systemd-analyze verify failed: $complaints"
[ -z "$complaints" ] || fail "systemd-analyze verify complained: $complaints"
"$root/usr/bin/gsup" --version >/dev/null || fail "the packaged gsup does not run"
zcat "$root/usr/share/man/man1/gsup.1.gz" | grep -q '^\.TH' || fail "the man page is not roff"
bash -c 'source "$1" && complete -p gsup >/dev/null' _ "$root/usr/share/bash-completion/completions/gsup" ||
    fail "the bash completion does not load"
echo "check-deb.sh: $deb ok"
