#!/usr/bin/env bash
# Runs chainrule-bench and the peers' harnesses (../shared/bench) on the same
# workloads, one after another in one run, appending every JSON line to OUT.
#
#   bench/side-by-side.sh OUT.jsonl "ex1 ex2 chain mlp" 1
#
# Needs: PEERS_PY, a Python with torch and jax (see ../shared/bench/peers/README.md),
# and PEERS_RUST, the built peers-rust binary (../shared/bench/peers-rust/README.md).
# Never run in CI: the peers take a 4 GB install and a 25-minute build.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results.jsonl}
workloads=${2:-"ex1 ex2 chain mlp"}
threads=${3:-1}
shared=../shared/bench
py=${PEERS_PY:?set PEERS_PY to the Python of the peers venv}
rust=${PEERS_RUST:?set PEERS_RUST to the peers-rust binary}
cargo build --release -q -p chainrule-bench
for w in $workloads; do
  reps=2
  [ "$w" = chain ] && reps=1
  ./target/release/chainrule-bench --workload "$w" --threads "$threads" --reps $reps | tee -a "$out"
  for lib in torch jax; do
    "$py" "$shared/peers/peers.py" --lib $lib --workload "$w" --threads "$threads" --mode reverse --reps $reps | tee -a "$out"
  done
  for lib in candle burn; do
    "$rust" --lib $lib --workload "$w" --threads "$threads" --mode reverse --reps $reps | tee -a "$out"
  done
done
