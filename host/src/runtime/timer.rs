//! The deadline timer: one thread per process bumps the engine's epoch when
//! a sandbox's deadline passes, which makes that guest look at its deadline
//! at its next epoch check (see `sandbox::new_store`). One thread serves
//! every sandbox of the process (a bridge call runs two: itself and its
//! IPAM module; a failed ADD's undo may run more): spawning one per sandbox
//! cost ~40 µs each here, and up to milliseconds on a loaded node.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use wasmtime::Engine;

use crate::caps::Deadline;

/// How often a deadline that has passed is looked at again: it may move
/// later (time queued for the state lock, even after it passed while the
/// guest waited in a host call), and a new one gets a bump of its own.
const RECHECK: Duration = Duration::from_millis(50);

struct Watched {
    deadline: Weak<Deadline>,
    engine: Engine,
    /// The deadline this entry last bumped the epoch for.
    bumped_for: Option<Instant>,
}

struct Timer {
    watched: Mutex<Vec<Watched>>,
    thread: Thread,
}

static TIMER: OnceLock<Result<Arc<Timer>, String>> = OnceLock::new();

/// Watches `deadline` until its last holder drops it: at that time the
/// epoch of `engine` is bumped. Fails only when the process has no timer
/// thread and cannot make one.
pub fn watch(deadline: &Arc<Deadline>, engine: &Engine) -> Result<(), String> {
    let timer = TIMER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    let mut w = timer.watched.lock().unwrap_or_else(|p| p.into_inner());
    w.push(Watched {
        deadline: Arc::downgrade(deadline),
        engine: engine.clone(),
        bumped_for: None,
    });
    drop(w);
    timer.thread.unpark();
    Ok(())
}

fn start() -> Result<Arc<Timer>, String> {
    let (tx, rx) = std::sync::mpsc::channel::<Arc<Timer>>();
    let handle = thread::Builder::new()
        .name("wasm-cni-deadline".into())
        .spawn(move || {
            if let Ok(timer) = rx.recv() {
                run(&timer);
            }
        })
        .map_err(|e| format!("cannot start the deadline timer: {e}"))?;
    let timer = Arc::new(Timer {
        watched: Mutex::new(Vec::new()),
        thread: handle.thread().clone(),
    });
    tx.send(timer.clone())
        .map_err(|_| "the deadline timer ended at start".to_string())?;
    Ok(timer)
}

/// The thread: sleeps until the earliest deadline, bumps, forgets the
/// deadlines nobody holds any more. The process is short lived, so a thread
/// still parked at exit costs nothing.
fn run(timer: &Timer) {
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        {
            let mut w = timer.watched.lock().unwrap_or_else(|p| p.into_inner());
            w.retain_mut(|entry| {
                let Some(at) = entry.deadline.upgrade().map(|d| d.at()) else {
                    return false;
                };
                let wake = if now < at {
                    at
                } else {
                    if entry.bumped_for != Some(at) {
                        entry.engine.increment_epoch();
                        entry.bumped_for = Some(at);
                    }
                    now + RECHECK
                };
                next = Some(next.map_or(wake, |n| n.min(wake)));
                true
            });
        }
        match next {
            Some(at) => thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => thread::park(),
        }
    }
}
