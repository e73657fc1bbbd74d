//! `resolv`: the file named by this network's `ipam.resolvConf`, read by the
//! host so that an IPAM module gets DNS settings without any file access of
//! its own.

use std::io::Read;

use super::bindings::cni::plugin::resolv::Host;
use super::bindings::wit::CniError;
use super::cap_error;
use crate::protocol::error::code;
use crate::runtime::sandbox::StoreData;

/// A resolv.conf is a few hundred bytes; more is not one.
const MAX_BYTES: u64 = 64 << 10;

fn get_ci<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Reads `path` as the configuration names it; errors say what to fix.
pub fn read_named(path: &str) -> Result<String, CniError> {
    let bad = |msg: String, details: String| cap_error(code::INVALID_NETWORK_CONFIG, msg, details);
    if !path.starts_with('/') {
        return Err(bad(
            format!("ipam resolvConf {path:?} is not an absolute path"),
            "name the resolver file by its absolute path".into(),
        ));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| bad(format!("cannot open ipam resolvConf {path}"), e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| bad(format!("cannot stat ipam resolvConf {path}"), e.to_string()))?;
    if !meta.is_file() {
        return Err(bad(
            format!("ipam resolvConf {path} is not a regular file"),
            "name a resolv.conf file".into(),
        ));
    }
    let mut text = String::new();
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot read ipam resolvConf {path}"), e.to_string()))?;
    Ok(text)
}

impl Host for StoreData {
    fn read_resolv_conf(&mut self) -> wasmtime::Result<Result<Option<String>, CniError>> {
        let Some(call) = self.call.clone() else {
            return Ok(Err(cap_error(
                code::INTERNAL,
                "no invocation",
                "capabilities are not available while describing a module",
            )));
        };
        let config: serde_json::Value = match serde_json::from_slice(&call.config_bytes) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(cap_error(
                    code::DECODING_FAILURE,
                    "network configuration is not valid JSON",
                    e.to_string(),
                )))
            }
        };
        let path = get_ci(&config, "ipam")
            .and_then(|i| get_ci(i, "resolvConf"))
            .and_then(|p| p.as_str())
            .map(str::trim)
            .filter(|p| !p.is_empty());
        Ok(match path {
            None => Ok(None),
            Some(p) => read_named(p).map(Some),
        })
    }
}
