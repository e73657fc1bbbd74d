#!/usr/bin/env bash
# The wasm-cni demo: builds everything, installs wasm-cni into a scratch bin
# dir, and runs the Kubernetes example pod network (bridge + host-local +
# portmap) for two pods, each in its own network namespace. The "node" is a
# network namespace too, so the demo never touches this machine's own
# bridges or firewall. Shows the results and real traffic, then tears down.
# Usage (root): examples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing what is missing and building (the first build takes a while)"
tests/install-deps.sh
tests/build.sh >/dev/null

work=$(mktemp -d /tmp/wasm-cni-demo.XXXXXX)
node=wcni-demo-node-$$
pods=(wcni-demo-pod1-$$ wcni-demo-pod2-$$)
bin=$work/bin
export WASM_CNI_CACHE_DIR=$work/cache WASM_CNI_LOG_FILE=$work/wasm-cni.log

cleanup() {
    for p in "${pods[@]}"; do
        ip netns exec "$node" "$bin/wasm-cni" exec del --conflist "$work/net.conflist" \
            --netns "/var/run/netns/$p" --container-id "$p" --bin-dir "$bin" \
            --cache-dir "$work/results" --capability-args "$(caps "$p")" >/dev/null 2>&1 || true
        ip netns del "$p" 2>/dev/null || true
    done
    ip netns del "$node" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

caps() {
    if [[ $1 == "${pods[0]}" ]]; then
        echo '{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}'
    else
        echo '{}'
    fi
}

say "wasm-cni install --bin-dir $bin"
target/wasm-cni-dist/wasm-cni install --bin-dir "$bin" --modules-dir target/wasm-cni-modules
ls -l "$bin"

say "wasm-cni inspect bridge"
"$bin/wasm-cni" inspect bridge --bin-dir "$bin"

# The example conflist, with host-local's state under the scratch dir.
python3 - examples/k8s-pod-network-portmap.conflist "$work" > "$work/net.conflist" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["plugins"][0]["ipam"]["dataDir"] = sys.argv[2] + "/networks"
# A demo node has no kube-proxy: let portmap create its own mark chain.
c["plugins"][1].pop("externalSetMarkChain", None)
print(json.dumps(c, indent=2))
PY
say "conflist"
cat "$work/net.conflist"

ip netns add "$node"
ip -n "$node" link set lo up
for p in "${pods[@]}"; do
    ip netns add "$p"
    say "ADD $p: loopback (as containerd runs it), then the pod network"
    "$bin/wasm-cni" exec add --conflist examples/99-loopback.conflist --netns "/var/run/netns/$p" \
        --container-id "$p" --bin-dir "$bin" --cache-dir "$work/results" >/dev/null
    ip netns exec "$node" "$bin/wasm-cni" exec add --conflist "$work/net.conflist" \
        --netns "/var/run/netns/$p" --container-id "$p" --bin-dir "$bin" \
        --cache-dir "$work/results" --capability-args "$(caps "$p")"
    ip -n "$p" -br addr
done

pod1_ip=$(ip -n "${pods[0]}" -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
say "pod2 pings pod1 ($pod1_ip)"
ip netns exec "${pods[1]}" ping -c 2 -W 2 "$pod1_ip"

say "HTTP server in pod1, reached from the node via hostPort 8080"
mkdir -p "$work/www" && echo "hello from pod1" > "$work/www/index.html"
ip netns exec "${pods[0]}" python3 -m http.server 80 --bind 0.0.0.0 --directory "$work/www" >/dev/null 2>&1 &
server=$!
node_ip=$(ip -n "$node" -4 -o addr show cni0 | awk '{print $4}' | cut -d/ -f1)
for _ in $(seq 50); do ip netns exec "$node" curl -s -m 1 "http://$node_ip:8080/" && break; sleep 0.1; done
kill "$server" 2>/dev/null || true

say "CHECK, then DEL both pods"
for p in "${pods[@]}"; do
    ip netns exec "$node" "$bin/wasm-cni" exec check --conflist "$work/net.conflist" \
        --netns "/var/run/netns/$p" --container-id "$p" --bin-dir "$bin" --cache-dir "$work/results"
    ip netns exec "$node" "$bin/wasm-cni" exec del --conflist "$work/net.conflist" \
        --netns "/var/run/netns/$p" --container-id "$p" --bin-dir "$bin" --cache-dir "$work/results"
done
say "left on the node after DEL (links, nat rules, allocations)"
ip -n "$node" -br link
ip netns exec "$node" iptables -t nat -S | grep -c CNI-DN || true
ls "$work/networks/k8s-pod-network"

say "log ($WASM_CNI_LOG_FILE)"
tail -n 12 "$WASM_CNI_LOG_FILE"
say "done"
