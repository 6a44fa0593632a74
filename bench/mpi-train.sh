#!/usr/bin/env bash
# Data-parallel throughput of `chainrule train mlp` on this machine: one
# process (1 and 2 threads) against two ranks of one thread each under
# mpirun, and the time of an all-reduce of the `mlp` workload's gradients
# against the memory-bandwidth bound. Prints the tables of BENCHMARKS.md.
#
#     bash bench/mpi-train.sh        # needs openmpi-bin, libopenmpi-dev, libclang-dev
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p chainrule-cli --features mpi
cargo build --release -p chainrule --features mpi --example allreduce
bin="$PWD/target/release/chainrule"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
epochs=4
mpi=(mpirun --allow-run-as-root --oversubscribe -x RAYON_NUM_THREADS=1)

# The median over epochs 2.. of the epoch lines' examples/s, with that
# epoch's waiting share ("–" for one process).
rate() {
    local lines
    lines=$(grep -o '([0-9]* examples/s[^)]*)' | tail -n +2 | tr -d '(),%' |
        awk '{print $1, ($3 == "" ? "–" : $3 "%")}' | sort -n)
    echo "$lines" | sed -n "$(( ($(echo "$lines" | wc -l) + 1) / 2 ))p"
}

echo "| model | batch | 1 process, 1 thread | 1 process, 2 threads | 2 ranks × 1 thread | waiting (2 ranks) | 2 ranks / best single |"
echo "|---|---|---|---|---|---|---|"
for config in "128 32" "2048 128" "2048 512"; do
    set -- $config
    args=(train mlp --epochs $epochs --hidden "$1" --batch-size "$2")
    read -r one _ < <(RAYON_NUM_THREADS=1 "$bin" "${args[@]}" 2>&1 | rate)
    read -r two _ < <(RAYON_NUM_THREADS=2 "$bin" "${args[@]}" 2>&1 | rate)
    read -r ranks waiting < <("${mpi[@]}" -np 2 "$bin" "${args[@]}" 2>&1 | rate)
    best=$(( one > two ? one : two ))
    ratio=$(awk -v a="$ranks" -v b="$best" 'BEGIN {printf "%.2f×", a/b}')
    echo "| 64-$1-10 | $2 | $one/s | $two/s | $ranks/s | $waiting | $ratio |"
done
echo
echo "All-reduce of the 784-512-256-10 gradients (median of 200, 2 ranks):"
"${mpi[@]}" -np 2 "$OLDPWD/target/release/examples/allreduce"
