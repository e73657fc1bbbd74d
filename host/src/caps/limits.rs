//! What one invocation may use: its sandbox's memory and time, and the
//! kernel objects, state and log it may add. Read by the sandbox (memory,
//! deadline), the capabilities (objects), the state directory and the log.

use std::time::Duration;

/// Per-invocation sandbox bounds and quotas, each settable from the
/// environment or the conflist (`dispatch::KNOBS`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub deadline: Duration,
    /// Kernel objects one call may create (see `CallContext::charge`).
    pub max_objects: usize,
    /// Files, and bytes in them, one call may add to its state directory
    /// (see `StateDir::after_call`).
    pub state_files: usize,
    pub state_bytes: u64,
    /// Bytes one call may write to the log (see `logging`).
    pub log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(5),
            max_objects: 4096,
            state_files: 64,
            state_bytes: 1 << 20,
            log_bytes: 1 << 20,
        }
    }
}
