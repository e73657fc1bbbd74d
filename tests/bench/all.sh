#!/usr/bin/env bash
# Runs every benchmark against the reference plugins in the same run and
# writes tests/bench/RESULTS.md with the machine it ran on. About 10 minutes
# on 2 cores; run it on an otherwise idle machine.
#
# usage (root, after tests/build.sh):
#   tests/bench/all.sh          full run, writes tests/bench/RESULTS.md
#   tests/bench/all.sh smoke    tiny round counts, prints only (checks the scripts work)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/bench/RESULTS.md
if [[ ${1:-} == smoke ]]; then
    chain=(3 1 20 3 1) loopback=(10) host_local=(10) portmap=(3) bandwidth=(10)
    out=/dev/null
else
    chain=() loopback=() host_local=() portmap=() bandwidth=()
fi
tmp=$(mktemp /tmp/wcni-bench-results.XXXXXX)
trap 'rm -f "$tmp"' EXIT

machine() {
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB,"
    echo "kernel $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"), $(iptables --version);"
    echo "reference plugins: containernetworking-plugins $(dpkg-query -W -f='${Version}' containernetworking-plugins) from Debian (/usr/lib/cni);"
    echo "wasm-cni at commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- host modules guest-sdk wit Cargo.lock || echo ' (with uncommitted changes)')."
}

{
    echo "# Benchmark results"
    echo
    echo "Produced by \`tests/bench/all.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). To rerun, as root on an idle"
    echo "machine: \`tests/build.sh && tests/bench/all.sh\` (each script can also be run on its own; see its header)."
    echo
    machine
    echo
    echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    tests/bench/chain.sh "${chain[@]}"
    echo
    tests/bench/loopback.sh "${loopback[@]}"
    echo
    tests/bench/host_local.sh "${host_local[@]}"
    echo
    tests/bench/portmap.sh "${portmap[@]}"
    echo
    tests/bench/bandwidth.sh "${bandwidth[@]}"
    echo
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} > "$tmp"
if [[ $out == /dev/null ]]; then
    cat "$tmp"
else
    mv "$tmp" "$out"
    cat "$out"
fi
