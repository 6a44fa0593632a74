#!/usr/bin/env bash
# The `linalg` speed row: chainrule-bench and PyTorch (bench/linalg.py) on
# the same inputs, one after the other in one run, JSON lines appended to OUT.
#
#   PEERS_PY=/path/to/python bench/linalg-side-by-side.sh OUT.jsonl 1
#   python3 bench/table.py OUT.jsonl
#
# Never run in CI (PyTorch is a 4 GB install).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-linalg-results.jsonl}
threads=${2:-1}
py=${PEERS_PY:?set PEERS_PY to a Python with torch}
cargo build --release -q -p chainrule-bench
for size in solve-100 solve-1000 cholesky-100 cholesky-1000; do
  ./target/release/chainrule-bench --workload linalg --size "$size" --threads "$threads" --reps 2 | tee -a "$out"
  for _ in 1 2; do
    "$py" bench/linalg.py --size "$size" --threads "$threads" | tee -a "$out"
  done
done
