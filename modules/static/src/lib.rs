//! static: returns the addresses, routes and DNS settings written in the
//! configuration. Nothing is allocated, so DEL has nothing to do.
//!
//! Where the addresses come from, highest priority first (each source
//! replaces everything below it, as in the reference):
//! 1. runtimeConfig `ips` (capability `ips`): a list of CIDRs;
//! 2. `args.cni.ips`: a list of CIDRs;
//! 3. `ipam.addresses` plus CNI_ARGS `IP=<cidr>[,<cidr>…]` (appended), with
//!    CNI_ARGS `GATEWAY=<ip>[,…]` setting the gateway of every address whose
//!    subnet contains it.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;
use wasm_cni_guest::prelude::*;

pub struct Static;

const KNOWN_KEYS: &[&str] = &[
    "type",
    "addresses",
    "address",
    "gateway",
    "routes",
    "dst",
    "gw",
    "mtu",
    "advmss",
    "priority",
    "table",
    "scope",
    "dns",
    "nameservers",
    "domain",
    "search",
    "options",
];

#[derive(Debug, Deserialize)]
struct RawAddress {
    address: Option<String>,
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDns {
    nameservers: Option<Vec<String>>,
    domain: Option<String>,
    search: Option<Vec<String>>,
    options: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawIpam {
    addresses: Option<Vec<RawAddress>>,
    routes: Option<Vec<wasm_cni_guest::config::RouteConf>>,
    dns: Option<RawDns>,
}

/// One configured address: the address with its prefix (host bits kept,
/// e.g. `10.10.0.1/24`) and an optional gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// A validated static configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg)
}

/// Go's `To4`: an IPv4-mapped IPv6 address is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn cidr(s: &str) -> CniResultOf<IpNet> {
    let t = s.trim();
    let n: IpNet = t
        .parse()
        .map_err(|e: String| bad(format!("invalid CIDR {t}: {e}")))?;
    let addr = canonical(n.addr);
    if addr != n.addr {
        // ::ffff:a.b.c.d/p: the prefix counts IPv6 bits.
        let prefix = n.prefix.checked_sub(96).ok_or_else(|| {
            bad(format!(
                "invalid CIDR {t}: prefix too short for an IPv4-mapped address"
            ))
        })?;
        return Ok(IpNet { addr, prefix });
    }
    Ok(n)
}

fn ip(what: &str, s: &str) -> CniResultOf<IpAddr> {
    s.trim()
        .parse::<IpAddr>()
        .map(canonical)
        .map_err(|_| bad(format!("invalid {what}: {s}")))
}

fn opt_ip(what: &str, v: &Option<String>) -> CniResultOf<Option<IpAddr>> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => ip(what, s).map(Some),
    }
}

fn cidr_list(source: &str, v: Option<&Value>) -> CniResultOf<Option<Vec<Address>>> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if items.is_empty() => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad(format!("{source} must be a list of CIDR strings"))),
    };
    items
        .iter()
        .map(|i| match i.as_str() {
            Some(s) => Ok(Address {
                address: cidr(s)?,
                gateway: None,
            }),
            None => Err(bad(format!("{source} must be a list of CIDR strings"))),
        })
        .collect::<CniResultOf<Vec<_>>>()
        .map(Some)
}

/// `major.minor.patch` ≥ 0.3.0; unparsable is not.
fn at_least_0_3_0(version: &str) -> bool {
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

/// Parses and validates the configuration with its overrides.
pub fn load(inv: &Invocation) -> CniResultOf<Config> {
    let mut ipam = match get_ci(&inv.config, "ipam") {
        Some(v) if v.is_object() => v.clone(),
        _ => return Err(bad("IPAM config missing 'ipam' key")),
    };
    normalize_keys(&mut ipam, KNOWN_KEYS);
    let raw: RawIpam = decode("ipam", &ipam)?;

    let mut addresses = Vec::new();
    for a in raw.addresses.unwrap_or_default() {
        let text = a.address.as_deref().unwrap_or_default();
        addresses.push(Address {
            address: cidr(text)?,
            gateway: opt_ip("gateway address", &a.gateway)?,
        });
    }

    // CNI_ARGS: IP appends; GATEWAY applies to the IP= addresses that
    // contain it, never to configured ones (as the reference does).
    inv.check_args(&["IP", "GATEWAY"])?;
    let from_args = addresses.len();
    if let Some(list) = inv.arg("IP").filter(|s| !s.trim().is_empty()) {
        for item in list.split(',') {
            addresses.push(Address {
                address: cidr(item)?,
                gateway: None,
            });
        }
    }
    if let Some(list) = inv.arg("GATEWAY").filter(|s| !s.trim().is_empty()) {
        for item in list.split(',') {
            let gw = ip("gateway address", item)?;
            for a in addresses[from_args..]
                .iter_mut()
                .filter(|a| a.address.contains(gw))
            {
                a.gateway = Some(gw);
            }
        }
    }

    // `args.cni.ips` and then runtimeConfig `ips` replace everything above.
    let args_ips = get_ci(&inv.config, "args")
        .and_then(|a| get_ci(a, "cni"))
        .and_then(|c| get_ci(c, "ips"));
    if let Some(list) = cidr_list("args.cni.ips", args_ips)? {
        addresses = list;
    }
    if let Some(list) = cidr_list("runtimeConfig.ips", runtime_config(&inv.config, "ips"))? {
        addresses = list;
    }

    let v4 = addresses.iter().filter(|a| a.address.is_ipv4()).count();
    let v6 = addresses.len() - v4;
    if (v4 > 1 || v6 > 1) && !at_least_0_3_0(&inv.cni_version) {
        return Err(bad(format!(
            "CNI version {} does not support more than 1 address per family",
            inv.cni_version
        )));
    }

    let routes = raw
        .routes
        .unwrap_or_default()
        .iter()
        .map(wasm_cni_guest::config::RouteConf::to_route)
        .collect::<CniResultOf<Vec<_>>>()?;
    let d = raw.dns.unwrap_or_default();
    let dns = Dns {
        nameservers: d.nameservers.unwrap_or_default(),
        domain: d.domain.unwrap_or_default(),
        search: d.search.unwrap_or_default(),
        options: d.options.unwrap_or_default(),
    };
    Ok(Config {
        addresses,
        routes,
        dns,
    })
}

impl<H: IpamHost> Plugin<H> for Static {
    const KIND: PluginKind = PluginKind::Ipam;

    fn add(_host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
        let cfg = load(inv)?;
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: cfg
                .addresses
                .iter()
                .map(|a| IpConfig {
                    address: a.address,
                    gateway: a.gateway,
                    interface: None,
                })
                .collect(),
            routes: cfg.routes,
            dns: cfg.dns,
        })
    }

    /// Every configured address must be in prevResult, with the configured
    /// gateway when one is set.
    fn check(_host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let cfg = load(inv)?;
        let prev = inv
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::internal("Required prevResult missing"))?;
        for a in &cfg.addresses {
            let found = prev
                .ips
                .iter()
                .find(|p| canonical(p.address.addr) == a.address.addr)
                .ok_or_else(|| {
                    CniError::internal(format!(
                        "static: Failed to find addr {} on interface {}",
                        a.address.addr, inv.ifname
                    ))
                })?;
            if let Some(gw) = a.gateway {
                if found.gateway.map(canonical) != Some(gw) {
                    return Err(CniError::internal(format!(
                        "static: Failed to match addr {} on interface {}",
                        a.address.addr, inv.ifname
                    ))
                    .with_details(format!(
                        "expected gateway {gw}, prevResult has {:?}",
                        found.gateway.map(|g| g.to_string())
                    )));
                }
            }
        }
        Ok(())
    }

    /// The configuration is all there is; STATUS only validates it.
    fn status(_host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        load(inv).map(|_| ())
    }
}

wasm_cni_guest::export_plugin!(Static);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasm_cni_guest::testing::FakeHost;

    fn inv(config: Value) -> Invocation {
        Invocation::new("c1", "eth0", config)
    }

    fn base() -> Value {
        json!({
            "cniVersion": "1.0.0", "name": "mynet", "type": "macvlan",
            "ipam": {
                "type": "static",
                "addresses": [
                    {"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
                    {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0::1"}
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"}],
                "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"], "options": ["ndots:2"]}
            }
        })
    }

    fn ips(r: &CniResult) -> Vec<(String, Option<String>)> {
        r.ips
            .iter()
            .map(|i| (i.address.to_string(), i.gateway.map(|g| g.to_string())))
            .collect()
    }

    #[test]
    fn add_returns_the_configuration() {
        let mut h = FakeHost::new();
        let r = Static::add(&mut h, &inv(base())).expect("add");
        assert!(r.interfaces.is_empty());
        assert_eq!(
            ips(&r),
            [
                ("10.10.0.1/24".to_string(), Some("10.10.0.254".to_string())),
                (
                    "3ffe:ffff:0:1ff::1/64".to_string(),
                    Some("3ffe:ffff::1".to_string())
                )
            ]
        );
        assert!(r.ips.iter().all(|i| i.interface.is_none()));
        assert_eq!(r.routes.len(), 2);
        assert_eq!(
            r.routes[1].gw.map(|g| g.to_string()).as_deref(),
            Some("10.10.5.1")
        );
        assert_eq!(r.dns.nameservers, ["8.8.8.8"]);
        assert_eq!(r.dns.domain, "example.com");
        assert_eq!(r.dns.options, ["ndots:2"]);
        Static::del(&mut h, &inv(base())).expect("del is a no-op");
    }

    #[test]
    fn keys_are_case_insensitive() {
        let mut h = FakeHost::new();
        let c = json!({"cniVersion": "1.0.0", "name": "n", "IPAM": {"Addresses": [{"Address": "10.0.0.5/8", "Gateway": "10.0.0.1"}],
            "DNS": {"Nameservers": ["1.1.1.1"]}}});
        let r = Static::add(&mut h, &inv(c)).expect("add");
        assert_eq!(
            ips(&r),
            [("10.0.0.5/8".to_string(), Some("10.0.0.1".to_string()))]
        );
        assert_eq!(r.dns.nameservers, ["1.1.1.1"]);
    }

    #[test]
    fn cni_args_append_and_set_gateways() {
        let mut h = FakeHost::new();
        let mut i = inv(
            json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "static", "addresses": [{"address": "10.10.0.1/24"}]}}),
        );
        i.args = vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("IP".into(), "10.20.0.5/24, fd00::5/64".into()),
            ("GATEWAY".into(), "10.20.0.1,fd00::1".into()),
        ];
        let r = Static::add(&mut h, &i).expect("add");
        assert_eq!(
            ips(&r),
            [
                ("10.10.0.1/24".to_string(), None),
                ("10.20.0.5/24".to_string(), Some("10.20.0.1".to_string())),
                ("fd00::5/64".to_string(), Some("fd00::1".to_string()))
            ]
        );
    }

    #[test]
    fn args_and_runtime_config_override_in_order() {
        let mut h = FakeHost::new();
        let mut c = base();
        c["args"] = json!({"cni": {"ips": ["10.30.0.3/16"]}});
        let mut i = inv(c.clone());
        i.args = vec![("IP".into(), "10.20.0.5/24".into())];
        assert_eq!(
            ips(&Static::add(&mut h, &i).expect("args")),
            [("10.30.0.3/16".to_string(), None)]
        );
        c["runtimeConfig"] = json!({"ips": ["10.40.0.4/24", "fd40::4/64"]});
        let r = Static::add(&mut h, &inv(c)).expect("runtime");
        assert_eq!(
            ips(&r),
            [
                ("10.40.0.4/24".to_string(), None),
                ("fd40::4/64".to_string(), None)
            ]
        );
    }

    #[test]
    fn validation_errors() {
        let mut h = FakeHost::new();
        let cases = [
            (
                json!({"cniVersion": "1.0.0", "name": "n"}),
                "IPAM config missing 'ipam' key",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"addresses": [{"address": "10.0.0.1"}]}}),
                "invalid CIDR 10.0.0.1",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"addresses": [{"address": "10.0.0.1/24", "gateway": "x"}]}}),
                "invalid gateway",
            ),
            (
                json!({"cniVersion": "0.2.0", "name": "n", "ipam": {"addresses": [{"address": "10.0.0.1/24"}, {"address": "10.0.1.1/24"}]}}),
                "CNI version 0.2.0 does not support more than 1 address per family",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {}, "runtimeConfig": {"ips": ["10.0.0.1"]}}),
                "invalid CIDR 10.0.0.1",
            ),
        ];
        for (c, msg) in cases {
            let e = Static::add(&mut h, &inv(c)).expect_err(msg);
            assert_eq!(e.code, 7, "{e}");
            assert!(e.msg.starts_with(msg), "{} vs {msg}", e.msg);
        }
        let mut i = inv(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {}}));
        i.args = vec![("GATEWAY".into(), "nope".into())];
        assert_eq!(
            Static::add(&mut h, &i).expect_err("gw").msg,
            "invalid gateway address: nope"
        );
        // Dual stack on an old version is fine, as is no address at all.
        Static::add(&mut h, &inv(json!({"cniVersion": "0.2.0", "name": "n", "ipam": {"addresses": [{"address": "10.0.0.1/24"}, {"address": "fd00::1/64"}]}})))
            .expect("one per family");
        let r = Static::add(
            &mut h,
            &inv(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "static"}})),
        )
        .expect("empty");
        assert!(r.ips.is_empty());
        Static::status(&mut h, &inv(base())).expect("status");
    }

    #[test]
    fn check_compares_with_prev_result() {
        let mut h = FakeHost::new();
        let mut i = inv(base());
        assert_eq!(
            Static::check(&mut h, &i).expect_err("no prev").msg,
            "Required prevResult missing"
        );
        let mut prev = Static::add(&mut h, &i).expect("add");
        // A main plugin attaches the addresses to an interface: still fine.
        for ip in &mut prev.ips {
            ip.interface = Some(0);
        }
        i.prev_result = Some(prev.clone());
        Static::check(&mut h, &i).expect("matches");
        let mut wrong_gw = prev.clone();
        wrong_gw.ips[0].gateway = Some("10.10.0.9".parse().expect("ip"));
        i.prev_result = Some(wrong_gw);
        assert_eq!(
            Static::check(&mut h, &i).expect_err("gw").msg,
            "static: Failed to match addr 10.10.0.1 on interface eth0"
        );
        let mut missing = prev;
        missing.ips.remove(1);
        i.prev_result = Some(missing);
        assert!(Static::check(&mut h, &i)
            .expect_err("missing")
            .msg
            .contains("3ffe:ffff:0:1ff::1"));
    }
}
