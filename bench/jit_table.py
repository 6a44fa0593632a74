#!/usr/bin/env python3
"""Markdown table of the compiled modes (issue 13) beside JAX `jit` and
PyTorch eager, from one side-by-side run:

    python3 bench/jit_table.py bench/results/2026-12-02-issue13-threads1.jsonl
"""
import json
import sys

CASES = [  # workload, size, our eager mode, our jit mode, the peers' mode
    *[("chain", k, m, "jit-" + m, m) for k in ["2500", "25000", "250000"] for m in ["reverse", "forward"]],
    ("ex1", "100", "reverse", "jit", "reverse"),
    ("ex2", "1000x100", "reverse", "jit", "reverse"),
    ("ex2", "4096x1024", "reverse", "jit", "reverse"),
    *[("jac", s, m, "jit-" + m, m) for s in ["8x256", "256x8"]
      for m in ["forward", "reverse", "reverse-batched"]],
    *[("hessian", "100", m, "jit-" + m, m) for m in ["forward-over-reverse", "reverse-over-reverse"]],
    ("mlp", "784-512-256-10/b128", "reverse", "jit", "reverse"),
    ("gmm", "d10-k25-n1000", "reverse", "jit", "reverse"),
    ("gmm", "d10-k25-n10000", "reverse", "jit", "reverse"),
]


def fmt(ms):
    return "–" if ms is None else (f"{ms * 1000:.1f} µs" if ms < 1 else f"{ms:.2f} ms")


def main(path):
    rows = [d for d in (json.loads(l) for l in open(path) if l.startswith("{")) if d.get("status", "ok") == "ok"]

    def get(lib, w, s, m):
        return next((d for d in rows if (d["lib"], d["workload"], d["size"], d["mode"]) == (lib, w, s, m)), None)

    print("| workload | size | mode | eager | graph, interpreted | jit | jit compile | JAX `jit` | JAX compile | PyTorch | JAX/jit | PyTorch/jit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for w, s, eager, jit, peer in CASES:
        e, g, j = get("chainrule", w, s, eager), get("chainrule", w, s, "graph"), get("chainrule", w, s, jit)
        jx, t = get("jax", w, s, peer), get("torch", w, s, peer)
        if not j:
            continue
        med = lambda d: d.get("median_ms") if d else None
        ratio = lambda d: f"{d['median_ms'] / j['median_ms']:.2f}×" if d and 'median_ms' in d else "–"
        jc = f"{jx['compile_ms']:.0f} ms" if jx and "compile_ms" in jx else "–"
        print(f"| {w} | {s} | {jit} | {fmt(med(e))} | {fmt(med(g))} | {fmt(j['median_ms'])} | "
              f"{j['compile_ms']:.1f} ms | {fmt(med(jx))} | {jc} | {fmt(med(t))} | {ratio(jx)} | {ratio(t)} |")


if __name__ == "__main__":
    main(sys.argv[1])
