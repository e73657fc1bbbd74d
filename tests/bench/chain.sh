#!/usr/bin/env bash
# The pod-network suite of issue #7 (tests/bench/chain.py): wasm-cni vs the
# reference plugins on loopback, bridge + host-local, and bridge + host-local
# + portmap + bandwidth conflists run as libcni runs them; per-pod ADD/DEL
# median and p90, 50-pod bursts, 1 vs 500 pods present, peak RSS per plugin
# process, and a summary against the targets. Everything happens in a
# throwaway "node" netns and throwaway pod netns, all deleted on exit (the
# bridges, veths, ifbs, iptables rules and tc qdiscs live in the node netns),
# so the machine's own network is never touched.
#
# usage: tests/bench/chain.sh [rounds] [burst-reps] [present] [probes] [rss-rounds]
#        defaults 30 3 500 15 5     (root; build first: tests/build.sh)
#        smoke test: tests/bench/chain.sh 3 1 20 3 1
# env:   WASM_CNI_BIN, WASM_CNI_MODULES, REFERENCE_DIR override the defaults;
#        WASM_CNI_BENCH_LOG=FILE keeps wasm-cni's log (per-call phases) there.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-30}
burst_reps=${2:-3}
present=${3:-500}
probes=${4:-15}
rss_rounds=${5:-5}
bin=${WASM_CNI_BIN:-target/wasm-cni-dist/wasm-cni}
modules=${WASM_CNI_MODULES:-target/wasm-cni-modules}
refdir=${REFERENCE_DIR:-/usr/lib/cni}
for f in "$bin" /usr/bin/time "$refdir/loopback" "$refdir/bridge" "$refdir/host-local" "$refdir/portmap" \
    "$refdir/bandwidth"; do
    [ -e "$f" ] || { echo "missing $f (run tests/build.sh; apt-get install time containernetworking-plugins)" >&2; exit 1; }
done
for m in loopback bridge host-local portmap bandwidth; do
    [ -e "$modules/$m.wasm" ] || { echo "missing $modules/$m.wasm (run tests/build.sh)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/wcni-bench-chain.XXXXXX)
node=wcni-bench-node-$$
pods=wcni-bench-pod-$$
cleanup() {
    local rc=$?
    # Pod netns first (their veth ends go with them), then the node netns,
    # which takes the bridges, host veths, ifbs, qdiscs and iptables rules.
    for n in $(ip netns list | awk '{print $1}' | grep "^$pods-" || true); do
        ip netns del "$n" 2>/dev/null || true
    done
    ip netns del "$node" 2>/dev/null || true
    if [ -n "${WASM_CNI_BENCH_LOG:-}" ]; then cp "$tmp/wasm-cni.log" "$WASM_CNI_BENCH_LOG" || true; fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$tmp/bin" "$tmp/ipam"
export WASM_CNI_CACHE_DIR="$tmp/cache" WASM_CNI_LOG_FILE="$tmp/wasm-cni.log"
# Installs and precompiles the modules, as a node install would.
"$bin" install --bin-dir "$tmp/bin" --modules-dir "$modules" >/dev/null

ip netns add "$node"
ip -n "$node" link set lo up

# The driver runs inside the node netns, so each plugin is a direct exec.
ip netns exec "$node" python3 tests/bench/chain.py --ours "$tmp/bin" --reference "$refdir" --data "$tmp/ipam" \
    --prefix "$pods" --rounds "$rounds" --burst-reps "$burst_reps" --present "$present" --probes "$probes" \
    --rss-rounds "$rss_rounds"
