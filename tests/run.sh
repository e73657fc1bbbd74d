#!/usr/bin/env bash
# The test command: installs what is missing, builds everything, then runs
# every test tier in one cargo run: module and SDK unit tests (fake host),
# host unit and component tests (fake kernel), black-box protocol tests of
# the binary, and privileged tests on the real kernel (throwaway netns).
# Run as root: the privileged tests fail, never skip, without it.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
tests/build.sh
source tests/fixtures.sh
excludes=()
for p in "${fixture_packages[@]}"; do excludes+=(--exclude "$p"); done
cargo test --locked --release --workspace "${excludes[@]}" -- "$@"
