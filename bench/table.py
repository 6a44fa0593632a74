#!/usr/bin/env python3
"""Markdown table of a side-by-side run: median ms (peak RSS MiB) per library,
and each peer's time divided by chainrule's (above 1: chainrule is faster).

    python3 bench/table.py bench-results.jsonl
"""
import json
import sys

LIBS = ["chainrule", "torch", "jax", "candle", "burn"]


def main(path):
    rows = {}
    for line in open(path):
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if d.get("status", "ok") != "ok":
            continue
        key = (d["workload"], d["size"], d["mode"], d["threads"])
        libs = rows.setdefault(key, {})
        # Several runs of one library: the lowest median stands.
        if d["lib"] not in libs or d["median_ms"] < libs[d["lib"]]["median_ms"]:
            libs[d["lib"]] = d
    print("| workload | size | mode | threads | " + " | ".join(LIBS) + " | " +
          " | ".join(f"{p}/ours" for p in LIBS[1:]) + " |")
    print("|" + "---|" * (4 + 2 * len(LIBS) - 1))
    for key, libs in rows.items():
        ours = libs.get("chainrule")
        cells = []
        for lib in LIBS:
            d = libs.get(lib)
            if d is None:
                cells.append("–")
                continue
            ms = d["median_ms"]
            t = f"{ms * 1000:.2f} µs" if ms < 0.1 else f"{ms:.3f} ms"
            if "ns_per_op" in d:
                t += f" ({d['ns_per_op']:.0f} ns/op)"
            cells.append(f"{t} / {d['peak_rss_mb']:.0f} MiB")
        ratios = []
        for lib in LIBS[1:]:
            d = libs.get(lib)
            ratios.append(f"{d['median_ms'] / ours['median_ms']:.2f}×" if d and ours else "–")
        w, size, mode, threads = key
        print(f"| {w} | {size} | {mode} | {threads} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
