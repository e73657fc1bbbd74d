//! `ipam`: delegation to the plugin named by this network's `ipam.type`,
//! through the `IpamRunner` the host injects (`dispatch::IpamDelegation`:
//! a `<type>.wasm` module in its own sandbox, else the native binary from
//! CNI_PATH). Here: the WIT glue, the journal entry that releases an
//! allocation if the ADD fails, and the IPAM result the node's network may
//! take from (see `host_scope`).

use super::bindings::cni::plugin::ipam::Host;
use super::bindings::wit::{CniError, CniResult};
use super::CapsView;
use std::sync::Arc;

use super::{cap_error, CallContext, Deadline};
use crate::protocol::env::Command;
use crate::protocol::error::code;

/// Runs a network's IPAM plugin: the host injects it into every
/// `CallContext`, since loading and running modules (and exec'ing native
/// plugins) sits above the capabilities.
pub trait IpamRunner: Send + Sync {
    /// Runs the IPAM plugin of `call`'s network for `command`, done by
    /// `deadline`; its result for ADD.
    fn run(
        &self,
        call: &CallContext,
        command: Command,
        deadline: Arc<Deadline>,
    ) -> Result<Option<CniResult>, CniError>;
}

/// Runs the network's IPAM plugin for `command`, within the call's time.
pub fn delegate(call: &CallContext, command: Command) -> Result<Option<CniResult>, CniError> {
    delegate_until(call, command, call.deadline.clone())
}

/// Runs the network's IPAM plugin for `command`, done by `deadline`.
pub fn delegate_until(
    call: &CallContext,
    command: Command,
    deadline: Arc<Deadline>,
) -> Result<Option<CniResult>, CniError> {
    call.ipam.run(call, command, deadline)
}

impl Host for CapsView<'_> {
    fn add(&mut self) -> wasmtime::Result<Result<CniResult, CniError>> {
        // Journaled before the ADD, not after its success: an IPAM call cut
        // short (its deadline, a trap, a killed exec'd plugin) may have
        // allocated without saying so, and its DEL releases by attachment,
        // which is a no-op when nothing was allocated.
        self.call.journal(super::undo::Undo::IpamDel);
        let r = self.delegate(Command::Add);
        if let Ok(Some(res)) = &r {
            self.call.record_ipam(res.ips.iter().filter_map(|ip| {
                Some(super::host_scope::IpamIp {
                    addr: super::netns::parse_cidr(&ip.address).ok()?,
                    gateway: ip.gateway.as_deref().and_then(|g| g.parse().ok()),
                })
            }));
        }
        Ok(r.and_then(|r| {
            r.ok_or_else(|| cap_error(code::INTERNAL, "IPAM ADD returned no result", ""))
        }))
    }

    fn del(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        Ok(self.delegate(Command::Del).map(|_| ()))
    }

    fn check(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        Ok(self.delegate(Command::Check).map(|_| ()))
    }

    fn status(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        Ok(self.delegate(Command::Status).map(|_| ()))
    }

    fn gc(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        // Only a GC invocation carries the runtime's valid list: anywhere
        // else the IPAM plugin would release every allocation.
        if self.call.command != Command::Gc {
            return Ok(Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                "IPAM GC outside a GC invocation",
                format!(
                    "ipam.gc may only be called on GC, not {}",
                    self.call.command.as_str()
                ),
            )));
        }
        Ok(self.delegate(Command::Gc).map(|_| ()))
    }
}

impl CapsView<'_> {
    fn delegate(&mut self, command: Command) -> Result<Option<CniResult>, CniError> {
        delegate(&self.call, command)
    }
}
