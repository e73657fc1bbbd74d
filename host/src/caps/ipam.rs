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

/// Runs the network's IPAM plugin for `command`.
pub fn delegate(call: &CallContext, command: Command) -> Result<Option<CniResult>, CniError> {
    let t = ipam_type(call)?;
    let rt = &call.runtime;
    let to_wit = |e: crate::protocol::error::CniError| cap_error(e.code, e.msg, e.details);
    if rt.search.find_module(&t).is_ok() {
        let what = match command {
            Command::Add => Call::Add,
            Command::Del => Call::Del,
            Command::Check => Call::Check,
            _ => Call::Status,
        };
        let nested = CallContext {
            runtime: rt.clone(),
            command,
            invocation: call.invocation.clone(),
            config_bytes: call.config_bytes.clone(),
            env: call.env.clone(),
            module: t.clone(),
            undo: Default::default(),
            deferred: Default::default(),
        };
        return crate::dispatch::run_module(rt, &t, nested, what).map_err(to_wit);
    }
    let bin = rt.search.find_binary(&t).map_err(|searched| {
        cap_error(
            code::INVALID_NETWORK_CONFIG,
            format!("IPAM plugin {t:?} not found"),
            format!("no {t}.wasm module and no {t} binary; {searched}"),
        )
    })?;
    let out = crate::delegate_exec::exec(
        &bin,
        &call.env,
        command,
        &call.config_bytes,
        rt.limits.deadline,
    )
    .map_err(to_wit)?;
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
        let r = self.delegate(Command::Add);
        if r.is_ok() {
            if let Some(c) = &self.call {
                c.journal(super::undo::Undo::IpamDel);
            }
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
}

impl StoreData {
    fn delegate(&mut self, command: Command) -> Result<Option<CniResult>, CniError> {
        match self.call.clone() {
            Some(call) => delegate(&call, command),
            None => Err(cap_error(
                code::INTERNAL,
                "no invocation",
                "capabilities are not available while describing a module",
            )),
        }
    }
}
