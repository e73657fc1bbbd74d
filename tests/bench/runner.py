#!/usr/bin/env python3
"""Times CNI plugin invocations the way a runtime makes them: fork/exec with
the CNI environment and the config on stdin. Commands are interleaved round
by round so every variant sees the same machine load. Prints a markdown
table: median and p90 wall time, and peak RSS of the plugin process.
Peak RSS comes from GNU time in separate runs (benchlib.call): a forked
Python child would report Python's own resident size, not the plugin's.

Input: a JSON file with {"rounds": N, "cases": [{"label", "argv", "env",
"stdin", "setup"?, "teardown"?}]} where setup/teardown are shell commands run
(untimed) before/after each timed call."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import call, median, p90, table  # noqa: E402


def run_once(case):
    if case.get("setup"):
        subprocess.run(case["setup"], shell=True, check=True, capture_output=True)
    env = dict(case["env"])
    r, w = os.pipe()
    os.write(w, case["stdin"].encode())
    os.close(w)
    start = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        os.dup2(r, 0)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            os.execve(case["argv"][0], case["argv"], env)
        finally:
            os._exit(127)
    _, status, _ = os.wait4(pid, 0)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    os.close(r)
    if case.get("teardown"):
        subprocess.run(case["teardown"], shell=True, check=True, capture_output=True)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{case['label']}: exit {os.waitstatus_to_exitcode(status)}")
    return elapsed


def peak_rss_kib(case, runs=10):
    """Max resident KiB of the plugin over a few runs under GNU time."""
    peak = 0
    for _ in range(runs):
        if case.get("setup"):
            subprocess.run(case["setup"], shell=True, check=True, capture_output=True)
        _, _, kib = call(case["argv"], dict(case["env"]), case["stdin"].encode(), rss=True)
        if case.get("teardown"):
            subprocess.run(case["teardown"], shell=True, check=True, capture_output=True)
        peak = max(peak, kib)
    return peak


def main():
    spec = json.load(open(sys.argv[1]))
    cases = spec["cases"]
    times = {c["label"]: [] for c in cases}
    # One warm-up round (page cache, module cache). The order stays as given:
    # cases may depend on each other (an ADD before its DEL).
    for r in range(1 + spec["rounds"]):
        for c in cases:
            ms = run_once(c)
            if r > 0:
                times[c["label"]].append(ms)
    rss = {c["label"]: peak_rss_kib(c) for c in cases}
    print(table(["case", "median ms", "p90 ms", "peak RSS KiB"],
                [[c["label"], f"{median(times[c['label']]):.2f}", f"{p90(times[c['label']]):.2f}", rss[c["label"]]]
                 for c in cases]))


if __name__ == "__main__":
    main()
