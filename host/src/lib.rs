//! wasm-cni host library: the CNI protocol, the module runtime and sandbox,
//! the capability implementations and the kernel-access layer. The binary in
//! `main.rs` is a thin entry point; tests drive the same code in-process.

#[cfg(feature = "compiler")]
pub mod cli;
pub mod delegate_exec;
pub mod dispatch;
pub mod inflight;
pub mod logging;
pub mod runtime;
pub mod statedir;

/// The layers below the host are crates of their own, so that Cargo keeps
/// their dependencies one-way (ARCHITECTURE.md); the host names them as
/// its modules.
pub use wasm_cni_caps as caps;
pub use wasm_cni_kernel as kernel;
pub use wasm_cni_kernel::process;
pub use wasm_cni_protocol as protocol;
