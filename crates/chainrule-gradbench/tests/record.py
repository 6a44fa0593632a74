"""Records the protocol test's fixtures: each eval's messages on small
inputs, with the answers of GradBench's reference tool (`manual`) beside
them. Run once from a GradBench checkout built as HOWTO.md says:

    cd $GB && python3 /path/to/chainrule/crates/chainrule-gradbench/tests/record.py [FIXTURE…]

Writes tests/fixtures/<fixture>.jsonl (all of them if none is named), one {"message", "expected"} per
evaluate message. The test (protocol.rs) feeds the messages to
chainrule-gradbench and compares with GradBench's tolerance; CI needs
neither Python nor GradBench.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.abspath(".venv/bin/python")
# fixture name: (eval, size options)
SMALL = {
    "hello": ("hello", []),
    "lse": ("lse", ["-n", "100", "1000"]),
    "llsq": ("llsq", ["-n", "16", "64", "-m", "8"]),
    "det": ("det", ["-l", "4", "6"]),
    "ode": ("ode", ["-n", "10", "-s", "1", "10"]),
    "gmm": ("gmm", ["-d", "2", "3", "-k", "3", "-n", "50"]),
    "kmeans": ("kmeans", ["-k", "4", "-n", "40", "-d", "3"]),
    "lstm": ("lstm", ["-l", "2", "-c", "16"]),
    "ba": ("ba", ["--min", "1", "--max", "1"]),
    "ht": ("ht", ["--min", "1", "--max", "1", "--model", "small"]),
    "ht-simple": ("ht", ["--min", "1", "--max", "1", "--model", "small", "--variant", "simple"]),
}

chosen = sys.argv[1:] or list(SMALL)
for name in chosen:
    eval_, args = SMALL[name]
    runs = [] if name == "hello" else ["--min-seconds", "0"]
    log = f"runs/record-{name}.jsonl"
    command = " ".join([PY, f"python/gradbench/gradbench/evals/{eval_}/run.py", *args, *runs])
    subprocess.run(
        ["./target/release/gradbench", "run", "-o", log, "--eval", command,
         "--tool", f"{PY} python/gradbench/gradbench/cpp.py manual"],
        check=True,
    )
    messages, answers = {}, {}
    for line in open(log):
        entry = json.loads(line)
        if "message" in entry and entry["message"].get("kind") == "evaluate":
            messages[entry["message"]["id"]] = entry["message"]
        elif "response" in entry and entry["response"].get("id") in messages:
            answers[entry["response"]["id"]] = entry["response"]["output"]
    with open(os.path.join(HERE, "fixtures", f"{name}.jsonl"), "w") as out:
        for i, message in sorted(messages.items()):
            out.write(json.dumps({"message": message, "expected": answers[i]}) + "\n")
    print(name, len(messages), "messages", file=sys.stderr)
