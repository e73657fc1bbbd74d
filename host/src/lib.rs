//! wasm-cni host library: the CNI protocol, the module runtime and sandbox,
//! the capability implementations and the kernel-access layer. The binary in
//! `main.rs` is a thin entry point; tests drive the same code in-process.

pub mod caps;
pub mod cli;
pub mod delegate_exec;
pub mod dispatch;
pub mod inflight;
pub mod logging;
pub mod protocol;
pub mod runtime;
pub mod statedir;

/// Kernel access lives in its own crate, which cannot depend on wasmtime;
/// the host names it as before.
pub use wasm_cni_kernel as kernel;
pub use wasm_cni_kernel::process;
