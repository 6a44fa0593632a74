#!/usr/bin/env python3
"""PyTorch eager's side of chainrule-bench's layer workloads (f32): the same
inputs (SplitMix64, seed 42, a fresh generator per workload, as
../shared/bench/WORKLOADS.md draws them), the same training step, timed the
same way, printed as the same JSON line.

One call is one training step: zero the grads, forward, loss, backward, plain
SGD (p -= 0.01 * p.grad). The printed value and grad_sum are the loss and the
sum of every parameter's grad.sum() from the first step (before any update).

    lenet b64:
        x (64,1,28,28), labels (64), conv1 (6,1,5,5)+b, conv2 (16,6,5,5)+b,
        fc 256->120->84->10 (h = x W + b); conv-relu-pool2 twice, flatten,
        relu, relu, softmax cross-entropy (mean)
    transformer b32-s64-d128-h4:
        one pre-LN block: x + attn(LN1(x)) (causal, 4 heads of 32), then
        h + W2 gelu_tanh(W1 LN2(h)); loss = mean(out^2)

    python bench/layers.py --workload lenet --size b64 --threads 1
    python bench/layers.py --workload transformer --size b32-s64-d128-h4 --threads all
"""
import argparse
import json
import math
import os
import resource
import statistics
import time

MASK = (1 << 64) - 1
LR = 0.01


class SplitMix64:
    def __init__(self):
        self.state = 42

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next_u64() >> 40) * 2.0 ** -24 * 2.0 - 1.0

    def label(self):
        return (self.next_u64() >> 32) % 10


def draw(torch, g, shape, scale=1.0):
    """math.prod(shape) values, row-major, times scale (in f64), then f32."""
    n = math.prod(shape)
    return torch.tensor([g.uniform() * scale for _ in range(n)],
                        dtype=torch.float32).reshape(shape)


def lenet(torch, F, size):
    assert size == "b64", size
    b = 64
    g = SplitMix64()
    x = draw(torch, g, (b, 1, 28, 28))
    labels = torch.tensor([g.label() for _ in range(b)], dtype=torch.int64)
    params = []
    for shape, fan_in in (((6, 1, 5, 5), 25), ((6,), 25),
                          ((16, 6, 5, 5), 150), ((16,), 150),
                          ((256, 120), 256), ((120,), 256),
                          ((120, 84), 120), ((84,), 120),
                          ((84, 10), 84), ((10,), 84)):
        params.append(draw(torch, g, shape, 1.0 / math.sqrt(fan_in)))
    w1, b1, w2, b2, f1, c1, f2, c2, f3, c3 = params

    def loss_fn():
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1)), 2)      # (64, 6, 12, 12)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2)), 2)      # (64, 16, 4, 4)
        h = h.reshape(b, 256)
        h = F.relu(h @ f1 + c1)
        h = F.relu(h @ f2 + c2)
        return F.cross_entropy(h @ f3 + c3, labels)
    return params, loss_fn


def transformer(torch, F, size):
    bs, ss, ds, hs = size.split("-")
    B, S, E, H = int(bs[1:]), int(ss[1:]), int(ds[1:]), int(hs[1:])
    assert (B, S, E, H) == (32, 64, 128, 4), size
    Dh, M = E // H, 4 * E
    g = SplitMix64()
    x = draw(torch, g, (B, S, E))
    se, sm = 1.0 / math.sqrt(E), 1.0 / math.sqrt(M)
    wqkv, bqkv = draw(torch, g, (E, 3 * E), se), draw(torch, g, (3 * E,), se)
    wo, bo = draw(torch, g, (E, E), se), draw(torch, g, (E,), se)
    w1, b1 = draw(torch, g, (E, M), se), draw(torch, g, (M,), se)
    w2, b2 = draw(torch, g, (M, E), sm), draw(torch, g, (E,), sm)
    ln1_w, ln1_b = torch.ones(E), torch.zeros(E)
    ln2_w, ln2_b = torch.ones(E), torch.zeros(E)
    params = [wqkv, bqkv, wo, bo, w1, b1, w2, b2, ln1_w, ln1_b, ln2_w, ln2_b]

    def heads(t):
        return t.reshape(B, S, H, Dh).transpose(1, 2)          # (B, H, S, Dh)

    def loss_fn():
        a = F.layer_norm(x, (E,), ln1_w, ln1_b, 1e-5)
        q, k, v = (a @ wqkv + bqkv).split(E, dim=-1)
        o = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        o = o.transpose(1, 2).reshape(B, S, E)
        h = x + o @ wo + bo
        m = F.layer_norm(h, (E,), ln2_w, ln2_b, 1e-5)
        out = h + F.gelu(m @ w1 + b1, approximate="tanh") @ w2 + b2
        return (out * out).mean()
    return params, loss_fn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True, choices=["lenet", "transformer"])
    ap.add_argument("--size", required=True)
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F
    if args.threads == "1":
        torch.set_num_threads(1)
    build = lenet if args.workload == "lenet" else transformer
    params, loss_fn = build(torch, F, args.size)
    for p in params:
        p.requires_grad_(True)

    def step():
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        grads = [p.grad for p in params]
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
        return loss, grads

    t0 = time.perf_counter()
    loss, grads = step()
    first_ms = (time.perf_counter() - t0) * 1e3
    # Summarized outside the timed calls; p.grad is replaced (not written into)
    # by the next step, so these are still the first step's gradients.
    value, grad_sum = loss.item(), sum(gr.sum().item() for gr in grads)
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
        "lib": "torch", "version": torch.__version__, "workload": args.workload,
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
