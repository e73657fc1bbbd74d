//! `wasi:clocks/monotonic-clock` for plugin modules, bounded by the call's
//! deadline.
//!
//! wasmtime-wasi's own implementation waits on a tokio timer, which the
//! current-thread runtime the sandbox runs WASI calls on cannot drive
//! (`Handle::block_on` does not run its time driver): a module that slept
//! (`std::thread::sleep`, any `poll` on a clock) aborted the host with
//! "timers are disabled". And a host-side wait is not interrupted by the
//! epoch deadline, so a module could sleep far past it. Here a clock
//! pollable is woken by a plain thread, and never later than the store's
//! deadline: the guest then resumes and traps at its next epoch check, so a
//! module sleeping past its deadline ends like one spinning past it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{subscribe, DynPollable, Pollable};

use super::sandbox::StoreData;

/// The instance name; a module's import of any 0.2.x version resolves to
/// it (the component linker matches semver-compatible versions).
const INTERFACE: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The clock's zero: the first reading in this process.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Waker threads sleeping at once in this process, and their bound.
static WAKERS: AtomicUsize = AtomicUsize::new(0);
const MAX_WAKERS: usize = 16;

/// A wait until `until` (already capped at the deadline).
struct Sleep {
    until: Instant,
    /// Set once a waker thread is on its way.
    armed: bool,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        let until = self.until;
        let armed = &mut self.armed;
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Poll::Ready(());
            }
            if !*armed {
                // A module polling many clocks at once gets at most
                // MAX_WAKERS threads; past that, or with no thread to be
                // had, it waits here (still bounded by the deadline).
                let waker = cx.waker().clone();
                let spawned = (WAKERS.fetch_add(1, Ordering::Relaxed) < MAX_WAKERS)
                    .then(|| {
                        std::thread::Builder::new()
                            .name("wasm-cni-sleep".into())
                            .spawn(move || {
                                std::thread::sleep(left);
                                WAKERS.fetch_sub(1, Ordering::Relaxed);
                                waker.wake();
                            })
                            .ok()
                    })
                    .flatten();
                if spawned.is_none() {
                    WAKERS.fetch_sub(1, Ordering::Relaxed);
                    std::thread::sleep(left);
                    return Poll::Ready(());
                }
                *armed = true;
            }
            Poll::Pending
        })
        .await
    }
}

fn subscribe_for(data: &mut StoreData, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let until = Instant::now()
        .checked_add(wait)
        .map_or(data.deadline.at(), |t| t.min(data.deadline.at()));
    let table = data.table();
    let sleep = table.push(Sleep {
        until,
        armed: false,
    })?;
    subscribe(table, sleep)
}

/// Links the monotonic clock in place of wasmtime-wasi's.
pub fn add_to_linker(l: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    let mut i = l.instance(INTERFACE)?;
    i.func_wrap("now", |_, (): ()| Ok((now_ns(),)))?;
    i.func_wrap("resolution", |_, (): ()| Ok((1u64,)))?;
    i.func_wrap(
        "subscribe-duration",
        |mut store: wasmtime::StoreContextMut<'_, StoreData>, (ns,): (u64,)| {
            Ok((subscribe_for(store.data_mut(), Duration::from_nanos(ns))?,))
        },
    )?;
    i.func_wrap(
        "subscribe-instant",
        |mut store: wasmtime::StoreContextMut<'_, StoreData>, (when,): (u64,)| {
            let wait = Duration::from_nanos(when.saturating_sub(now_ns()));
            Ok((subscribe_for(store.data_mut(), wait)?,))
        },
    )?;
    Ok(())
}
