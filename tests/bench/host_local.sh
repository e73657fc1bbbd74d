#!/usr/bin/env bash
# Times host-local ADD and DEL per address: wasm-cni's module (exec'd through
# a `<bin>/host-local -> wasm-cni` link, as a runtime does) against the
# reference plugin, interleaved in the same run so both see the same machine
# state. Prints a markdown table of median and p90 in milliseconds.
#
# usage: tests/bench/host_local.sh [rounds]     (default 200; build first: tests/build.sh)
# env:   WASM_CNI_BIN, WASM_CNI_MODULES, REFERENCE_HOST_LOCAL override the defaults.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-200}
bin=${WASM_CNI_BIN:-target/wasm-cni-dist/wasm-cni}
modules=${WASM_CNI_MODULES:-target/wasm-cni-modules}
reference=${REFERENCE_HOST_LOCAL:-/usr/lib/cni/host-local}
for f in "$bin" "$modules/host-local.wasm" "$reference"; do
    [ -e "$f" ] || { echo "missing $f (run tests/build.sh; install containernetworking-plugins)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/wasm-cni-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
export WASM_CNI_CACHE_DIR="$tmp/cache" WASM_CNI_LOG_FILE="$tmp/wasm-cni.log"
# Installs and precompiles the modules, as a node install would.
"$bin" install --bin-dir "$tmp/bin" --modules-dir "$modules" >/dev/null

PYTHONPATH=tests/bench python3 - "$tmp" "$rounds" "$reference" <<'PY'
import json, os, sys
from benchlib import base_env, call, fms, interleaved, median, p90, table

tmp, rounds, reference = sys.argv[1], int(sys.argv[2]), sys.argv[3]
impls = {
    "wasm-cni": (os.path.join(tmp, "bin", "host-local"), os.path.join(tmp, "bin")),
    "reference": (reference, os.path.dirname(reference)),
}

def conf(name):
    return json.dumps({
        "cniVersion": "1.0.0", "name": "bench", "type": "host-local",
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/16", "dataDir": os.path.join(tmp, "data-" + name)},
    }).encode()

confs = {name: conf(name) for name in impls}

def run(name, command, cid):
    path, cni_path = impls[name]
    env = dict(base_env(), CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS="/var/run/netns/bench",
               CNI_IFNAME="eth0", CNI_PATH=cni_path)
    ms, out, _ = call([path], env, confs[name])
    if command == "ADD":
        json.loads(out)["ips"][0]["address"]
    return ms

samples = {name: {"ADD": [], "DEL": [], "ADD+DEL": []} for name in impls}
warmup = 10
for r, counted, order in interleaved(rounds, warmup, impls):
    for name in order:
        cid = f"bench-{name}-{r}"
        add = run(name, "ADD", cid)
        dele = run(name, "DEL", cid)
        if counted:
            s = samples[name]
            s["ADD"].append(add)
            s["DEL"].append(dele)
            s["ADD+DEL"].append(add + dele)

for name in impls:
    left = [f for f in os.listdir(os.path.join(tmp, "data-" + name, "bench")) if f not in ("lock", "last_reserved_ip.0")]
    if left:
        sys.exit(f"{name} left allocations behind: {left}")

print(f"## host-local on its own: {rounds} rounds of ADD+DEL per implementation (interleaved, {warmup} warm-up rounds not counted), ms per call\n")
print(table(["implementation", "ADD median", "ADD p90", "DEL median", "DEL p90", "ADD+DEL median", "ADD+DEL p90"],
            [[name] + [fms(f(samples[name][k])) for k in ("ADD", "DEL", "ADD+DEL") for f in (median, p90)]
             for name in impls]))
PY
