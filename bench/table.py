#!/usr/bin/env python3
"""Prints the JSON lines the bench scripts append to BENCH_OUT as one table: a row per
metric, a column per prefix, each cell `value (ratio to tini)`. Used by run-all.sh."""

import json
import sys


def main():
    order, metrics, prefixes = [], {}, []
    with open(sys.argv[1]) as f:
        for line in f:
            row = json.loads(line)
            if row["metric"] not in metrics:
                order.append(row["metric"])
                metrics[row["metric"]] = {}
            if row["prefix"] not in prefixes:
                prefixes.append(row["prefix"])
            metrics[row["metric"]][row["prefix"]] = row["value"]

    def cell(metric, prefix):
        value = metrics[metric].get(prefix)
        if value is None:
            return "never" if prefix in metrics[metric] else "-"
        tini = metrics[metric].get("tini")
        # Small figures (CPU %, ms) keep three decimals: 0.1 would hide 0.103 vs 0.112.
        if isinstance(value, float):
            text = f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"
        else:
            text = str(value)
        if tini and prefix != "tini":
            text += f" ({value / tini:.2f}x)"
        return text

    width = max(len(m) for m in order) + 2
    print(f"{'metric':<{width}}" + "".join(f"{p:>18}" for p in prefixes))
    for metric in order:
        print(f"{metric:<{width}}" + "".join(f"{cell(metric, p):>18}" for p in prefixes))
    print("(x) = ratio to tini; startup added µs = median minus bare `true`.")


if __name__ == "__main__":
    main()
