#!/usr/bin/env bash
# The layer speed rows (issue 16): chainrule-bench and PyTorch eager
# (bench/layers.py) on the same inputs, one after the other in one run,
# JSON lines appended to OUT.
#
#   PEERS_PY=/path/to/python bench/layers-side-by-side.sh OUT.jsonl 1|all
#   python3 bench/table.py OUT.jsonl
#
# Never run in CI (PyTorch is a 4 GB install).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-layers-results.jsonl}
threads=${2:-1}
py=${PEERS_PY:?set PEERS_PY to a Python with torch}
cargo build --release -q -p chainrule-bench
for case in "lenet b64" "transformer b32-s64-d128-h4"; do
  set -- $case
  ./target/release/chainrule-bench --workload "$1" --size "$2" --threads "$threads" --reps 2 | tee -a "$out"
  for _ in 1 2; do
    "$py" bench/layers.py --workload "$1" --size "$2" --threads "$threads" | tee -a "$out"
  done
done
