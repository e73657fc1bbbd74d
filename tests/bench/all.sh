#!/usr/bin/env bash
# Runs every benchmark against the reference plugins in the same run and
# writes tests/bench/RESULTS.md with the machine it ran on.
# Usage (root, after tests/build.sh): tests/bench/all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/bench/RESULTS.md
{
    echo "# Benchmark results"
    echo
    echo "Produced by \`tests/bench/all.sh\` on $(date -u +%Y-%m-%d) (rerun it after \`tests/build.sh\`, as root)."
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB,"
    echo "kernel $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); reference plugins: containernetworking-plugins"
    echo "$(dpkg-query -W -f='${Version}' containernetworking-plugins) from Debian (/usr/lib/cni); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    for b in loopback host_local bridge portmap bandwidth; do
        if [[ -x tests/bench/$b.sh ]]; then
            echo
            tests/bench/$b.sh
        fi
    done
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
