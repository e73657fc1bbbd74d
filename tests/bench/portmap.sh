#!/usr/bin/env bash
# portmap: wasm-cni (iptables and nftables backends) against the reference
# plugin, in the same run, inside a throwaway netns (the machine's firewall
# is never touched). Prints a markdown table:
#   - ADD and DEL per pod (median / p90 ms, sequential),
#   - 50 pods ADDed in parallel, then DELeted in parallel (wall time),
#   - ADD latency with 1 vs 500 pods already mapped (median ms).
# usage: tests/bench/portmap.sh [rounds]   (root; default 30; build first: tests/build.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-30}
bin=${WASM_CNI_BIN:-target/wasm-cni-dist/wasm-cni}
modules=${WASM_CNI_MODULES:-target/wasm-cni-modules}
reference=${REFERENCE_PORTMAP:-/usr/lib/cni/portmap}
for f in "$bin" "$modules/portmap.wasm" "$reference"; do
    [ -e "$f" ] || { echo "missing $f (run tests/build.sh; install containernetworking-plugins)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/wcni-bench-pm.XXXXXX)
ns=wcni-bench-pm-$$
pod=wcni-bench-pmpod-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; ip netns del "$pod" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export WASM_CNI_CACHE_DIR=$work/cache WASM_CNI_LOG_FILE=$work/wasm-cni.log
"$bin" install --bin-dir "$work/bin" --modules-dir "$modules" >/dev/null
ip netns add "$ns"
ip netns add "$pod"
ip -n "$ns" link set lo up
ip -n "$ns" link add vh type veth peer name eth0 netns "$pod"
ip -n "$ns" link set vh up
ip -n "$ns" route add 10.251.0.0/16 dev vh
ip -n "$ns" -6 route add fd00:251::/48 dev vh

# The driver runs inside the netns, so each plugin is a direct exec.
ip netns exec "$ns" env PYTHONPATH=tests/bench python3 - "$work/bin/portmap" "$reference" "/var/run/netns/$pod" "$rounds" <<'PY'
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from benchlib import base_env, call, interleaved, median, p90

ours, ref, netns, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def conf(i, backend):
    c = {"cniVersion": "1.0.0", "name": "benchnet", "type": "portmap", "capabilities": {"portMappings": True},
         "runtimeConfig": {"portMappings": [{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}]},
         "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": netns}],
                        "ips": [{"address": "10.251.%d.%d/16" % (i // 250, i % 250 + 2), "interface": 0}], "dns": {}}}
    if backend:
        c["backend"] = backend
    return json.dumps(c).encode()

def run(plugin, cmd, i, backend):
    env = dict(base_env(), CNI_COMMAND=cmd, CNI_CONTAINERID="bench%d" % i, CNI_NETNS=netns, CNI_IFNAME="eth0",
               CNI_PATH=os.path.dirname(plugin))
    return call([plugin], env, conf(i, backend), timeout=60)[0]

impls = [("wasm-cni (iptables)", ours, "iptables"), ("wasm-cni (nftables)", ours, "nftables"), ("reference v1.1.1 (iptables)", ref, None)]
per = {name: ([], []) for name, _, _ in impls}
warmup = 3
# Per pod, interleaved round by round.
for r, counted, order in interleaved(rounds, warmup, impls):
    for name, plugin, backend in order:
        add = run(plugin, "ADD", r, backend)
        dele = run(plugin, "DEL", r, backend)
        if counted:
            per[name][0].append(add)
            per[name][1].append(dele)
rows = []
for name, plugin, backend in impls:
    add, dele = per[name]
    with ThreadPoolExecutor(50) as ex:
        t = time.perf_counter(); list(ex.map(lambda i: run(plugin, "ADD", i, backend), range(50))); par_add = (time.perf_counter() - t) * 1000
        t = time.perf_counter(); list(ex.map(lambda i: run(plugin, "DEL", i, backend), range(50))); par_del = (time.perf_counter() - t) * 1000
    # ADD latency with 1 and with 500 pods already mapped (pods 1000.. are measured).
    def probe():
        v = []
        for k in range(min(rounds, 20)):
            v.append(run(plugin, "ADD", 1000 + k, backend))
            run(plugin, "DEL", 1000 + k, backend)
        return median(v)
    run(plugin, "ADD", 0, backend)
    one = probe()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: run(plugin, "ADD", i, backend), range(1, 500)))
    many = probe()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: run(plugin, "DEL", i, backend), range(0, 500)))
    rows.append((name, median(add), p90(add), median(dele), p90(dele), par_add, par_del, one, many))

print("## portmap on its own: wasm-cni's two backends vs reference\n")
print("| implementation | ADD median (p90) ms | DEL median (p90) ms | 50 pods ADD parallel, wall ms | 50 pods DEL parallel, wall ms | ADD with 1 pod mapped, ms | ADD with 500 pods mapped, ms |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %.1f (%.1f) | %.1f (%.1f) | %.0f | %.0f | %.1f | %.1f |" % r)
print("\nPer pod: %d rounds, interleaved, %d warm-up rounds not counted; the rest runs one implementation at a time. "
      "Each row's state is cleaned by its own DEL." % (rounds, warmup))
PY
