#!/usr/bin/env bash
# Per-invocation cost of wasm-cni vs the reference loopback plugin, in the
# same run: VERSION, loopback ADD and DEL (median, p90, peak RSS), then the
# in-process phases of wasm-cni's ADD from its log (engine, module load,
# linking, instantiation, the guest call).
# Usage: tests/bench/loopback.sh [rounds]   (root; run tests/build.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-200}
work=$(mktemp -d /tmp/wcni-bench-lo.XXXXXX)
ns=wcni-bench-lo-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export WASM_CNI_CACHE_DIR=$work/cache WASM_CNI_LOG_FILE=$work/wasm-cni.log
target/wasm-cni-dist/wasm-cni install --bin-dir "$work/bin" --modules-dir target/wasm-cni-modules >/dev/null
ip netns add "$ns"
ref=/usr/lib/cni/loopback
conf='{"cniVersion":"1.0.0","name":"bench","type":"loopback"}'

python3 - "$work" "$ns" "$rounds" "$ref" "$conf" > "$work/spec.json" <<'PY'
import json, sys
work, ns, rounds, ref, conf = sys.argv[1:]
def env(cmd):
    return {"CNI_COMMAND": cmd, "CNI_CONTAINERID": "bench", "CNI_NETNS": f"/var/run/netns/{ns}",
            "CNI_IFNAME": "eth0", "CNI_PATH": f"{work}/bin",
            "WASM_CNI_CACHE_DIR": f"{work}/cache", "WASM_CNI_LOG_FILE": f"{work}/wasm-cni.log"}
cases = []
for label, argv in (("wasm-cni", f"{work}/bin/loopback"), ("reference", ref)):
    cases.append({"label": f"{label} VERSION", "argv": [argv], "env": env("VERSION"), "stdin": '{"cniVersion":"1.0.0"}'})
    cases.append({"label": f"{label} ADD", "argv": [argv], "env": env("ADD"), "stdin": conf})
    cases.append({"label": f"{label} DEL", "argv": [argv], "env": env("DEL"), "stdin": conf})
print(json.dumps({"rounds": int(rounds), "cases": cases}))
PY

echo "## loopback: wasm-cni vs reference ($rounds rounds, interleaved)"
echo
python3 tests/bench/runner.py "$work/spec.json"
echo
echo "## wasm-cni ADD in-process phases (µs, median over the ADD calls)"
echo
python3 - "$work/wasm-cni.log" <<'PY'
import re, statistics, sys
rows = [l for l in open(sys.argv[1]) if "command=ADD" in l and " ok " in l + " "]
fields = ["engine_us", "load_us", "link_us", "instantiate_us", "call_us", "duration_ms"]
print("| " + " | ".join(fields) + " | wasm overhead µs (load+link+instantiate+call) |")
print("|" + "---:|" * (len(fields) + 1))
vals = {f: [float(re.search(f"{f}=([0-9.]+)", l).group(1)) for l in rows] for f in fields}
med = {f: statistics.median(v) for f, v in vals.items()}
over = statistics.median([vals["load_us"][i] + vals["link_us"][i] + vals["instantiate_us"][i] + vals["call_us"][i] for i in range(len(rows))])
print("| " + " | ".join(f"{med[f]:.0f}" if f != "duration_ms" else f"{med[f]:.2f}" for f in fields) + f" | {over:.0f} |")
PY
