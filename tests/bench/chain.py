#!/usr/bin/env python3
"""The pod-network benchmark of issue #7: wasm-cni against the reference
plugins in the same run, on the conflists a runtime would run:

  loopback                                   (99-loopback)
  bridge + host-local                        (isGateway, ipMasq)
  bridge + host-local + portmap              (hostPort: the issue #5 chain)
  bridge + host-local + portmap + bandwidth  (the full chain)

driven like libcni (benchlib.Conflist): each plugin exec'd in order with
prevResult on ADD, in reverse on DEL. Run by chain.sh inside a throwaway
"node" netns that holds the bridges, veths, iptables rules, tc qdiscs and
ifbs; pods are netns created and deleted untimed, and the deletions happen
between timed calls, never just before one: after each round, burst or probe
series the driver waits for the kernel to finish tearing the netns down
(benchlib.settle), so no implementation is charged for the runtime's netns
teardown. Each implementation has its own bridges, subnets and host ports;
both share the node's nat table.

Phases, each interleaving the implementations:
  1. per pod, sequential: ADD and DEL of each chain, median and p90;
  2. burst: 50 pods ADDed at once, then DELed at once (wall time, pods/s);
  3. presence: ADD and DEL of one pod with 1 and with 500 pods already
     attached, for the portmap chain and the full chain (populated and
     removed in parallel through the plugins);
  4. peak RSS of every plugin process type, each plugin run under GNU time
     inside the chain (separate, untimed runs).
Prints the target summary first, then the detail tables (markdown)."""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Conflist, Netns, fms, median, p90, ratio, settle, table, interleaved  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--ours", required=True, help="bin dir made by `wasm-cni install`")
ap.add_argument("--reference", required=True, help="reference plugins' dir")
ap.add_argument("--data", required=True, help="scratch dir (host-local state)")
ap.add_argument("--prefix", required=True, help="pod netns name prefix")
ap.add_argument("--rounds", type=int, default=30)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--burst", type=int, default=50, help="pods per burst")
ap.add_argument("--burst-reps", type=int, default=3)
ap.add_argument("--present", type=int, default=500)
ap.add_argument("--probes", type=int, default=15, help="probe pods per presence level")
ap.add_argument("--breakdown", type=int, default=5,
                help="extra wasm-cni probes per presence level with debug logging (kernel operations)")
ap.add_argument("--fill-workers", type=int, default=8, help="parallel calls while populating to --present")
ap.add_argument("--rss-rounds", type=int, default=5)
a = ap.parse_args()

IMPLS = {"wasm-cni": a.ours, "reference": a.reference}
NAMES = list(IMPLS)
W, R = NAMES
PORT_BASE = {"wasm-cni": 20000, "reference": 40000}
# containerd's shape for the bandwidth capability (go-cni's BandWidth has no
# JSON tags, so the keys are PascalCase; bursts are MaxUint32).
BANDWIDTH = {"IngressRate": 20000000, "IngressBurst": 4294967295, "EgressRate": 20000000, "EgressBurst": 4294967295}
CHAINS = ["loopback", "bridge", "portmap", "full"]
CHAIN_LABEL = {"loopback": "loopback", "bridge": "bridge + host-local", "portmap": "bridge + host-local + portmap",
               "full": "bridge + host-local + portmap + bandwidth"}
BURST_CHAINS = ["bridge", "portmap", "full"]
PRESENCE_CHAINS = ["portmap", "full"]
netns = Netns(a.prefix)


def conflist(chain, impl):
    i = NAMES.index(impl)
    name = f"bench-{chain}-{impl}"
    if chain == "loopback":
        return {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "loopback"}]}
    if chain == "ipam":  # host-local on its own, for its process's RSS
        return {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "host-local", "ipam": {
            "type": "host-local", "subnet": f"10.{221 + i}.0.0/16", "dataDir": a.data}}]}
    net = {"bridge": 201, "portmap": 231, "full": 211}[chain] + i
    bridge = {"type": "bridge", "bridge": f"{impl[0]}{chain}0", "isGateway": True, "ipMasq": True,
              "ipam": {"type": "host-local", "subnet": f"10.{net}.0.0/16", "routes": [{"dst": "0.0.0.0/0"}],
                       "dataDir": a.data}}
    plugins = [bridge]
    if chain in ("portmap", "full"):
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    if chain == "full":
        plugins.append({"type": "bandwidth", "capabilities": {"bandwidth": True}})
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}


LISTS = {(c, n): Conflist(conflist(c, n), IMPLS[n]) for c in CHAINS + ["ipam"] for n in NAMES}


def caps(impl, n):
    return {"portMappings": [{"hostPort": PORT_BASE[impl] + n, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": BANDWIDTH}


def check(chain, result):
    """The chain really did its work: an address, and for the full chain the
    bandwidth plugin's ifb in the result (portmap's rules are checked by the
    leftovers check after DEL and by the e2e tests)."""
    if chain in ("bridge", "portmap", "full", "ipam") and not result.get("ips"):
        sys.exit(f"{chain}: no address in {result}")
    if chain == "full" and not any(i["name"].startswith("bwp") for i in result.get("interfaces", [])):
        sys.exit(f"{chain}: no ifb in {result}")


verified = set()


def check_portmap(chain, impl, n):
    """Once per chain and implementation: the host port's DNAT rule exists
    after ADD."""
    if (chain, impl) in verified:
        return
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    if f"--dport {PORT_BASE[impl] + n} -j DNAT" not in nat:
        sys.exit(f"{impl}: no DNAT rule for host port {PORT_BASE[impl] + n} after ADD")
    verified.add((chain, impl))


def pod(chain, impl, tag, n, spent, rss=False, env=None):
    """One pod's lifetime: ns created, ADD, DEL. Returns the two chain results
    of add() and delete(). The ns is left to the caller (its name appended to
    `spent`) to delete with netns.delete_all once the timed calls are over:
    the kernel tears a netns down after `ip netns del` returns, and that
    teardown (an RCU barrier, rtnl) would otherwise land in the next pod's
    timed DEL. `env`: extra plugin environment."""
    name = f"{tag}{impl[0]}{n}"
    ns = netns.add(name)
    spent.append(name)
    cl, cid, c = LISTS[(chain, impl)], f"{tag}-{impl}-{n}", caps(impl, n)
    add = cl.add(cid, ns, c, rss=rss, env=env)
    check(chain, add[1])
    if chain in ("portmap", "full"):
        check_portmap(chain, impl, n)
    dele = cl.delete(cid, ns, add[1], c, rss=rss, env=env)
    return add, dele


def leftovers(where):
    """Everything a DEL must remove from the node is gone (bridges stay, as
    with the reference; the top-level CNI-HOSTPORT-* chains too)."""
    bad = []
    for kind in ("veth", "ifb"):
        out = subprocess.run(["ip", "-o", "link", "show", "type", kind], capture_output=True, text=True).stdout
        if out.strip():
            bad.append(f"{kind}: {out.strip()}")
    for table_ in ("nat", "filter", "mangle"):
        out = subprocess.run(["iptables-save", "-t", table_], capture_output=True, text=True).stdout
        chains = [l for l in out.splitlines() if l.startswith(":CNI-") and not l.startswith(":CNI-HOSTPORT-")
                  and not l.startswith(":CNI-FORWARD") and not l.startswith(":CNI-ADMIN")]
        if chains:
            bad.append(f"iptables {table_}: {chains}")
    for d in os.listdir(a.data):
        left = [f for f in os.listdir(os.path.join(a.data, d)) if f != "lock" and not f.startswith("last_reserved_ip")]
        if left:
            bad.append(f"host-local {d}: {left}")
    if bad:
        sys.exit(f"left behind after {where}: " + "; ".join(bad))


def log(msg):
    print(f"[chain {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# 1. Per pod, sequential. --------------------------------------------------------
log(f"per pod: {a.rounds} rounds (+{a.warmup} warm-up) x {len(CHAINS)} chains x 2")
per = {(c, n): {"ADD": [], "DEL": []} for c in CHAINS for n in NAMES}
steps = {c: {n: {} for n in NAMES} for c in ("portmap", "full")}  # (verb, type) -> [ms]
for r, counted, order in interleaved(a.rounds, a.warmup, NAMES):
    spent = []
    try:
        for chain in CHAINS:
            for impl in order:
                (add_ms, _, add_steps), (del_ms, del_steps) = pod(chain, impl, f"s{CHAINS.index(chain)}", r, spent)
                if counted:
                    per[(chain, impl)]["ADD"].append(add_ms)
                    per[(chain, impl)]["DEL"].append(del_ms)
                    if chain in steps:
                        for verb, st in (("ADD", add_steps), ("DEL", del_steps)):
                            for t, ms, _ in st:
                                steps[chain][impl].setdefault((verb, t), []).append(ms)
    finally:
        netns.delete_all(spent)
leftovers("the per-pod rounds")

# 2. Bursts. ---------------------------------------------------------------------
log(f"burst: {a.burst} pods, {a.burst_reps} reps x {len(BURST_CHAINS)} chains x 2")
burst = {(c, n): {"ADD": [], "DEL": [], "ADDcall": [], "DELcall": []} for c in BURST_CHAINS for n in NAMES}
with ThreadPoolExecutor(max_workers=a.burst) as ex:
    for rep, _, order in interleaved(a.burst_reps, 0, NAMES):
        for chain in BURST_CHAINS:
            for impl in order:
                cl = LISTS[(chain, impl)]
                pods = list(range(a.burst))
                paths = {k: netns.add(f"b{impl[0]}{k}") for k in pods}
                results = {}

                def add_one(k):
                    ms, res, _ = cl.add(f"b{rep}-{impl}-{k}", paths[k], caps(impl, 100 + k))
                    check(chain, res)
                    results[k] = res
                    return ms

                def del_one(k):
                    return cl.delete(f"b{rep}-{impl}-{k}", paths[k], results[k], caps(impl, 100 + k))[0]

                try:
                    for verb, fn in (("ADD", add_one), ("DEL", del_one)):
                        t0 = time.perf_counter_ns()
                        calls = list(ex.map(fn, pods))
                        burst[(chain, impl)][verb].append((time.perf_counter_ns() - t0) / 1e6)
                        burst[(chain, impl)][verb + "call"] += calls
                finally:
                    netns.delete_all([f"b{impl[0]}{k}" for k in pods])
leftovers("the bursts")

# 3. 1 vs N pods present. -------------------------------------------------------------
log(f"presence: 1 vs {a.present} pods, {a.probes} probes each, chains {PRESENCE_CHAINS}")
presence = {(c, n): {} for c in PRESENCE_CHAINS for n in NAMES}


KERNEL_OP = re.compile(r"kernel operation kind=(\S+) op=(.*) us=(\d+)\s*$")
CALL_END = re.compile(r" ok .*command=(\S+) module=(\S+)")


def kernel_ops(log_file):
    """{(command, plugin, kind, op): µs} summed over one pod's ADD and DEL,
    from wasm-cni's debug log (each call's operations come before its
    closing line). Device names in sysctl keys are folded so that calls
    compare."""
    ops, pending = {}, []
    with open(log_file) as f:
        for line in f:
            m = KERNEL_OP.search(line)
            if m:
                op = re.sub(r"(conf|neigh)/[^/]+/", r"\1/<dev>/", m.group(2))
                pending.append((m.group(1), op, int(m.group(3))))
                continue
            m = CALL_END.search(line)
            if m:
                for kind, op, us in pending:
                    key = (m.group(1), m.group(2), kind, op)
                    ops[key] = ops.get(key, 0) + us
                pending = []
    return ops


def probe(chain, impl, level):
    adds, dels, plugins = [], [], {}
    spent = []
    try:
        for k in range(a.probes):
            (add_ms, _, add_steps), (del_ms, _) = pod(chain, impl, f"q{level}", 1000 + k, spent)
            adds.append(add_ms)
            dels.append(del_ms)
            for t, ms, _ in add_steps:
                plugins.setdefault(t, []).append(ms)
    finally:
        netns.delete_all(spent)
    presence[(chain, impl)][level] = (adds, dels)
    presence[(chain, impl)][("plugins", level)] = plugins
    if impl != W or a.breakdown == 0:
        return
    # Separate, untimed-for-the-medians probes with debug logging: which
    # kernel operations grow with the pods present.
    calls, totals = [], {}
    for k in range(a.breakdown):
        fd, log_file = tempfile.mkstemp(prefix="wcni-breakdown-", suffix=".log")
        os.close(fd)
        spent = []
        try:
            (_, _, add_steps), (_, del_steps) = pod(
                chain, impl, f"k{level}", 1000 + k, spent,
                env={"WASM_CNI_LOG_LEVEL": "debug", "WASM_CNI_LOG_FILE": log_file})
            calls.append(kernel_ops(log_file))
        finally:
            os.unlink(log_file)
            netns.delete_all(spent)
        for verb, st in (("ADD", add_steps), ("DEL", del_steps)):
            for t, ms, _ in st:
                totals.setdefault((verb, t), []).append(ms * 1000)
    presence[(chain, impl)][("breakdown", level)] = (calls, totals)


for chain in PRESENCE_CHAINS:
    for impl in NAMES:
        cl = LISTS[(chain, impl)]
        present = {}
        fill = list(range(a.present))
        try:
            for k in fill:
                present[k] = [netns.add(f"f{impl[0]}{k}"), None]

            def add_one(k):
                present[k][1] = cl.add(f"f-{impl}-{k}", present[k][0], caps(impl, 200 + k))[1]
                check(chain, present[k][1])

            def del_one(k):
                if present[k][1] is not None:
                    cl.delete(f"f-{impl}-{k}", present[k][0], present[k][1], caps(impl, 200 + k))
                    present[k][1] = None

            add_one(0)
            settle()
            probe(chain, impl, 1)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=a.fill_workers) as ex:
                list(ex.map(add_one, fill[1:]))
            fill_s = time.perf_counter() - t0
            # The new pods' IPv6 DAD and router solicitations (timers, up to
            # ~10 s after an interface comes up) would otherwise fall on our
            # probes, taken seconds after the fill, but not on the reference's,
            # whose fill takes a minute: probe both in the steady state.
            settle(min_wait=10)
            probe(chain, impl, a.present)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=a.fill_workers) as ex:
                list(ex.map(del_one, fill))
            presence[(chain, impl)]["fill_s"] = fill_s
            presence[(chain, impl)]["drain_s"] = time.perf_counter() - t0
        finally:
            netns.delete_all([f"f{impl[0]}{k}" for k in present])
        p = presence[(chain, impl)]
        log(f"presence {chain} {impl}: populate {p['fill_s']:.1f} s, remove {p['drain_s']:.1f} s")
leftovers("the presence runs")

# 4. Peak RSS per plugin process type. -----------------------------------------------
log(f"peak RSS: {a.rss_rounds} rounds")
rss = {n: {} for n in NAMES}  # type -> {"ADD": max, "DEL": max}
for r, _, order in interleaved(a.rss_rounds, 0, NAMES):
    for impl in order:
        for chain in ("loopback", "ipam", "full"):
            spent = []
            try:
                (_, _, add_steps), (_, del_steps) = pod(chain, impl, "r", r, spent, rss=True)
            finally:
                netns.delete_all(spent)
            for verb, st in (("ADD", add_steps), ("DEL", del_steps)):
                for t, _, kib in st:
                    d = rss[impl].setdefault(t, {})
                    d[verb] = max(d.get(verb, 0), kib)
leftovers("the RSS runs")

# Report. ------------------------------------------------------------------------
full = {n: per[("full", n)] for n in NAMES}


def thr(chain, impl, verb):
    """Pods per second of the median burst."""
    return a.burst / (median(burst[(chain, impl)][verb]) / 1000)


def verdict(x, target, higher=True):
    ok = x >= target if higher else x <= target
    return "**yes**" if ok else "no"


rows = []
for verb, target in (("ADD", 5), ("DEL", 3)):
    o, f = median(full[W][verb]), median(full[R][verb])
    x = ratio(f, o)
    rows.append([f"full chain {verb} per pod, median ms", fms(o), fms(f), f"{x:.2f}× faster", f"≥ {target}×",
                 verdict(x, target)])
for verb in ("ADD", "DEL"):
    o, f = thr("full", W, verb), thr("full", R, verb)
    x = o / f
    rows.append([f"{a.burst}-pod burst {verb}, full chain, pods/s", f"{o:.1f}", f"{f:.1f}", f"{x:.2f}× the throughput",
                 "≥ 5×", verdict(x, 5)])
types = ["loopback", "host-local", "bridge", "portmap", "bandwidth"]
for t in types:
    o, f = max(rss[W][t].values()), max(rss[R][t].values())
    x = o / f
    rows.append([f"peak RSS of a {t} process, KiB", o, f, f"{x:.2f}× the reference's", "≤ 1.5×",
                 verdict(x, 1.5, higher=False)])
for chain in ("loopback", "bridge"):
    for verb in ("ADD", "DEL"):
        o, f = median(per[(chain, W)][verb]), median(per[(chain, R)][verb])
        rows.append([f"{CHAIN_LABEL[chain]} {verb} per pod, median ms", fms(o), fms(f),
                     f"{ratio(f, o):.2f}× faster", "", ""])
for level in (1, a.present):
    o, f = median(presence[("full", W)][level][0]), median(presence[("full", R)][level][0])
    rows.append([f"full chain ADD with {level} pod{'s' if level > 1 else ''} present, median ms", fms(o), fms(f),
                 f"{ratio(f, o):.2f}× faster", "", ""])

print("## Pod networks: wasm-cni vs reference, the issue #7 targets\n")
print(f"Per pod: {a.rounds} rounds per chain and implementation, interleaved, {a.warmup} warm-up rounds not "
      f"counted. Burst: median of {a.burst_reps}. RSS: max over {a.rss_rounds} runs of each plugin under GNU time "
      f"(ADD and DEL). Ratios are reference/wasm-cni for times, wasm-cni/reference for throughput and RSS.\n")
print(table(["measure", "wasm-cni", "reference", "ratio", "target", "met"], rows,
            ["---", "---:", "---:", "---:", "---", "---"]))

# Issue #5: the hostPort chain (bridge + host-local + portmap).
pm = {n: per[("portmap", n)] for n in NAMES}
rows5 = []
for verb in ("ADD", "DEL"):
    o, f = median(pm[W][verb]), median(pm[R][verb])
    x = ratio(f, o)
    rows5.append([f"portmap chain {verb} per pod, median ms", fms(o), fms(f), f"{x:.2f}× faster", "≥ 5×",
                  verdict(x, 5)])
for verb in ("ADD", "DEL"):
    o, f = thr("portmap", W, verb), thr("portmap", R, verb)
    x = o / f
    rows5.append([f"{a.burst}-pod burst {verb}, portmap chain, pods/s", f"{o:.1f}", f"{f:.1f}",
                  f"{x:.2f}× the throughput", "≥ 5×", verdict(x, 5)])
for impl in NAMES:
    one, many = median(presence[("portmap", impl)][1][0]), median(presence[("portmap", impl)][a.present][0])
    x = many / one
    rows5.append([f"{impl}: portmap chain ADD with {a.present} pods present / with 1, median",
                  f"{fms(many)} / {fms(one)} ms" if impl == W else "", f"{fms(many)} / {fms(one)} ms" if impl == R else "",
                  f"{x:.2f}×", "≤ 1.2×" if impl == W else "", verdict(x, 1.2, higher=False) if impl == W else ""])
for impl in NAMES:
    pl = presence[("portmap", impl)]
    one, many = median(pl[("plugins", 1)]["portmap"]), median(pl[("plugins", a.present)]["portmap"])
    rows5.append([f"{impl}: the portmap plugin's own ADD in that chain, {a.present} present / 1, median",
                  f"{fms(many)} / {fms(one)} ms" if impl == W else "", f"{fms(many)} / {fms(one)} ms" if impl == R else "",
                  f"{many / one:.2f}×", "", ""])
print("\n## hostPort (bridge + host-local + portmap): wasm-cni vs reference, the issue #5 targets\n")
print(table(["measure", "wasm-cni", "reference", "ratio", "target", "met"], rows5,
            ["---", "---:", "---:", "---:", "---", "---"]))

print("\n### Per pod, sequential (ms for the whole chain: every plugin's fork/exec, config on stdin, result)\n")
rows = []
for chain in CHAINS:
    for impl in NAMES:
        s = per[(chain, impl)]
        rows.append([CHAIN_LABEL[chain], impl] + [fms(f(s[v])) for v in ("ADD", "DEL") for f in (median, p90)])
print(table(["conflist", "implementation", "ADD median", "ADD p90", "DEL median", "DEL p90"], rows,
            ["---", "---", "---:", "---:", "---:", "---:"]))

print("\n### Each plugin's share (median ms of the process, in execution order)\n")
cols = [("ADD", "bridge"), ("ADD", "portmap"), ("ADD", "bandwidth"), ("DEL", "bandwidth"), ("DEL", "portmap"),
        ("DEL", "bridge")]
print(table(["conflist", "implementation"] + [f"{t} {v}" for v, t in cols],
            [[CHAIN_LABEL[c], impl] + [fms(median(steps[c][impl][k])) if k in steps[c][impl] else "–" for k in cols]
             for c in steps for impl in NAMES]))

print(f"\n### {a.burst} pods in parallel (ADD all at once, then DEL all at once; one thread per pod)\n")
rows = []
for chain in BURST_CHAINS:
    for impl in NAMES:
        b = burst[(chain, impl)]
        rows.append([CHAIN_LABEL[chain], impl] + sum(
            ([f"{median(b[v]):.0f}", f"{thr(chain, impl, v):.1f}", fms(median(b[v + 'call'])),
              fms(max(b[v + 'call']))] for v in ("ADD", "DEL")), []))
print(table(["conflist", "implementation", "ADD wall ms", "ADD pods/s", "ADD call median", "ADD call max",
             "DEL wall ms", "DEL pods/s", "DEL call median", "DEL call max"], rows,
            ["---", "---"] + ["---:"] * 8))

print(f"\n### 1 vs {a.present} pods already attached ({a.probes} probe pods each, ms)\n")
rows = []
for chain, impl in presence:
    p = presence[(chain, impl)]
    rows.append([CHAIN_LABEL[chain], impl] + [fms(f(p[level][i])) for level in (1, a.present) for i in (0, 1) for f in (median, p90)]
                + [f"{p['fill_s']:.1f}", f"{p['drain_s']:.1f}"])
h = [f"{v} {stat}, {level} present" for level in (1, a.present) for v in ("ADD", "DEL") for stat in ("median", "p90")]
print(table(["conflist", "implementation"] + h + [f"populate {a.present - 1} pods, s", f"remove {a.present}, s"],
            rows))
print(f"\nPopulating and removing use {a.fill_workers} parallel chains.")

print(f"\n### Each plugin's ADD with 1 vs {a.present} pods present (median ms of the process)\n")
rows = []
for chain, impl in presence:
    p = presence[(chain, impl)]
    for t in p[("plugins", 1)]:
        one, many = median(p[("plugins", 1)][t]), median(p[("plugins", a.present)][t])
        rows.append([CHAIN_LABEL[chain], impl, t, fms(one), fms(many), f"{many / one:.2f}×"])
print(table(["conflist", "implementation", "plugin", "1 present", f"{a.present} present", "growth"], rows,
            ["---", "---", "---", "---:", "---:", "---:"]))

for chain in PRESENCE_CHAINS:
    p = presence[(chain, W)]
    if ("breakdown", 1) not in p:
        continue
    print(f"\n### Where wasm-cni's time goes, 1 vs {a.present} pods present: {CHAIN_LABEL[chain]}\n")
    print(f"µs per call, median of {a.breakdown} extra pods per level run with `WASM_CNI_LOG_LEVEL=debug` "
          "(each kernel operation's duration in the log; sysctl device names folded; operations under 50 µs "
          "left out). \"rest\" is the process's wall time minus its kernel operations: exec, wasm load and run, "
          "deferred steps overlapping, process exit.\n")
    rows = []
    calls = {lv: p[("breakdown", lv)][0] for lv in (1, a.present)}
    for verb, t in p[("breakdown", 1)][1]:
        keys = sorted({k for lv in calls for call in calls[lv] for k in call if k[:2] == (verb, t)})

        def med(level, key):
            return median([call.get(key, 0) for call in calls[level]])
        ops = [(k, med(1, k), med(a.present, k)) for k in keys]
        ops.sort(key=lambda o: o[2] - o[1], reverse=True)
        for (_, _, kind, op), one, many in ops:
            if max(one, many) >= 50:
                rows.append([verb, t, kind, op.replace("|", "\\|"), f"{one:.0f}", f"{many:.0f}", f"{many - one:+.0f}"])
        sums = {lv: median([sum(v for k, v in call.items() if k[:2] == (verb, t)) for call in calls[lv]])
                for lv in calls}
        walls = {lv: median(p[("breakdown", lv)][1][(verb, t)]) for lv in calls}
        rest = {lv: walls[lv] - sums[lv] for lv in calls}
        for label, v in (("kernel operations, total", sums), ("rest", rest), ("process wall time", walls)):
            rows.append([verb, t, "", f"**{label}**", f"{v[1]:.0f}", f"{v[a.present]:.0f}",
                         f"{v[a.present] - v[1]:+.0f}"])
    print(table(["call", "plugin", "kind", "operation", "1 present", f"{a.present} present", "growth"], rows,
                ["---", "---", "---", "---", "---:", "---:", "---:"]))

print("\n### Peak RSS per plugin process (KiB; max over the runs)\n")
rows = []
for t in types:
    rows.append([t] + [rss[n][t].get(v, "") for n in NAMES for v in ("ADD", "DEL")]
                + [f"{max(rss[W][t].values()) / max(rss[R][t].values()):.2f}×"])
print(table(["plugin", "wasm-cni ADD", "wasm-cni DEL", "reference ADD", "reference DEL", "wasm-cni / reference"],
            rows))
print("\nloopback, bridge, portmap and bandwidth are measured inside their conflists; host-local on its own as an "
      "IPAM call. wasm-cni runs IPAM in the bridge process; the reference bridge execs host-local, and GNU time's "
      "figure for it is the larger of the two processes.")
