//! The wasmtime engine configuration. Compilation and execution must use the
//! same settings: precompiled artifacts are only valid for an engine whose
//! compatibility hash matches, which is what the cache is keyed on.

use wasmtime::{Config, Engine};

/// Builds the engine. `compiler` is false on the CNI path: nothing is compiled
/// there, and skipping Cranelift's setup saves a few hundred microseconds.
pub fn engine(compiler: bool) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    // CPU bound for guests: the process's deadline timer bumps the epoch
    // when a sandbox's deadline passes (see `timer`).
    config.epoch_interruption(true);
    // Short-lived processes: copy-on-write heap images and a modest
    // reservation keep startup cheap.
    config.memory_init_cow(true);
    config.memory_reservation(1 << 30);
    config.memory_guard_size(64 << 10);
    config.max_wasm_stack(1 << 20);
    #[cfg(feature = "compiler")]
    config.enable_compiler(compiler);
    #[cfg(not(feature = "compiler"))]
    let _ = compiler;
    Engine::new(&config)
}

/// The cache key of this engine configuration. The CNI-path build has no
/// compiler and so no `precompile_compatibility_hash`; the key names the
/// pinned wasmtime version and this configuration's revision instead (bump
/// `CONFIG_REVISION` when `engine()` changes). Anything else that makes an
/// artifact incompatible (another CPU) is caught by wasmtime when loading,
/// and the entry is recompiled.
pub fn compatibility_key(_engine: &Engine) -> String {
    format!(
        "wasmtime{WASMTIME_VERSION}-{}-r{CONFIG_REVISION}",
        std::env::consts::ARCH
    )
}

/// Must match the exact version pinned in the workspace Cargo.toml (a test
/// checks it).
pub const WASMTIME_VERSION: &str = "48.0.8";
const CONFIG_REVISION: u32 = 1;

#[cfg(test)]
mod tests {
    #[test]
    fn wasmtime_version_matches_the_pin() {
        let manifest = include_str!("../../../Cargo.toml");
        assert!(
            manifest.contains(&format!(
                "wasmtime = {{ version = \"={}\"",
                super::WASMTIME_VERSION
            )),
            "update WASMTIME_VERSION to the pinned wasmtime"
        );
    }
}
