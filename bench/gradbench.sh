#!/usr/bin/env bash
# GradBench's evals against chainrule-gradbench, the reference `manual`
# tool, and (with PEERS_PY set) GradBench's PyTorch and JAX tools on the
# evals they implement, one after the other in one run (issue 17). GB is a
# GradBench checkout set up as ../shared/gradbench/HOWTO.md says (never part
# of this repository), with the JAX timing fix described in BENCHMARKS.md;
# the logs go to $GB/runs, the tables to stdout.
#
#   GB=/path/to/gradbench [PEERS_PY=/path/to/venv/bin/python] \
#     [EVALS="kmeans lse"] bench/gradbench.sh [--min-runs N --min-seconds S]
#
# EVALS names the evals to run (all when unset); the tables cover every
# log in $GB/runs, so a partial run updates its evals' rows.
#
# Every tool runs on one thread, as GradBench runs them: ours without
# --multithreaded, manual without OpenMP, JAX pinned to one CPU by its
# tool, PyTorch with OMP_NUM_THREADS=1. lstm runs with -c 1024 4096 and ht
# with --max 11 (the stored copy lacks the longer text and hand12); PyTorch
# only on ba1 and hand1-2 (beyond, one answer takes minutes). particle also
# runs with --graph-loops (its flight through control::while_loop). Never
# run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
gb=${GB:?set GB to a GradBench checkout}
cargo build --release -q -p chainrule-gradbench
py=$gb/.venv/bin/python
runs=${*:---min-runs 3 --min-seconds 0.2}
declare -A tool=(
  [chainrule]=$repo/target/release/chainrule-gradbench
  [chainrule-graph]="$repo/target/release/chainrule-gradbench --graph-loops"
  [manual]="$py python/gradbench/gradbench/cpp.py manual"
)
if [ -n "${PEERS_PY:-}" ]; then
  tool[pytorch]="env OMP_NUM_THREADS=1 $PEERS_PY python/gradbench/gradbench/tools/pytorch/run.py"
  tool[jax]="$PEERS_PY python/gradbench/gradbench/tools/jax/run.py"
fi
# eval and its size options | the tools that implement it | PyTorch's sizes
evals=(
  "lstm -c 1024 4096|chainrule manual pytorch|"
  "ht --max 11|chainrule manual pytorch|ht --max 2"
  "kmeans|chainrule manual pytorch jax|"
  "gmm|chainrule manual pytorch jax|"
  "lse|chainrule manual pytorch jax|"
  "llsq|chainrule manual jax|"
  "ode|chainrule manual jax|"
  "ba --min 1 --max 14|chainrule manual pytorch|ba --min 1 --max 1"
  "det|chainrule manual|"
  "particle|chainrule chainrule-graph|"
  "saddle|chainrule|"
)
cd "$gb"
mkdir -p runs
for entry in "${evals[@]}"; do
  IFS='|' read -r e tools torch_e <<< "$entry"
  name=${e%% *}
  case " ${EVALS:-$name} " in *" $name "*) ;; *) continue ;; esac
  for t in $tools; do
    [ -n "${tool[$t]:-}" ] || continue
    args=$e
    [ "$t" = pytorch ] && [ -n "$torch_e" ] && args=$torch_e
    code=0
    ./target/release/gradbench run -o "runs/time-$name-$t.jsonl" --timeout 600 \
      --eval "$py python/gradbench/gradbench/evals/$name/run.py ${args#"$name"} $runs" \
      --tool "${tool[$t]}" > "runs/time-$name-$t.out" 2>&1 || code=$?
    echo "$name $t: exit $code" >&2
  done
done
python3 "$repo/bench/gradbench-table.py" runs
