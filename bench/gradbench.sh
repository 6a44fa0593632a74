#!/usr/bin/env bash
# GradBench's evals against chainrule-gradbench and the reference `manual`
# tool, one after the other in one run (issue 17). GB is a GradBench
# checkout set up as ../shared/gradbench/HOWTO.md says (never part of this
# repository); the logs go to $GB/runs, the tables to stdout.
#
#   GB=/path/to/gradbench bench/gradbench.sh [--min-runs N --min-seconds S]
#
# lstm runs with -c 1024 4096 (the stored copy lacks the longest text), ba
# with its 14 default files. Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
gb=${GB:?set GB to a GradBench checkout}
cargo build --release -q -p chainrule-gradbench
ours=$repo/target/release/chainrule-gradbench
py=$gb/.venv/bin/python
manual="$py python/gradbench/gradbench/cpp.py manual"
runs=${*:---min-runs 3 --min-seconds 0.2}
cd "$gb"
mkdir -p runs
for e in lse llsq ode kmeans gmm "lstm -c 1024 4096" "ba --min 1 --max 14" det; do
  set -- $e
  for tool in chainrule manual; do
    cmd=$ours
    [ "$tool" = manual ] && cmd=$manual
    code=0
    ./target/release/gradbench run -o "runs/time-$1-$tool.jsonl" --timeout 600 \
      --eval "$py python/gradbench/gradbench/evals/$1/run.py ${e#"$1"} $runs" \
      --tool "$cmd" > "runs/time-$1-$tool.out" 2>&1 || code=$?
    echo "$1 $tool: exit $code" >&2
  done
done
python3 "$repo/bench/gradbench-table.py" runs
