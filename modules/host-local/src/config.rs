//! The host-local configuration: `ipam` section, runtimeConfig capabilities
//! and requested addresses, validated with the reference's rules.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;
use wasm_cni_guest::config::{decode, get_ci, normalize_keys, runtime_config};
use wasm_cni_guest::{CniError, CniResultOf, Invocation, IpNet, Route};

use crate::range::{self, RangeSet, RangeSpec};

/// Key spellings of every struct below, for case-insensitive matching
/// (Go's decoder ignores case, and so do we).
const KNOWN_KEYS: &[&str] = &[
    "type",
    "ranges",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "routes",
    "dataDir",
    "resolvConf",
    "dst",
    "gw",
    "mtu",
    "advmss",
    "priority",
    "table",
    "scope",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    // The legacy single range, directly inside `ipam`.
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
    ranges: Option<Vec<Vec<RawRange>>>,
    routes: Option<Vec<wasm_cni_guest::config::RouteConf>>,
    // Used by the host to pick the state directory; the module never sees the disk path.
    #[allow(dead_code)]
    data_dir: Option<String>,
    resolv_conf: Option<String>,
}

/// A validated host-local configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Range sets in allocation order: runtimeConfig `ipRanges`, then the
    /// legacy top-level range, then `ranges`.
    pub sets: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub resolv_conf: Option<String>,
    /// Requested addresses: CNI_ARGS `IP`, then `args.cni.ips`, then
    /// runtimeConfig `ips` (duplicates removed).
    pub requested: Vec<IpAddr>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg)
}

/// An optional IP field; an empty string means absent, as in Go.
fn opt_ip(field: &str, v: &Option<String>) -> CniResultOf<Option<IpAddr>> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("invalid {field} {s:?}: not an IP address"))),
    }
}

fn spec(r: &RawRange) -> CniResultOf<RangeSpec> {
    let subnet = match r.subnet.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<IpNet>()
                .map_err(|e| bad(format!("invalid subnet {s:?}: {e}")))?,
        ),
    };
    Ok(RangeSpec {
        subnet,
        range_start: opt_ip("rangeStart", &r.range_start)?,
        range_end: opt_ip("rangeEnd", &r.range_end)?,
        gateway: opt_ip("gateway", &r.gateway)?,
    })
}

/// A requested address: a bare IP or an IP with a prefix (the prefix is
/// ignored, as the reference's `ip.IP` does for runtimeConfig `ips`).
fn requested_ip(source: &str, s: &str) -> CniResultOf<IpAddr> {
    let t = s.trim();
    let addr = t.split_once('/').map(|(a, _)| a).unwrap_or(t);
    addr.parse::<IpAddr>()
        .map(range::canonical)
        .map_err(|_| bad(format!("cannot understand ip {s:?} in {source}")))
}

fn requested_list(source: &str, v: Option<&Value>) -> CniResultOf<Vec<IpAddr>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i.as_str() {
                Some(s) => requested_ip(source, s),
                None => Err(bad(format!(
                    "{source} must be a list of IP address strings"
                ))),
            })
            .collect(),
        Some(_) => Err(bad(format!(
            "{source} must be a list of IP address strings"
        ))),
    }
}

/// `major.minor.patch` ≥ 0.3.0; an unparsable version is not (like Go's
/// `version.GreaterThanOrEqualTo`).
pub fn at_least_0_3_0(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    if version.is_empty() || parts.len() > 3 {
        return false;
    }
    let mut nums = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        match p.parse::<u64>() {
            Ok(n) => nums[i] = n,
            Err(_) => return false,
        }
    }
    (nums[0], nums[1], nums[2]) >= (0, 3, 0)
}

/// runtimeConfig `ipRanges`: a list of range sets like `ranges`. containerd's
/// go-cni sends a flat list of ranges instead; each becomes its own set.
fn ip_ranges(v: Option<&Value>) -> CniResultOf<Vec<Vec<RawRange>>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let mut v = v.clone();
    normalize_keys(&mut v, KNOWN_KEYS);
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(_) => {
                    decode::<RawRange>("runtimeConfig.ipRanges", &item).map(|r| vec![r])
                }
                other => decode::<Vec<RawRange>>("runtimeConfig.ipRanges", &other),
            })
            .collect(),
        _ => Err(bad("runtimeConfig.ipRanges must be a list of range sets")),
    }
}

/// Parses and validates everything ADD, CHECK and STATUS need.
pub fn load(inv: &Invocation) -> CniResultOf<Config> {
    let mut ipam = match get_ci(&inv.config, "ipam") {
        Some(v) if v.is_object() => v.clone(),
        _ => return Err(bad("IPAM config missing 'ipam' key")),
    };
    normalize_keys(&mut ipam, KNOWN_KEYS);
    let raw: RawIpam = decode("ipam", &ipam)?;

    inv.check_args(&["IP"])?;
    // Requested addresses, in the reference's order.
    let mut requested = Vec::new();
    if let Some(ip) = inv.arg("IP").map(str::trim).filter(|s| !s.is_empty()) {
        requested.push(requested_ip("CNI_ARGS IP", ip)?);
    }
    let args_ips = get_ci(&inv.config, "args")
        .and_then(|a| get_ci(a, "cni"))
        .and_then(|c| get_ci(c, "ips"));
    requested.extend(requested_list("args.cni.ips", args_ips)?);
    requested.extend(requested_list(
        "runtimeConfig.ips",
        runtime_config(&inv.config, "ips"),
    )?);
    let mut seen = Vec::new();
    requested.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });

    // Range sets: runtime ipRanges, legacy top-level range, then `ranges`.
    let mut raw_sets = ip_ranges(runtime_config(&inv.config, "ipRanges"))?;
    if raw.subnet.as_deref().is_some_and(|s| !s.trim().is_empty()) {
        raw_sets.push(vec![RawRange {
            subnet: raw.subnet.clone(),
            range_start: raw.range_start.clone(),
            range_end: raw.range_end.clone(),
            gateway: raw.gateway.clone(),
        }]);
    }
    raw_sets.extend(raw.ranges.unwrap_or_default());
    if raw_sets.is_empty() {
        return Err(bad("no IP ranges specified"));
    }

    let mut sets = Vec::with_capacity(raw_sets.len());
    for (i, rs) in raw_sets.iter().enumerate() {
        let specs = rs
            .iter()
            .map(spec)
            .collect::<CniResultOf<Vec<_>>>()
            .map_err(|e| bad(format!("invalid range set {i}: {}", e.msg)))?;
        let set = RangeSet::canonicalize(&specs)
            .map_err(|e| bad(format!("invalid range set {i}: {e}")))?;
        sets.push(set);
    }

    let v4 = sets.iter().filter(|s| s.is_ipv4()).count();
    let v6 = sets.len() - v4;
    if (v4 > 1 || v6 > 1) && !at_least_0_3_0(&inv.cni_version) {
        return Err(bad(format!(
            "CNI version {} does not support more than 1 address per family",
            inv.cni_version
        )));
    }

    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            if sets[i].overlaps(&sets[j]) {
                return Err(bad(format!("range set {i} overlaps with {j}")));
            }
        }
    }

    let routes = raw
        .routes
        .unwrap_or_default()
        .iter()
        .map(wasm_cni_guest::config::RouteConf::to_route)
        .collect::<CniResultOf<Vec<_>>>()?;
    let resolv_conf = raw.resolv_conf.filter(|s| !s.trim().is_empty());
    Ok(Config {
        sets,
        routes,
        resolv_conf,
        requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inv(config: Value) -> Invocation {
        Invocation::new("c1", "eth0", config)
    }

    #[test]
    fn versions() {
        assert!(
            at_least_0_3_0("0.3.0")
                && at_least_0_3_0("0.3.1")
                && at_least_0_3_0("1.0.0")
                && at_least_0_3_0("1.1")
        );
        assert!(
            !at_least_0_3_0("0.2.0")
                && !at_least_0_3_0("0.1.0")
                && !at_least_0_3_0("")
                && !at_least_0_3_0("x")
        );
    }

    #[test]
    fn order_of_sets_and_requests() {
        let mut i = inv(json!({
            "cniVersion": "1.0.0", "name": "n",
            "ipam": {"type": "host-local", "subnet": "10.0.0.0/24",
                     "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]},
            "runtimeConfig": {"ipRanges": [[{"subnet": "10.2.0.0/24"}]], "ips": ["10.1.0.9/24", "10.0.0.5"]},
            "args": {"cni": {"ips": ["fd00::5"]}}
        }));
        i.args.push(("IP".into(), "10.0.0.5".into()));
        let c = load(&i).expect("valid");
        let subnets: Vec<String> = c.sets.iter().map(|s| s.0[0].subnet.to_string()).collect();
        assert_eq!(
            subnets,
            ["10.2.0.0/24", "10.0.0.0/24", "10.1.0.0/24", "fd00::/64"]
        );
        let req: Vec<String> = c.requested.iter().map(|a| a.to_string()).collect();
        assert_eq!(req, ["10.0.0.5", "fd00::5", "10.1.0.9"]);
    }

    #[test]
    fn keys_match_case_insensitively() {
        let c = load(&inv(json!({
            "cniVersion": "1.0.0", "name": "n",
            "IPAM": {"Ranges": [[{"Subnet": "10.1.0.0/24", "RangeStart": "10.1.0.10", "Gateway": "10.1.0.254"}]],
                     "Routes": [{"Dst": "0.0.0.0/0"}]},
            "RuntimeConfig": {"IPs": ["10.1.0.20"]}
        })))
        .expect("valid");
        let r = &c.sets[0].0[0];
        assert_eq!(r.start.to_string(), "10.1.0.10");
        assert_eq!(r.gateway.to_string(), "10.1.0.254");
        assert_eq!(c.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(c.requested.len(), 1);
    }

    #[test]
    fn containerd_flat_ip_ranges() {
        let c = load(&inv(json!({
            "cniVersion": "1.0.0", "name": "n", "ipam": {"type": "host-local"},
            "runtimeConfig": {"ipRanges": [{"Subnet": "10.9.0.0/24", "RangeStart": "", "RangeEnd": "", "Gateway": ""}]}
        })))
        .expect("valid");
        assert_eq!(c.sets.len(), 1);
        assert_eq!(c.sets[0].0[0].gateway.to_string(), "10.9.0.1");
    }

    #[test]
    fn validation_errors_are_code_7() {
        let cases = [
            (json!({"cniVersion": "1.0.0", "name": "n"}), "IPAM config missing 'ipam' key"),
            (json!({"cniVersion": "1.0.0", "name": "n", "ipam": {}}), "no IP ranges specified"),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/16"}], [{"subnet": "10.0.5.0/24"}]]}}),
                "range set 0 overlaps with 1",
            ),
            (
                json!({"cniVersion": "0.2.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]}}),
                "CNI version 0.2.0 does not support more than 1 address per family",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/31"}]]}}),
                "invalid range set 0: Network 10.0.0.0/31 too small to allocate from",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}]]}}),
                "invalid range set 0: RangeStart 10.0.1.1 not in network 10.0.0.0/24",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.1.1"}]]}}),
                "invalid range set 0: RangeEnd 10.0.1.1 not in network 10.0.0.0/24",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"subnet": "10.0.0.7/24"}}),
                "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0",
            ),
            (json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"ranges": [[]]}}), "invalid range set 0: empty range set"),
        ];
        for (cfg, msg) in cases {
            let e = load(&inv(cfg)).expect_err(msg);
            assert_eq!(e.code, 7, "{e}");
            assert_eq!(e.msg, msg);
        }
        // One address per family is fine for old versions: dual stack.
        load(&inv(json!({"cniVersion": "0.2.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}]]}})))
            .expect("dual stack on 0.2.0");
        let e = load(&inv(
            json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"ranges": [[{"subnet": "nope"}]]}}),
        ))
        .expect_err("bad");
        assert_eq!(e.code, 7);
        let mut i =
            inv(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"subnet": "10.0.0.0/24"}}));
        i.args.push(("IP".into(), "bogus".into()));
        assert_eq!(load(&i).expect_err("bad ip").code, 7);
    }
}
