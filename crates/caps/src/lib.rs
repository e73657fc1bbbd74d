//! Capability implementations: thin adapters from the WIT interfaces to the
//! kernel layer and the delegation machinery. Each checks that the request
//! stays inside what this invocation scopes.
//!
//! A crate of its own so that Cargo holds the layering: the capabilities see
//! the kernel, the protocol and the CNI model, never the runtime that loads
//! modules nor dispatch; what they need from the host (running the IPAM
//! plugin, the attachments a GC keeps) is injected through `CallContext`.

pub mod bindings;
pub mod claims;
pub mod convert;
pub mod host_net;
pub mod host_scope;
pub mod ipam;
pub mod limits;
pub mod log;
pub mod nat;
pub mod netns;
pub mod resolv;
pub mod resources;
pub mod rollback;
pub mod state;
pub mod tc;
pub mod undo;

use std::sync::Arc;

use wasm_cni_kernel as kernel;
use wasm_cni_protocol as protocol;

use crate::kernel::Kernels;
use crate::protocol::env::Command;
use bindings::wit;
pub use ipam::IpamRunner;
pub use limits::{Deadline, Limits};

/// The attachments a GC of network `name` must keep, given the network's
/// configuration: the runtime's valid list plus what the host knows to be
/// in flight (its ADD markers). Injected, as the markers are the host's.
pub type GcKeep =
    fn(config: &serde_json::Value, name: &str) -> Result<Vec<(String, String)>, protocol::CniError>;

/// What one invocation may touch, shared by its sandbox's capabilities.
pub struct CallContext {
    /// The kernel access this call's capabilities act through.
    pub kernels: Kernels,
    pub limits: Limits,
    /// Runs the network's IPAM plugin (injected: loading and running
    /// modules is the host's, above the capabilities).
    pub ipam: Arc<dyn IpamRunner>,
    /// What a GC keeps (injected like `ipam`).
    pub gc_keep: GcKeep,
    pub command: Command,
    pub invocation: wit::Invocation,
    /// The configuration bytes as the runtime sent them (for exec delegation).
    pub config_bytes: Vec<u8>,
    /// The environment to hand to a delegated native plugin.
    pub env: Vec<(String, String)>,
    pub module: String,
    /// Inverses of what this call changed, for rollback of a failed ADD.
    pub undo: std::sync::Mutex<Vec<undo::Undo>>,
    /// Teardown steps of a DEL running in the background (see `defer`).
    pub deferred: std::sync::Mutex<Vec<Deferred>>,
    /// When this call's time is up: its sandbox and every nested one (the
    /// delegated IPAM) share it, except the undo of a failed ADD, which
    /// gets a budget of its own (`rollback::UNDO_BUDGET`).
    pub deadline: Arc<Deadline>,
    /// Addresses its module configured in the container: with the IPAM
    /// result's (`ipam_ips`), what an interface module's result may claim
    /// (see `done`).
    pub issued: std::sync::Mutex<Vec<std::net::IpAddr>>,
    /// This call's IPAM result: what the node's network may take from it
    /// (see `host_scope`).
    pub ipam_ips: std::sync::Mutex<Vec<host_scope::IpamIp>>,
    /// Kernel objects this call has created so far (see `charge`).
    pub objects: std::sync::atomic::AtomicUsize,
}

impl CallContext {
    /// The context of describing a module at install, which is no
    /// invocation: no capability is linked then (their imports trap), so
    /// none of this is ever acted on; it gives the store its deadline.
    pub fn describing(limits: Limits) -> CallContext {
        CallContext {
            kernels: Kernels::system(),
            limits,
            ipam: Arc::new(NoIpam),
            gc_keep: no_gc,
            command: Command::Version,
            invocation: wit::Invocation {
                container_id: String::new(),
                netns: String::new(),
                ifname: String::new(),
                args: Vec::new(),
                cni_version: String::new(),
                network_name: String::new(),
                config: String::new(),
                prev_result: None,
            },
            config_bytes: Vec::new(),
            env: Vec::new(),
            module: String::new(),
            undo: Default::default(),
            deferred: Default::default(),
            deadline: Arc::new(Deadline::new(std::time::Instant::now() + limits.deadline)),
            issued: Default::default(),
            ipam_ips: Default::default(),
            objects: Default::default(),
        }
    }
}

/// What a context that is no invocation keeps on GC: it runs none.
fn no_gc(_: &serde_json::Value, _: &str) -> Result<Vec<(String, String)>, protocol::CniError> {
    Err(protocol::CniError::internal("no GC outside an invocation")
        .with_details("capabilities are not available while describing a module"))
}

/// The IPAM runner of a context that is no invocation.
struct NoIpam;

impl IpamRunner for NoIpam {
    fn run(
        &self,
        _: &CallContext,
        _: Command,
        _: Arc<Deadline>,
    ) -> Result<Option<wit::CniResult>, wit::CniError> {
        Err(cap_error(
            crate::protocol::error::code::INTERNAL,
            "no IPAM plugin outside an invocation",
            "capabilities are not available while describing a module",
        ))
    }
}

/// A deferred teardown step: on its thread, or already run in place when no
/// thread could be had.
pub enum Deferred {
    Running(std::thread::JoinHandle<Result<(), wit::CniError>>),
    Done(Result<(), wit::CniError>),
}

type Step = Box<dyn FnOnce() -> Result<(), wit::CniError> + Send>;

impl CallContext {
    /// Runs a DEL's teardown step on its own thread so that it overlaps the
    /// module's next steps: deleting a link waits for an RCU grace period
    /// (~20 ms here) that the firewall and IPAM work need not wait behind.
    /// Every step is finished, and its error reported, by `finish_deferred`
    /// before the invocation's result is written.
    pub fn defer(&self, step: impl FnOnce() -> Result<(), wit::CniError> + Send + 'static) {
        // The step stays reachable here in case the thread cannot be made.
        let slot: Arc<std::sync::Mutex<Option<Step>>> =
            Arc::new(std::sync::Mutex::new(Some(Box::new(step))));
        let take = |slot: &std::sync::Mutex<Option<Step>>| match slot.lock() {
            Ok(mut s) => s.take(),
            Err(p) => p.into_inner().take(),
        };
        let theirs = slot.clone();
        let entry = match std::thread::Builder::new()
            .spawn(move || take(&theirs).map_or(Ok(()), |f| f()))
        {
            Ok(handle) => Deferred::Running(handle),
            Err(_) => Deferred::Done(take(&slot).map_or(Ok(()), |f| f())),
        };
        match self.deferred.lock() {
            Ok(mut d) => d.push(entry),
            Err(p) => p.into_inner().push(entry),
        }
    }

    /// Waits for every deferred step; the first failure, if any.
    pub fn finish_deferred(&self) -> Result<(), wit::CniError> {
        let steps = match self.deferred.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        let mut first = Ok(());
        for step in steps {
            let r = match step {
                Deferred::Done(r) => r,
                Deferred::Running(h) => h.join().unwrap_or_else(|_| {
                    Err(cap_error(
                        crate::protocol::error::code::INTERNAL,
                        "a background teardown step failed unexpectedly",
                        "see the log",
                    ))
                }),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl CallContext {
    /// Records addresses this call may claim in its result.
    pub fn issue(&self, addrs: impl IntoIterator<Item = std::net::IpAddr>) {
        match self.issued.lock() {
            Ok(mut v) => v.extend(addrs),
            Err(p) => p.into_inner().extend(addrs),
        }
    }

    /// Records this call's IPAM result (see `host_scope`).
    pub fn record_ipam(&self, ips: impl IntoIterator<Item = host_scope::IpamIp>) {
        match self.ipam_ips.lock() {
            Ok(mut v) => v.extend(ips),
            Err(p) => p.into_inner().extend(ips),
        }
    }

    /// This call's IPAM result so far.
    pub fn ipam_ips(&self) -> Vec<host_scope::IpamIp> {
        match self.ipam_ips.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Counts `n` objects about to be created toward the call's quota;
    /// refuses (creating nothing) past the call's quota (`Limits::max_objects`:
    /// 4096 by default, far above any real attachment, where a dual-stack pod
    /// with a few dozen hostPorts is under 100, and far below what floods a
    /// node: a module once added 13,113 addresses and 65,535 port mappings in
    /// one call), or once the call's deadline has passed.
    pub fn charge(&self, n: usize, what: &str) -> Result<(), wit::CniError> {
        use std::sync::atomic::Ordering;
        // Host calls run outside the guest's epoch checks: one started
        // after the deadline would only add to a call that is already over.
        if std::time::Instant::now() >= self.deadline.at() {
            return Err(cap_error(
                crate::protocol::error::code::TRY_AGAIN_LATER,
                format!("{what}: this call's deadline has passed"),
                "nothing more is created once the deadline has passed",
            ));
        }
        let max = self.limits.max_objects;
        let before = self.objects.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > max {
            self.objects.fetch_sub(n, Ordering::Relaxed);
            return Err(cap_error(
                crate::protocol::error::code::INVALID_NETWORK_CONFIG,
                format!("{what}: this call would create more than {max} kernel objects"),
                format!("{before} created so far, {n} more asked; one attachment needs far fewer (the quota is wasmCni.maxObjects / WASM_CNI_MAX_OBJECTS)"),
            ));
        }
        Ok(())
    }

    /// The attachments a GC must keep: the runtime's valid list from this
    /// call's configuration plus every attachment whose ADD is in flight.
    /// Read by the host, never taken from the module.
    pub fn gc_valid(&self) -> Result<Vec<(String, String)>, wit::CniError> {
        let config: serde_json::Value =
            serde_json::from_slice(&self.config_bytes).map_err(|e| {
                cap_error(
                    crate::protocol::error::code::DECODING_FAILURE,
                    "network configuration is not valid JSON",
                    e.to_string(),
                )
            })?;
        (self.gc_keep)(&config, &self.invocation.network_name)
            .map_err(|e| cap_error(e.code, e.msg, e.details))
    }

    /// What this call did that its result may mention.
    pub fn done(&self) -> claims::Done {
        let mut issued = match self.issued.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        issued.extend(self.ipam_ips().iter().map(|i| i.addr.ip));
        let created = match self.undo.lock() {
            Ok(j) => j.iter().filter_map(undo::Undo::created_link).collect(),
            Err(p) => p
                .into_inner()
                .iter()
                .filter_map(undo::Undo::created_link)
                .collect(),
        };
        claims::Done { issued, created }
    }
}

/// What a capability call sees, borrowed from its sandbox's store for the
/// call (wasmtime's `HasData` view, as wasmtime-wasi's `WasiCtxView`): the
/// invocation it acts for, the resource table its handles live in, and an
/// IPAM call's state directory. The sandbox builds one per host call; no
/// capability reaches the store itself.
pub struct CapsView<'a> {
    pub call: Arc<CallContext>,
    pub table: &'a mut wasmtime::component::ResourceTable,
    /// The network's state directory, preopened as `/state` (IPAM calls).
    pub state_dir: Option<&'a state::Directory>,
}

/// Links the capability interfaces with `CapsView` as their host state.
pub struct HasCaps;

impl wasmtime::component::HasData for HasCaps {
    type Data<'a> = CapsView<'a>;
}

/// A kernel failure as the CNI error a module sees: a gone namespace is
/// code 3 (DEL tolerates it), a timeout code 11 (retry), the rest code 999
/// naming the operation.
pub fn kernel_error(op: &str, e: crate::kernel::KernelError) -> wit::CniError {
    use crate::kernel::KernelError;
    use crate::protocol::error::code;
    match e {
        KernelError::NetnsGone(m) => cap_error(
            code::UNKNOWN_CONTAINER,
            "container network namespace is gone",
            m,
        ),
        KernelError::Timeout(m) => cap_error(code::TRY_AGAIN_LATER, format!("{op} timed out"), m),
        other => cap_error(code::INTERNAL, format!("{op} failed"), other.to_string()),
    }
}

pub fn cap_error(code: u32, msg: impl Into<String>, details: impl Into<String>) -> wit::CniError {
    wit::CniError {
        code,
        msg: msg.into(),
        details: details.into(),
    }
}
