# Sourced by the build and test scripts: the hostile test modules under
# tests/fixtures/, as cargo package names and lib (file) names.
fixture_packages=()
fixture_libs=()
for manifest in tests/fixtures/*/Cargo.toml; do
    fixture_packages+=("$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)")
    fixture_libs+=("$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | sed -n 2p)")
done
