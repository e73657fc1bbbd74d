#!/usr/bin/env bash
# Builds wasm-cni and every module and test fixture, and stages them:
#   target/wasm-cni-dist/wasm-cni          the CNI-path binary: no compiler,
#                                          size-optimised, static non-PIE
#                                          (fast exec, small RSS)
#   target/wasm-cni-dist/wasm-cni-compile  the same program with Cranelift, for
#                                          install and compile-on-miss
#   target/wasm-cni-modules/<type>.wasm    the bundled modules, by type name
#   target/wasm-cni-fixtures/<name>.wasm   hostile modules for the tests
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/fixtures.sh

modules=(loopback host-local static bridge ptp portmap bandwidth)
pkgs=()
for m in "${modules[@]}" "${fixture_packages[@]}"; do pkgs+=(-p "$m"); done
cargo build --locked --profile wasm --target wasm32-wasip2 "${pkgs[@]}"
cargo build --locked --release -p wasm-cni
cargo rustc --locked --profile runtime -p wasm-cni --bin wasm-cni --no-default-features --target-dir target/runtime \
    -- -C target-feature=+crt-static -C relocation-model=static

mkdir -p target/wasm-cni-dist target/wasm-cni-modules target/wasm-cni-fixtures
cp target/runtime/runtime/wasm-cni target/wasm-cni-dist/wasm-cni
cp target/release/wasm-cni target/wasm-cni-dist/wasm-cni-compile

out=target/wasm32-wasip2/wasm
# cargo names a component after its lib crate name; the runtime needs the type name.
for m in "${modules[@]}"; do
    lib=${m//-/_}
    [[ $m == static ]] && lib=static_ipam
    cp "$out/$lib.wasm" "target/wasm-cni-modules/$m.wasm"
done
for lib in "${fixture_libs[@]}"; do
    cp "$out/$lib.wasm" "target/wasm-cni-fixtures/$lib.wasm"
done
