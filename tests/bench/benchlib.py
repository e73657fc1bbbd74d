"""Shared pieces of the benchmark scripts: statistics, timed plugin calls
(optionally under GNU time for the peak RSS), a libcni-like conflist driver,
network namespaces for pods, and markdown tables.

Every timed call is a plain fork/exec of the plugin binary with the CNI
environment and its config on stdin, the same for wasm-cni and for the
reference plugins, so the driver's own cost is identical on both sides."""

import json
import math
import os
import statistics
import subprocess
import tempfile
import time

GNU_TIME = "/usr/bin/time"


# --- statistics -------------------------------------------------------------

def median(xs):
    return statistics.median(xs)


def pct(xs, p):
    """Nearest-rank percentile: the smallest sample with at least p% of the
    samples at or below it."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def p90(xs):
    return pct(xs, 90)


def ratio(ref, ours):
    """How many times `ours` is better than `ref` when lower is better."""
    return ref / ours if ours else float("inf")


def interleaved(rounds, warmup, names):
    """Yields (round, counted, order): every round runs every name, the order
    alternating so no side always runs first (on a warmer cache)."""
    names = list(names)
    for r in range(warmup + rounds):
        yield r, r >= warmup, (names if r % 2 == 0 else names[::-1])


# --- markdown ---------------------------------------------------------------

def table(headers, rows, align=None):
    """A markdown table; numbers right-aligned unless `align` says otherwise."""
    align = align or ["---"] + ["---:"] * (len(headers) - 1)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fms(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


# --- plugin calls -----------------------------------------------------------

class PluginError(Exception):
    pass


def call(argv, env, stdin, timeout=120, rss=False):
    """Runs one plugin process. Returns (milliseconds, stdout bytes, peak RSS
    KiB or None). With rss=True the plugin runs under GNU time (-f %M), whose
    own fork/exec is then included in the time: use those runs for the RSS
    only. A forked Python child can't report the plugin's RSS itself: the
    kernel's high-water mark would include the Python image it came from."""
    rss_file = None
    if rss:
        fd, rss_file = tempfile.mkstemp(prefix="wcni-rss-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
    try:
        t0 = time.perf_counter_ns()
        p = subprocess.run(argv, input=stdin, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        ms = (time.perf_counter_ns() - t0) / 1e6
        if p.returncode != 0:
            raise PluginError(f"{argv[-1]} {env.get('CNI_COMMAND')} {env.get('CNI_CONTAINERID')} exited "
                              f"{p.returncode}: {p.stdout.decode(errors='replace')} {p.stderr.decode(errors='replace')}")
        kib = None
        if rss_file:
            lines = open(rss_file).read().split()
            kib = int(lines[-1])
        return ms, p.stdout, kib
    finally:
        if rss_file:
            os.unlink(rss_file)


def base_env():
    """What a runtime passes on besides the CNI variables: its own
    environment (PATH for the plugins' tools), here reduced to PATH and
    wasm-cni's cache and log locations (ignored by the reference)."""
    return {k: os.environ[k] for k in ("PATH", "WASM_CNI_CACHE_DIR", "WASM_CNI_LOG_FILE") if k in os.environ}


class Conflist:
    """Runs a network configuration list the way libcni does: each plugin's
    config is the plugin entry plus the list's name and cniVersion, the
    capability args it declares as runtimeConfig, and on ADD the previous
    plugin's result as prevResult; DEL runs the list in reverse with the
    cached ADD result as prevResult."""

    def __init__(self, conflist, bin_dir):
        self.list = conflist
        self.bin_dir = bin_dir
        self.types = [p["type"] for p in conflist["plugins"]]

    def _config(self, plugin, caps, prev):
        c = dict(plugin)
        c["cniVersion"] = self.list["cniVersion"]
        c["name"] = self.list["name"]
        declared = plugin.get("capabilities", {})
        rc = {k: v for k, v in caps.items() if declared.get(k)}
        if rc:
            c["runtimeConfig"] = rc
        if prev is not None:
            c["prevResult"] = prev
        return json.dumps(c).encode()

    def _env(self, command, cid, netns, ifname, extra=None):
        return dict(base_env(), CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME=ifname,
                    CNI_ARGS="", CNI_PATH=self.bin_dir, **(extra or {}))

    def add(self, cid, netns, caps=None, ifname="eth0", rss=False, env=None):
        """Returns (total ms, the final result, [(type, ms, rss KiB)]). `env`:
        extra environment for the plugins (e.g. wasm-cni's log settings)."""
        caps = caps or {}
        env = self._env("ADD", cid, netns, ifname, env)
        prev, steps = None, []
        t0 = time.perf_counter_ns()
        for plugin in self.list["plugins"]:
            ms, out, kib = call([os.path.join(self.bin_dir, plugin["type"])], env, self._config(plugin, caps, prev),
                                rss=rss)
            prev = json.loads(out)
            steps.append((plugin["type"], ms, kib))
        return (time.perf_counter_ns() - t0) / 1e6, prev, steps

    def delete(self, cid, netns, result, caps=None, ifname="eth0", rss=False, env=None):
        """Returns (total ms, [(type, ms, rss KiB)]), in execution order."""
        caps = caps or {}
        env = self._env("DEL", cid, netns, ifname, env)
        steps = []
        t0 = time.perf_counter_ns()
        for plugin in reversed(self.list["plugins"]):
            ms, _, kib = call([os.path.join(self.bin_dir, plugin["type"])], env, self._config(plugin, caps, result),
                              rss=rss)
            steps.append((plugin["type"], ms, kib))
        return (time.perf_counter_ns() - t0) / 1e6, steps


# --- network namespaces -----------------------------------------------------

def _cpu_times():
    """(idle, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])  # guest time is already counted in user


def settle(min_wait=0.0, window=0.25, idle=0.9, timeout=60.0):
    """Waits until the kernel has finished the asynchronous work that what
    came before left behind: deleting a netns only queues its teardown
    (cleanup_net runs later in a kernel worker, taking rtnl and waiting for
    RCU grace periods), and new interfaces keep IPv6 DAD and router
    solicitations running for seconds. Timing a call while that runs charges
    the plugin for the runtime's netns deletion. Waits until the CPUs were at
    least `idle` idle over a `window` (and `min_wait` seconds have passed, for
    timer-driven work that barely shows as CPU time), or `timeout` seconds;
    returns the seconds waited."""
    t0 = time.monotonic()
    time.sleep(min_wait)
    i0, n0 = _cpu_times()
    while True:
        time.sleep(window)
        i1, n1 = _cpu_times()
        if n1 > n0 and (i1 - i0) / (n1 - n0) >= idle:
            break
        if time.monotonic() - t0 > timeout:
            break
        i0, n0 = i1, n1
    return time.monotonic() - t0


class Netns:
    """Pod network namespaces named <prefix>-<n>, created and deleted untimed
    (see settle() for why deletions are kept out of the timed calls). The
    shell wrapper's trap deletes any left with the prefix."""

    def __init__(self, prefix):
        self.prefix = prefix

    def name(self, n):
        return f"{self.prefix}-{n}"

    def path(self, n):
        return f"/var/run/netns/{self.name(n)}"

    def add(self, n):
        subprocess.run(["ip", "netns", "add", self.name(n)], check=True)
        return self.path(n)

    def delete(self, n):
        subprocess.run(["ip", "netns", "del", self.name(n)], check=True)

    def delete_all(self, names):
        """Deletes the given netns, then waits for the kernel to finish
        tearing them down (settle), so the next timed call does not share the
        CPUs and rtnl with that teardown."""
        for n in names:
            self.delete(n)
        if names:
            settle()
