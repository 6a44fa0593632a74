#!/usr/bin/env bash
# Two hosts on one machine: two network namespaces joined by a veth pair,
# one MPI rank in each, training data-parallel across them over TCP, as on
# two real machines. Run by hand as root (it creates and removes the
# namespaces; nothing else on the machine is touched):
#
#     bash scripts/two-hosts.sh [chainrule train arguments…]   # default: mlp --epochs 3
#
# It builds `chainrule` with the `mpi` feature (needs openmpi-bin,
# libopenmpi-dev, libclang-dev and iproute2), then runs
#
#     mpirun --hostfile hosts -np 2 chainrule train mlp …
#
# from host a (10.77.0.1) with rank 1 on host b (10.77.0.2). mpirun
# reaches a remote host through ssh; here the "ssh" is `ip netns exec`
# into b's namespace (the rsh agent below), so no ssh server is needed.
# On real machines the hostfile is the same with the machines' names:
#
#     node1 slots=1
#     node2 slots=1
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- mlp --epochs 3

cargo build --release -p chainrule-cli --features mpi
bin="$PWD/target/release/chainrule"
work="$(mktemp -d)"
cleanup() {
    ip netns del cr-a 2>/dev/null || true
    ip netns del cr-b 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"

# The two hosts and the cable between them.
ip netns add cr-a
ip netns add cr-b
ip link add cr-veth-a type veth peer name cr-veth-b
ip link set cr-veth-a netns cr-a
ip link set cr-veth-b netns cr-b
ip -n cr-a addr add 10.77.0.1/24 dev cr-veth-a
ip -n cr-b addr add 10.77.0.2/24 dev cr-veth-b
for h in a b; do
    ip -n "cr-$h" link set lo up
    ip -n "cr-$h" link set "cr-veth-$h" up
done
# (No ping needed: mpirun fails at once if b is unreachable.)

# The hostfile a user writes (addresses here, names on real machines).
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' > "$work/hosts"
# mpirun's "ssh": run the command in the namespace of the host named.
cat > "$work/netns-rsh" <<'AGENT'
#!/bin/sh
host="$1"; shift
case "$host" in
    10.77.0.1) ns=cr-a ;;
    10.77.0.2) ns=cr-b ;;
    *) echo "netns-rsh: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" sh -c "$*"
AGENT
chmod +x "$work/netns-rsh"

cd "$work"
job() {
    ip netns exec cr-a mpirun --allow-run-as-root --hostfile hosts -np 2 \
        --mca plm_rsh_agent "$work/netns-rsh" \
        --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
        --mca oob_tcp_if_include 10.77.0.0/24 \
        -x RAYON_NUM_THREADS=1 "$@"
}
# Where each rank runs, then the training.
job sh -c 'echo "rank $OMPI_COMM_WORLD_RANK runs on host $(ip netns identify $$)"' | sort
job "$bin" train "$@"
