#!/usr/bin/env python3
"""PyTorch's side of chainrule-bench's `linalg` workload (f64): the same
inputs (SplitMix64, seed 42, as ../shared/bench/WORKLOADS.md draws them),
the same objective and gradient, timed the same way, printed as the same
JSON line.

    solve-n:    sum(solve(A, b)), A = X + 2 sqrt(n) I, grads in A and b
    cholesky-n: sum(cholesky(S)), S = X X^T / n + I, grad in S

    python bench/linalg.py --size solve-1000 --threads 1
"""
import argparse
import json
import os
import resource
import statistics
import time

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self):
        self.state = 42

    def uniform(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        return (z >> 40) * 2.0 ** -24 * 2.0 - 1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", required=True)
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()
    import torch
    if args.threads == "1":
        torch.set_num_threads(1)
    op, n = args.size.split("-")
    n = int(n)
    g = SplitMix64()
    x = torch.tensor([g.uniform() for _ in range(n * n)], dtype=torch.float64).reshape(n, n)
    if op == "solve":
        inputs = [x + 2.0 * n ** 0.5 * torch.eye(n, dtype=torch.float64),
                  torch.tensor([g.uniform() for _ in range(n)], dtype=torch.float64)]
        objective = lambda a, b: torch.linalg.solve(a, b).sum()
    else:
        inputs = [x @ x.T / n + torch.eye(n, dtype=torch.float64)]
        objective = lambda s: torch.linalg.cholesky(s).sum()

    def step():
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        value = objective(*leaves)
        grads = torch.autograd.grad(value, leaves)
        return value.item(), sum(gr.sum().item() for gr in grads)

    t0 = time.perf_counter()
    value, grad_sum = step()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(2):
        step()
    last = first_ms
    calls = min(max(int(1000.0 / max(last, 1e-6)), 20), 20000)
    ms = []
    for _ in range(calls):
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({
        "lib": "torch", "version": torch.__version__, "workload": "linalg",
        "size": args.size, "mode": "reverse", "threads": args.threads,
        "nthreads": torch.get_num_threads(), "status": "ok",
        "median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
        "calls": len(ms), "warmup": 3, "first_call_ms": first_ms,
        "load1_at_start": os.getloadavg()[0],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "value": value, "grad_sum": grad_sum,
    }), flush=True)


if __name__ == "__main__":
    main()
