//! Where the time of one invocation goes (engine setup, module load, linking,
//! instantiation, the guest call), reported on the invocation's log line so
//! the benchmark can show the wasm overhead per call.

use std::cell::Cell;
use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    pub engine_us: u64,
    pub load_us: u64,
    pub link_us: u64,
    pub instantiate_us: u64,
    pub call_us: u64,
}

thread_local! {
    static PHASES: Cell<Phases> = Cell::new(Phases::default());
}

#[derive(Clone, Copy)]
pub enum Phase {
    Engine,
    Load,
    Link,
    Instantiate,
    Call,
}

/// Adds the time since `start` to a phase (nested calls accumulate).
pub fn record(phase: Phase, start: Instant) {
    let us = start.elapsed().as_micros() as u64;
    PHASES.with(|p| {
        let mut v = p.get();
        match phase {
            Phase::Engine => v.engine_us += us,
            Phase::Load => v.load_us += us,
            Phase::Link => v.link_us += us,
            Phase::Instantiate => v.instantiate_us += us,
            Phase::Call => v.call_us += us,
        }
        p.set(v);
    });
}

/// The phases so far, resetting them.
pub fn take() -> Phases {
    PHASES.with(|p| p.replace(Phases::default()))
}
