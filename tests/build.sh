#!/usr/bin/env bash
# Builds the host (release) and every module and test fixture
# (wasm32-wasip2), then stages the modules under their CNI type names:
# target/wasm-cni-modules/<type>.wasm (what `wasm-cni install` bundles) and
# target/wasm-cni-fixtures/<name>.wasm (hostile modules for the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --profile wasm --target wasm32-wasip2 \
    -p loopback -p host-local -p static -p bridge -p ptp -p portmap -p bandwidth \
    -p fixture-hostile -p fixture-overreach -p fixture-wit-v2
cargo build --locked --release -p wasm-cni

out=target/wasm32-wasip2/wasm
mkdir -p target/wasm-cni-modules target/wasm-cni-fixtures
# cargo names a component after its lib crate name; the runtime needs the type name.
cp "$out/loopback.wasm" target/wasm-cni-modules/loopback.wasm
cp "$out/host_local.wasm" target/wasm-cni-modules/host-local.wasm
cp "$out/static_ipam.wasm" target/wasm-cni-modules/static.wasm
for m in bridge ptp portmap bandwidth; do
    cp "$out/$m.wasm" "target/wasm-cni-modules/$m.wasm"
done
for f in hostile overreach wit_v2; do
    cp "$out/$f.wasm" "target/wasm-cni-fixtures/$f.wasm"
done
