#!/usr/bin/env bash
# Start-up cost: `PREFIX true` under hyperfine, for each supervisor prefix given.
#   bench/startup.sh "" "tini --" "dumb-init" "catatonit --" "target/release/gsup run --"
# "" is bare `true`, the baseline. Prints medians, the time each prefix adds over bare
# `true`, and that added time as a ratio of tini's. With BENCH_OUT set, also appends one
# JSON line per figure to that file (run-all.sh collects them).
set -euo pipefail
WARMUP=${WARMUP:-20}
RUNS=${RUNS:-300}
[ $# -gt 0 ] || { echo "usage: $0 PREFIX..." >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "$0: hyperfine missing (bench/setup.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

i=0
for prefix in "$@"; do
    # -N: no shell in between, so the figure is fork+exec of the supervisor and `true`.
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$work/$i.json" "${prefix:+$prefix }true" >/dev/null 2>"$work/$i.err" \
        || { echo "$0: hyperfine failed for '$prefix':" >&2; cat "$work/$i.err" >&2; exit 1; }
    printf '%s\n' "$prefix" >"$work/$i.prefix"
    i=$((i + 1))
done

python3 - "$work" "$i" <<'PY'
import json, os, sys
work, count = sys.argv[1], int(sys.argv[2])
rows = []
for i in range(count):
    prefix = open(f"{work}/{i}.prefix").read().rstrip("\n")
    times = json.load(open(f"{work}/{i}.json"))["results"][0]["times"]
    times.sort()
    median = times[len(times) // 2] * 1e6  # µs
    rows.append((prefix, median))
label = lambda p: "bare" if not p else os.path.basename(p.split()[0])
bare = next((m for p, m in rows if p == ""), None)
tini = next((m for p, m in rows if label(p) == "tini"), None)
print(f"{'prefix':<28} {'median µs':>10} {'added µs':>9} {'added/tini':>10}")
out = os.environ.get("BENCH_OUT")
for prefix, median in rows:
    added = median - bare if bare is not None else None
    tini_added = tini - bare if (tini is not None and bare is not None) else None
    ratio = added / tini_added if (added is not None and tini_added) else None
    print(f"{label(prefix) + ' (' + (prefix or 'true') + ')':<28} {median:>10.0f} "
          f"{added if added is not None else float('nan'):>9.0f} "
          f"{ratio if ratio is not None else float('nan'):>10.2f}")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"metric": "startup median µs", "prefix": label(prefix), "value": median}) + "\n")
            if added is not None:
                f.write(json.dumps({"metric": "startup added µs", "prefix": label(prefix), "value": added}) + "\n")
PY
