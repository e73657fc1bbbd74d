//! What one invocation may use: its sandbox's memory and time, and the
//! kernel objects, state and log it may add. Read by the sandbox (memory,
//! deadline), the capabilities (objects), the state directory and the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// When a call's time is up: an instant that moves later by the time the
/// call spent queued for its network's state lock behind other pods' calls
/// (`extend`), so a burst of ADDs on one network is not cut for waiting its
/// turn. Shared by the call's sandboxes (the module's and its nested IPAM's).
#[derive(Debug)]
pub struct Deadline {
    base: Instant,
    extra_us: AtomicU64,
}

impl Deadline {
    pub fn new(at: Instant) -> Deadline {
        Deadline {
            base: at,
            extra_us: AtomicU64::new(0),
        }
    }

    pub fn at(&self) -> Instant {
        let extra = Duration::from_micros(self.extra_us.load(Ordering::Relaxed));
        self.base.checked_add(extra).unwrap_or(self.base)
    }

    /// Moves the deadline `by` later.
    pub fn extend(&self, by: Duration) {
        let us = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.extra_us.fetch_add(us, Ordering::Relaxed);
    }
}
