//! The wasmtime engine configuration. Compilation and execution must use the
//! same settings: precompiled artifacts are only valid for an engine whose
//! compatibility hash matches, which is what the cache is keyed on.

use std::hash::{Hash, Hasher};

use wasmtime::{Config, Engine};

/// Builds the engine. `compiler` is false on the CNI path: nothing is compiled
/// there, and skipping Cranelift's setup saves a few hundred microseconds.
pub fn engine(compiler: bool) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    // CPU bound for guests: the deadline thread bumps the epoch once.
    config.epoch_interruption(true);
    // Short-lived processes: copy-on-write heap images and a modest
    // reservation keep startup cheap.
    config.memory_init_cow(true);
    config.memory_reservation(1 << 30);
    config.memory_guard_size(64 << 10);
    config.max_wasm_stack(1 << 20);
    config.enable_compiler(compiler);
    Engine::new(&config)
}

/// A stable hex digest of the engine's precompile compatibility hash, used in
/// cache file names so a wasmtime or CPU change never loads a stale artifact.
pub fn compatibility_key(engine: &Engine) -> String {
    // DefaultHasher::new() has fixed keys, so the digest is stable across runs
    // of the same binary, which is all the cache needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}
