//! The crate graph as ARCHITECTURE.md draws it, checked by Cargo's own
//! resolution: kernel access never links the WebAssembly runtime or the
//! host, and the CNI model shared with modules depends on nothing.

use std::process::Command;

/// The normal (non-dev) dependencies of `package`, one name per line.
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn kernel_depends_on_neither_wasmtime_nor_the_host() {
    let deps = dependencies("wasm-cni-kernel");
    assert!(deps.iter().any(|d| d == "nix"), "sanity: {deps:?}");
    for forbidden in ["wasmtime", "wasmtime-wasi", "wasm-cni", "cap-std", "tokio"] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "wasm-cni-kernel depends on {forbidden}: {deps:?}"
        );
    }
}

#[test]
fn the_cni_model_depends_on_nothing() {
    let deps = dependencies("cni-model");
    assert_eq!(
        deps,
        ["cni-model"],
        "cni-model builds for wasm32-wasip2 with std alone"
    );
}

#[test]
fn the_host_reaches_the_kernel_only_through_its_crate() {
    let deps = dependencies("wasm-cni");
    assert!(deps.iter().any(|d| d == "wasm-cni-kernel"), "{deps:?}");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src");
    assert!(!src.join("kernel").exists() && !src.join("process.rs").exists());
}
