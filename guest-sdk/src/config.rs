//! Config parsing helpers.
//!
//! Runtimes disagree on key case: containerd's go-cni sends `runtimeConfig`
//! values with PascalCase keys (`HostPort`, `IngressRate`) because its structs
//! carry no JSON tags, and the Go reference plugins accept them only because
//! Go's decoder matches keys case-insensitively. These helpers do the same.

use serde_json::{Map, Value};

use crate::types::{CniError, IpNet, Route};

/// A key of `obj` matched case-insensitively; an exact match wins.
pub fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// `runtimeConfig.<key>` of a network config, both matched case-insensitively.
pub fn runtime_config<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    get_ci(config, "runtimeConfig").and_then(|rc| get_ci(rc, key))
}

/// Rewrites every object key to the casing of `schema`'s keys where they match
/// case-insensitively, recursively, so serde structs with camelCase names can
/// decode PascalCase input. Keys unknown to the schema are kept as they are.
pub fn normalize_keys(value: &mut Value, known: &[&str]) {
    match value {
        Value::Object(map) => {
            let old = std::mem::take(map);
            let mut out = Map::with_capacity(old.len());
            for (k, mut v) in old {
                normalize_keys(&mut v, known);
                let name = known
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(&k))
                    .map(|n| n.to_string())
                    .unwrap_or(k);
                // An exact-case key wins over a case-folded duplicate.
                if !out.contains_key(&name) || known.contains(&name.as_str()) {
                    out.insert(name, v);
                }
            }
            *map = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|v| normalize_keys(v, known)),
        _ => {}
    }
}

/// Decodes a network config section into a serde type, with a code-7 error
/// that names the section on failure.
pub fn decode<T: serde::de::DeserializeOwned>(section: &str, value: &Value) -> Result<T, CniError> {
    serde_json::from_value(value.clone()).map_err(|e| {
        CniError::config(format!("invalid {section} configuration")).with_details(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_keys_case_insensitively() {
        let c = json!({"RuntimeConfig": {"PortMappings": [{"HostPort": 80}]}});
        let pm = runtime_config(&c, "portMappings").expect("found");
        assert_eq!(pm[0]["HostPort"], 80);
        assert!(runtime_config(&c, "bandwidth").is_none());
    }

    #[test]
    fn exact_key_wins() {
        let c = json!({"ips": [1], "IPS": [2]});
        assert_eq!(get_ci(&c, "ips"), Some(&json!([1])));
    }

    #[test]
    fn normalizes_nested_keys() {
        let mut v = json!({"HostPort": 8080, "inner": [{"CONTAINERPORT": 80, "other": 1}]});
        normalize_keys(&mut v, &["hostPort", "containerPort"]);
        assert_eq!(
            v,
            json!({"hostPort": 8080, "inner": [{"containerPort": 80, "other": 1}]})
        );
    }
}

/// A route as an IPAM configuration writes it (`ipam.routes[]`): the
/// reference's `types.Route`, with the newer mtu, advmss, priority, table
/// and scope. Shared by host-local and static.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RouteConf {
    pub dst: String,
    pub gw: Option<String>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

impl RouteConf {
    /// The route, or a code-7 error naming the field to fix. An empty `gw`
    /// is none, as Go's decoder leaves it.
    pub fn to_route(&self) -> Result<Route, CniError> {
        let dst: IpNet = self
            .dst
            .trim()
            .parse()
            .map_err(|e| CniError::config(format!("invalid route dst {:?}: {e}", self.dst)))?;
        let gw = match self.gw.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(g) => Some(g.parse().map_err(|_| {
                CniError::config(format!("invalid route gw {g:?}: not an IP address"))
            })?),
        };
        Ok(Route {
            dst,
            gw,
            mtu: self.mtu,
            advmss: self.advmss,
            priority: self.priority,
            table: self.table,
            scope: self.scope,
        })
    }
}
