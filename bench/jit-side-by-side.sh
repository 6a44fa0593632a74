#!/usr/bin/env bash
# The compiled (jit) modes of issue 13 beside JAX jit and PyTorch eager,
# 1 thread, each case in one sequence. Never in CI (the peers are heavy).
cd "$(dirname "$0")/.."
out=${1:?usage: bench/jit-side-by-side.sh OUT.jsonl}
: > $out
cargo build --release -q -p chainrule-bench
B=./target/release/chainrule-bench
PY=${PEERS_PY:?set PEERS_PY to the Python of the peers venv}
P=../shared/bench/peers/peers.py
export RAYON_NUM_THREADS=1
# WORKLOADS (default: all) picks some, e.g. WORKLOADS="chain" bench/jit-side-by-side.sh OUT
for spec in "chain 2500" "chain 25000" "chain 250000" "ex1 100" "ex2 1000x100" "ex2 4096x1024" "jac 8x256" "jac 256x8" "hessian 100" "mlp 784-512-256-10/b128" "gmm d10-k25-n1000" "gmm d10-k25-n10000"; do
  set -- $spec
  case " ${WORKLOADS:-$1} " in *" $1 "*) ;; *) continue;; esac
  for m in $(case $1 in chain) echo "jit-reverse jit-forward";; ex1|ex2) echo "reverse graph jit";; mlp) echo "reverse graph jit";; jac) echo "forward reverse reverse-batched jit-forward jit-reverse jit-reverse-batched";; hessian) echo "forward-over-reverse reverse-over-reverse jit-forward-over-reverse jit-reverse-over-reverse";; gmm) echo "reverse jit";; esac); do
    timeout 300 $B --workload $1 --size $2 --mode $m --threads 1 --reps 1 >> $out 2>/dev/null
  done
  jm=reverse; [ $1 = jac ] && jm=""; [ $1 = hessian ] && jm=""; [ $1 = chain ] && jm=""
  for lib in jax torch; do
    if [ -z "$jm" ]; then
      timeout 600 $PY $P --lib $lib --workload $1 --size $2 --threads 1 --reps 1 >> $out 2>/dev/null
    else
      timeout 600 $PY $P --lib $lib --workload $1 --size $2 --mode $jm --threads 1 --reps 1 >> $out 2>/dev/null
    fi
  done
done

