#!/usr/bin/env bash
# Times bridge + host-local (isGateway, ipMasq) ADD and DEL per pod, and 50
# pods ADDed then DELed in parallel: wasm-cni's module (exec'd through a
# `<bin>/bridge -> wasm-cni` link, IPAM by the host-local module in-process)
# against the reference bridge + host-local, in the same run. Everything
# runs in a throwaway "host" netns (bridge, veths, iptables rules) with
# throwaway pod netns, created untimed. Each implementation has its own
# bridge and subnet. Prints markdown tables (milliseconds).
#
# usage: tests/bench/bridge.sh [rounds] [parallel]   (default 50 and 50; root; build first: tests/build.sh)
# env:   WASM_CNI_BIN, WASM_CNI_MODULES, REFERENCE_DIR override the defaults.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-50}
parallel=${2:-50}
bin=${WASM_CNI_BIN:-target/wasm-cni-dist/wasm-cni}
modules=${WASM_CNI_MODULES:-target/wasm-cni-modules}
refdir=${REFERENCE_DIR:-/usr/lib/cni}
for f in "$bin" "$modules/bridge.wasm" "$modules/host-local.wasm" "$refdir/bridge" "$refdir/host-local"; do
    [ -e "$f" ] || { echo "missing $f (run tests/build.sh; install containernetworking-plugins)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/wasm-cni-bench.XXXXXX)
host=wcni-bench-br-h-$$
cleanup() {
    for n in $(ip netns list | awk '{print $1}' | grep "^wcni-bench-br-p-$$-" || true); do
        ip netns del "$n" 2>/dev/null || true
    done
    ip netns del "$host" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/bin"
export WASM_CNI_CACHE_DIR="$tmp/cache" WASM_CNI_LOG_FILE="$tmp/wasm-cni.log"
# Installs and precompiles the modules, as a node install would.
"$bin" install --bin-dir "$tmp/bin" --modules-dir "$modules" >/dev/null

ip netns add "$host"
ip -n "$host" link set lo up

# The loop runs inside the host netns, so no `ip netns exec` per timed call.
ip netns exec "$host" python3 - "$tmp" "$rounds" "$parallel" "$refdir" "wcni-bench-br-p-$$" <<'PY'
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

tmp, rounds, parallel, refdir, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
impls = {
    "wasm-cni": (os.path.join(tmp, "bin", "bridge"), os.path.join(tmp, "bin"), "wbr0", "10.201"),
    "reference": (os.path.join(refdir, "bridge"), refdir, "rbr0", "10.202"),
}
base_env = {k: os.environ[k] for k in ("PATH", "WASM_CNI_CACHE_DIR", "WASM_CNI_LOG_FILE")}

def conf(name):
    _, _, br, net = impls[name]
    return json.dumps({
        "cniVersion": "1.0.0", "name": f"bench-{name}", "type": "bridge", "bridge": br,
        "isGateway": True, "ipMasq": True,
        "ipam": {"type": "host-local", "dataDir": os.path.join(tmp, "ipam"), "subnet": f"{net}.0.0/16",
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }).encode()

confs = {n: conf(n) for n in impls}

def netns(n):
    return f"/var/run/netns/{prefix}-{n}"

def mkns(n):
    subprocess.run(["ip", "netns", "add", f"{prefix}-{n}"], check=True)

def rmns(n):
    subprocess.run(["ip", "netns", "del", f"{prefix}-{n}"], check=True)

def run(name, command, cid, ns):
    path, cni_path, _, _ = impls[name]
    env = dict(base_env, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=ns, CNI_IFNAME="eth0", CNI_PATH=cni_path)
    t0 = time.perf_counter_ns()
    p = subprocess.run([path], input=confs[name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    t1 = time.perf_counter_ns()
    if p.returncode != 0:
        sys.exit(f"{name} {command} {cid} failed ({p.returncode}): {p.stdout.decode()} {p.stderr.decode()}")
    return (t1 - t0) / 1e6

def leftovers():
    veths = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout.strip()
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    chains = [l for l in nat.splitlines() if l.startswith(":CNI-")]
    if veths or chains:
        sys.exit(f"left behind: veths {veths!r} chains {chains}")

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

def p90(xs):
    xs = sorted(xs)
    return xs[max(0, -(-9 * len(xs) // 10) - 1)]

# Per pod, interleaved; the first round per implementation creates its bridge.
samples = {name: {"ADD": [], "DEL": [], "ADD+DEL": []} for name in impls}
warmup = 3
order = list(impls)
for r in range(warmup + rounds):
    for name in (order if r % 2 == 0 else order[::-1]):
        n = f"s{r}{name[0]}"
        mkns(n)
        cid = f"bench-{name}-{r}"
        add = run(name, "ADD", cid, netns(n))
        dele = run(name, "DEL", cid, netns(n))
        rmns(n)
        if r >= warmup:
            s = samples[name]
            s["ADD"].append(add)
            s["DEL"].append(dele)
            s["ADD+DEL"].append(add + dele)
leftovers()

print(f"bridge + host-local (isGateway, ipMasq), {rounds} rounds of ADD+DEL per implementation (interleaved, {warmup} warm-up rounds not counted), ms per call\n")
print("| implementation | ADD median | ADD p90 | DEL median | DEL p90 | ADD+DEL median | ADD+DEL p90 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in impls:
    s = samples[name]
    cells = []
    for k in ("ADD", "DEL", "ADD+DEL"):
        cells += [f"{median(s[k]):.2f}", f"{p90(s[k]):.2f}"]
    print(f"| {name} | " + " | ".join(cells) + " |")

# Parallel: `parallel` pods ADDed at once, then DELed at once.
print(f"\n{parallel} pods in parallel on one bridge (wall time until all are done, and per-call median/max), ms\n")
print("| implementation | ADD wall | ADD median | ADD max | DEL wall | DEL median | DEL max |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in impls:
    pods = [f"p{i}{name[0]}" for i in range(parallel)]
    for n in pods:
        mkns(n)
    cells = []
    for command in ("ADD", "DEL"):
        t0 = time.perf_counter_ns()
        with ThreadPoolExecutor(max_workers=parallel) as ex:
            times = list(ex.map(lambda n: run(name, command, f"par-{name}-{n}", netns(n)), pods))
        wall = (time.perf_counter_ns() - t0) / 1e6
        cells += [f"{wall:.0f}", f"{median(times):.1f}", f"{max(times):.1f}"]
    for n in pods:
        rmns(n)
    print(f"| {name} | " + " | ".join(cells) + " |")
leftovers()
PY
