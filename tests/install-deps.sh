#!/usr/bin/env bash
# Installs what building and testing wasm-cni needs on a fresh Debian 12
# machine (as root): the wasm32-wasip2 Rust target, iproute2 for the netns
# tests, the reference plugins from containernetworking-plugins to
# compare and interoperate with, and the end-to-end clients (podman, libcni,
# containerd's CRI driven by a python gRPC client).
set -euo pipefail

packages=(iproute2 iptables nftables conntrack containernetworking-plugins iperf3 curl time python3 iputils-ping podman runc busybox-static golang-go golang-github-appc-cni-dev containerd python3-grpcio python3-protobuf protobuf-compiler)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
