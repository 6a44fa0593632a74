"""Tables of GradBench runs, one per eval: for each input, chainrule's
primal and derivative times (median of the `evaluate` timings), the
derivative/primal ratio, and each other tool's derivative time and primal
time over ours.

    python3 bench/gradbench-table.py RUNS_DIR

reads RUNS_DIR/time-<eval>-<tool>.jsonl (the `-o` logs of `gradbench run`,
see bench/gradbench.sh) and prints Markdown.
"""

import glob
import json
import os
import statistics
import sys

PRIMAL = {"primal", "objective", "cost"}


def medians(path):
    """{(description, function): median seconds} of one log, and validity."""
    messages, out, valid = {}, {}, True
    for line in open(path):
        entry = json.loads(line)
        m = entry.get("message")
        if m and m.get("kind") == "evaluate":
            messages[m["id"]] = (m.get("description", ""), m["function"])
        elif m and m.get("kind") == "analysis" and not m.get("valid", True):
            valid = False
        r = entry.get("response")
        if r and r.get("id") in messages and r.get("success"):
            ns = [t["nanoseconds"] for t in r.get("timings", []) if t["name"] == "evaluate"]
            if ns:
                out[messages[r["id"]]] = statistics.median(ns) / 1e9
    return out, valid


def ms(s):
    return "–" if s is None else f"{s * 1e3:.3g} ms" if s >= 1e-4 else f"{s * 1e6:.3g} µs"


def main(root):
    logs = {}
    for path in glob.glob(os.path.join(root, "time-*-*.jsonl")):
        _, eval_, tool = os.path.basename(path)[:-6].split("-", 2)
        logs.setdefault(eval_, {})[tool] = medians(path)
    for eval_, tools in sorted(logs.items()):
        ours, ok = tools.get("chainrule", ({}, False))
        peers = sorted(t for t in tools if t != "chainrule")
        print(f"\n#### {eval_}" + ("" if ok else " (an answer was invalid)") + "\n")
        head = ["input", "primal", "derivative", "derivative / primal"]
        head += [f"{p} derivative / ours" + ("" if tools[p][1] else " (invalid)") for p in peers]
        head += [f"{p} primal / ours" for p in peers]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        inputs = []
        for desc, fn in ours:
            if desc not in inputs:
                inputs.append(desc)
        for desc in inputs:
            prim = next((v for (d, f), v in ours.items() if d == desc and f in PRIMAL), None)
            der = next((v for (d, f), v in ours.items() if d == desc and f not in PRIMAL), None)
            row = [desc, ms(prim), ms(der), f"{der / prim:.2f}" if prim and der else "–"]
            for primal, ours_t in [(False, der), (True, prim)]:
                for p in peers:
                    theirs = tools[p][0]
                    pt = next(
                        (v for (d, f), v in theirs.items() if d == desc and (f in PRIMAL) == primal),
                        None,
                    )
                    row.append(f"{pt / ours_t:.2f}×" if pt and ours_t else "–")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
