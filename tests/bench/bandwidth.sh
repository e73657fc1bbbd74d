#!/usr/bin/env bash
# Times bandwidth ADD and DEL per pod (ingress and egress shaping: tbf on the
# host veth, ifb + ingress redirect + tbf on the ifb): wasm-cni's module
# (exec'd through a `<bin>/bandwidth -> wasm-cni` link, as a runtime does)
# against the reference plugin, interleaved in the same run. Everything runs
# in a throwaway "host" netns with one veth pair into a "pod" netns; the
# leftovers the reference's DEL keeps on the veth are removed untimed between
# rounds. Prints a markdown table of median and p90 in milliseconds.
#
# usage: tests/bench/bandwidth.sh [rounds]     (default 100; root; build first: tests/build.sh)
# env:   WASM_CNI_BIN, WASM_CNI_MODULES, REFERENCE_BANDWIDTH override the defaults.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-100}
bin=${WASM_CNI_BIN:-target/wasm-cni-dist/wasm-cni}
modules=${WASM_CNI_MODULES:-target/wasm-cni-modules}
reference=${REFERENCE_BANDWIDTH:-/usr/lib/cni/bandwidth}
for f in "$bin" "$modules/bandwidth.wasm" "$reference"; do
    [ -e "$f" ] || { echo "missing $f (run tests/build.sh; install containernetworking-plugins)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/wasm-cni-bench.XXXXXX)
host=wcni-bench-bw-h-$$
pod=wcni-bench-bw-p-$$
cleanup() {
    ip netns del "$host" 2>/dev/null || true
    ip netns del "$pod" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/bin"
export WASM_CNI_CACHE_DIR="$tmp/cache" WASM_CNI_LOG_FILE="$tmp/wasm-cni.log"
# Installs and precompiles the modules, as a node install would.
"$bin" install --bin-dir "$tmp/bin" --modules-dir "$modules" >/dev/null

ip netns add "$host"
ip netns add "$pod"
ip -n "$host" link add vbench0 type veth peer name eth0 netns "$pod"
ip -n "$host" link set vbench0 up
ip -n "$pod" link set eth0 up

# The whole loop runs inside the host netns, so no `ip netns exec` per call.
ip netns exec "$host" env PYTHONPATH=tests/bench python3 - "$tmp" "$rounds" "$reference" "/var/run/netns/$pod" <<'PY'
import json, os, subprocess, sys
from benchlib import base_env, call, fms, interleaved, median, p90, table

tmp, rounds, reference, netns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
impls = {
    "wasm-cni": (os.path.join(tmp, "bin", "bandwidth"), os.path.join(tmp, "bin")),
    "reference": (reference, os.path.dirname(reference)),
}
conf = json.dumps({
    "cniVersion": "1.0.0", "name": "bench", "type": "bandwidth",
    # containerd's shape: PascalCase keys, burst = MaxUint32.
    "runtimeConfig": {"bandwidth": {"IngressRate": 20000000, "IngressBurst": 4294967295,
                                    "EgressRate": 20000000, "EgressBurst": 4294967295}},
    "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "vbench0"}, {"name": "eth0", "sandbox": netns}],
                   "ips": [], "dns": {}},
}).encode()

def run(name, command, cid):
    path, cni_path = impls[name]
    env = dict(base_env(), CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME="eth0", CNI_PATH=cni_path)
    ms, out, _ = call([path], env, conf)
    if command == "ADD":
        assert json.loads(out)["interfaces"][2]["name"].startswith("bwp")
    return ms

def reset():
    # Untimed: what the veth's deletion would do after a real pod's DEL.
    for parent in ("root", "ingress"):
        subprocess.run(["tc", "qdisc", "del", "dev", "vbench0", parent], stderr=subprocess.DEVNULL)
    left = subprocess.run(["ip", "-o", "link", "show", "type", "ifb"], capture_output=True, text=True).stdout
    if left.strip():
        sys.exit(f"ifb left behind: {left}")

samples = {name: {"ADD": [], "DEL": [], "ADD+DEL": []} for name in impls}
warmup = 5
for r, counted, order in interleaved(rounds, warmup, impls):
    for name in order:
        cid = f"bench-{name}-{r}"
        add = run(name, "ADD", cid)
        dele = run(name, "DEL", cid)
        reset()
        if counted:
            s = samples[name]
            s["ADD"].append(add)
            s["DEL"].append(dele)
            s["ADD+DEL"].append(add + dele)

print(f"## bandwidth on its own (ingress+egress): {rounds} rounds of ADD+DEL per implementation (interleaved, {warmup} warm-up rounds not counted), ms per call\n")
print(table(["implementation", "ADD median", "ADD p90", "DEL median", "DEL p90", "ADD+DEL median", "ADD+DEL p90"],
            [[name] + [fms(f(samples[name][k])) for k in ("ADD", "DEL", "ADD+DEL") for f in (median, p90)]
             for name in impls]))
PY
