//! `ipam`: delegation to the plugin named by this network's `ipam.type`.
//! A `<type>.wasm` module runs in-process in its own sandbox; otherwise the
//! native binary from CNI_PATH is exec'd with the CNI protocol, so dhcp,
//! whereabouts or the reference host-local keep working.

use super::bindings::cni::plugin::ipam::Host;
use super::bindings::wit::{CniError, CniResult};
use super::{cap_error, convert, CallContext};
use crate::protocol::env::Command;
use crate::protocol::error::code;
use crate::runtime::sandbox::{Call, StoreData};

fn ipam_type(call: &CallContext) -> Result<String, CniError> {
    let config: serde_json::Value = serde_json::from_slice(&call.config_bytes).map_err(|e| {
        cap_error(
            code::DECODING_FAILURE,
            "network configuration is not valid JSON",
            e.to_string(),
        )
    })?;
    let ipam = config.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("ipam"))
            .map(|(_, v)| v)
    });
    let t = ipam
        .and_then(|i| i.as_object())
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("type")))
        .and_then(|(_, v)| v.as_str());
    match t {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => Err(cap_error(
            code::INVALID_NETWORK_CONFIG,
            "no IPAM plugin configured",
            "set ipam.type in the network configuration",
        )),
    }
}

/// Runs the network's IPAM plugin for `command`, within the call's time.
pub fn delegate(call: &CallContext, command: Command) -> Result<Option<CniResult>, CniError> {
    delegate_until(call, command, call.deadline_at)
}

/// Runs the network's IPAM plugin for `command`, done by `until`.
pub fn delegate_until(
    call: &CallContext,
    command: Command,
    until: std::time::Instant,
) -> Result<Option<CniResult>, CniError> {
    let t = ipam_type(call)?;
    let rt = &call.runtime;
    let to_wit = |e: crate::protocol::error::CniError| cap_error(e.code, e.msg, e.details);
    if rt.search.find_module(&t).is_ok() {
        let what = module_call(call, command)?;
        let nested = CallContext {
            runtime: rt.clone(),
            command,
            invocation: call.invocation.clone(),
            config_bytes: call.config_bytes.clone(),
            env: call.env.clone(),
            module: t.clone(),
            undo: Default::default(),
            deferred: Default::default(),
            deadline_at: until,
            issued: Default::default(),
            ipam_ips: Default::default(),
            objects: Default::default(),
        };
        return crate::dispatch::run_module(rt, &t, std::sync::Arc::new(nested), what)
            .map_err(to_wit);
    }
    let bin = rt.search.find_binary(&t).map_err(|searched| {
        cap_error(
            code::INVALID_NETWORK_CONFIG,
            format!("IPAM plugin {t:?} not found"),
            format!("no {t}.wasm module and no {t} binary; {searched}"),
        )
    })?;
    let out = match crate::delegate_exec::exec(
        &bin,
        &call.env,
        command,
        &call.config_bytes,
        until.saturating_duration_since(std::time::Instant::now()),
    ) {
        Err(e) if command == Command::Gc && predates_gc(call, &bin) => {
            tracing::warn!(plugin = %bin.display(), error = %e, "the IPAM plugin predates GC (no cniVersion >= 1.1.0 in its VERSION answer): its allocations are not collected");
            return Ok(None);
        }
        r => r.map_err(to_wit)?,
    };
    if command != Command::Add {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
        cap_error(
            code::DECODING_FAILURE,
            format!("IPAM plugin {t} printed an invalid result"),
            e.to_string(),
        )
    })?;
    let result =
        crate::protocol::result::parse(&value, &call.invocation.cni_version).map_err(to_wit)?;
    Ok(Some(convert::to_wit(result)))
}

impl Host for StoreData {
    fn add(&mut self) -> wasmtime::Result<Result<CniResult, CniError>> {
        // Journaled before the ADD, not after its success: an IPAM call cut
        // short (its deadline, a trap, a killed exec'd plugin) may have
        // allocated without saying so, and its DEL releases by attachment,
        // which is a no-op when nothing was allocated.
        if let Some(c) = &self.call {
            c.journal(super::undo::Undo::IpamDel);
        }
        let r = self.delegate(Command::Add);
        if let (Some(c), Ok(Some(res))) = (&self.call, &r) {
            c.record_ipam(res.ips.iter().filter_map(|ip| {
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
        if let Some(c) = &self.call {
            if c.command != Command::Gc {
                return Ok(Err(cap_error(
                    code::INVALID_NETWORK_CONFIG,
                    "IPAM GC outside a GC invocation",
                    format!(
                        "ipam.gc may only be called on GC, not {}",
                        c.command.as_str()
                    ),
                )));
            }
        }
        Ok(self.delegate(Command::Gc).map(|_| ()))
    }
}

impl StoreData {
    fn delegate(&mut self, command: Command) -> Result<Option<CniResult>, CniError> {
        self.invocation().and_then(|call| delegate(&call, command))
    }
}

/// What an IPAM module is run for: GC carries the runtime's valid list,
/// read from the configuration the IPAM plugin gets (as an exec'd plugin
/// reads it from stdin).
fn module_call(call: &CallContext, command: Command) -> Result<Call, CniError> {
    Ok(match command {
        Command::Add => Call::Add,
        Command::Del => Call::Del,
        Command::Check => Call::Check,
        Command::Gc => {
            let valid = call.gc_valid()?;
            Call::Gc(
                valid
                    .into_iter()
                    .map(|(container_id, ifname)| super::bindings::wit::Attachment {
                        container_id,
                        ifname,
                    })
                    .collect(),
            )
        }
        _ => Call::Status,
    })
}

/// Whether an exec'd IPAM plugin predates GC: its VERSION answer lists no
/// cniVersion from 1.1.0 on (Debian's reference host-local, 1.1.1, answers
/// GC with "unknown CNI_COMMAND"). Such a plugin has no GC to run, so the
/// main plugin's GC goes on without it.
fn predates_gc(call: &CallContext, bin: &std::path::Path) -> bool {
    use crate::protocol::version::Version;
    let stdin = serde_json::json!({"cniVersion": call.invocation.cni_version}).to_string();
    let Ok(out) = crate::delegate_exec::exec(
        bin,
        &call.env,
        Command::Version,
        stdin.as_bytes(),
        call.runtime.limits.deadline,
    ) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) else {
        return false;
    };
    let Some(list) = v.get("supportedVersions").and_then(|l| l.as_array()) else {
        return false;
    };
    !list
        .iter()
        .filter_map(|s| s.as_str())
        .filter_map(|s| Version::parse(s).ok())
        .any(|s| s >= Version::V1_1_0)
}
