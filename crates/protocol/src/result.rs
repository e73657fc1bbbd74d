//! Host-side model of a CNI success result and its conversion to and from
//! every spec version's JSON. Plugins produce one model; the host renders it
//! in whatever `cniVersion` the runtime asked for, and reads `prevResult`
//! (possibly written by a third-party plugin in an older version) back into
//! the same model.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::error::{code, CniError};
use super::version::{incompatible_details, is_supported, json_kind, Version};

/// A success result, independent of spec version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// An interface the plugin created or knows about. Empty strings mean
/// "absent" because that is how the Go reference (omitempty) treats them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// 0 is treated as unset (Go `omitempty`), so `Some(0)` is not rendered.
    pub mtu: Option<u32>,
    pub sandbox: String,
    pub socket_path: String,
    pub pci_id: String,
}

/// One address. `interface` indexes [`CniResult::interfaces`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix, e.g. "10.1.0.5/16" (host bits kept).
    pub address: String,
    pub gateway: Option<String>,
    pub interface: Option<u32>,
}

/// A route. `mtu`/`advmss`/`priority` treat 0 as unset (Go `omitempty`);
/// `table`/`scope` are real options because 0 is meaningful for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub dst: String,
    pub gw: Option<String>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

/// DNS settings; empty members are omitted on output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: String,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// Output shape families; the spec changed shape at 0.3.0, dropped
/// `ips[].version` at 1.0.0 and added fields at 1.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Legacy,
    V03,
    V10,
    V11,
}

fn shape_of(v: Version) -> Shape {
    if v < Version::V0_3_0 {
        Shape::Legacy
    } else if v < Version::V1_0_0 {
        Shape::V03
    } else if v < Version::V1_1_0 {
        Shape::V10
    } else {
        Shape::V11
    }
}

// ---------------------------------------------------------------- addresses

/// Parse "ip/prefix" the way Go's `net.ParseCIDR` accepts it and return the
/// canonical text, the address and whether it is (mapped) IPv4. Canonical
/// text keeps output stable whatever spelling a plugin used.
fn parse_cidr(s: &str) -> Option<(String, IpAddr)> {
    let (ip, prefix) = s.split_once('/')?;
    let addr: IpAddr = ip.parse().ok()?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u32 = prefix.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return None;
    }
    Some((format!("{addr}/{bits}"), addr))
}

fn parse_ip(s: &str) -> Option<String> {
    s.parse::<IpAddr>().ok().map(|a| a.to_string())
}

/// IPv4-mapped IPv6 counts as IPv4, as Go's `To4() != nil` does.
fn is_v4(addr: IpAddr) -> bool {
    addr.to_canonical().is_ipv4()
}

// ---------------------------------------------------------------- render

fn invalid(what: String) -> CniError {
    CniError::new(code::INTERNAL, format!("invalid result: {what}"))
}

fn nonzero(v: Option<u32>) -> Option<u32> {
    v.filter(|n| *n != 0)
}

/// Addresses after validation, so rendering never re-parses.
struct Checked {
    ips: Vec<(String, Option<String>, IpAddr)>,
    routes: Vec<(String, Option<String>, IpAddr)>,
}

/// Checks that `r` can be rendered: every address, gateway and route
/// parses, and every `ips[].interface` indexes `interfaces`.
pub fn validate(r: &CniResult) -> Result<(), CniError> {
    check(r).map(drop)
}

fn check(r: &CniResult) -> Result<Checked, CniError> {
    let mut ips = Vec::with_capacity(r.ips.len());
    for (i, ip) in r.ips.iter().enumerate() {
        let (addr, parsed) = parse_cidr(&ip.address).ok_or_else(|| {
            invalid(format!(
                "ips[{i}].address {:?} is not an address with prefix (e.g. 10.1.0.5/16)",
                ip.address
            ))
        })?;
        let gw =
            match &ip.gateway {
                Some(g) => Some(parse_ip(g).ok_or_else(|| {
                    invalid(format!("ips[{i}].gateway {g:?} is not an IP address"))
                })?),
                None => None,
            };
        if let Some(idx) = ip.interface {
            if usize::try_from(idx).map_or(true, |n| n >= r.interfaces.len()) {
                return Err(invalid(format!(
                    "ips[{i}].interface {idx} is out of range: the result has {} interface(s)",
                    r.interfaces.len()
                )));
            }
        }
        ips.push((addr, gw, parsed));
    }
    let mut routes = Vec::with_capacity(r.routes.len());
    for (i, rt) in r.routes.iter().enumerate() {
        let (dst, parsed) = parse_cidr(&rt.dst).ok_or_else(|| {
            invalid(format!(
                "routes[{i}].dst {:?} is not an address with prefix (e.g. 0.0.0.0/0)",
                rt.dst
            ))
        })?;
        let gw = match &rt.gw {
            Some(g) => Some(
                parse_ip(g)
                    .ok_or_else(|| invalid(format!("routes[{i}].gw {g:?} is not an IP address")))?,
            ),
            None => None,
        };
        routes.push((dst, gw, parsed));
    }
    Ok(Checked { ips, routes })
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.to_string(), Value::from(v));
    }
}

fn put_u32(m: &mut Map<String, Value>, k: &str, v: Option<u32>) {
    if let Some(n) = v {
        m.insert(k.to_string(), Value::from(n));
    }
}

fn put_list(m: &mut Map<String, Value>, k: &str, v: &[String]) {
    if !v.is_empty() {
        m.insert(k.to_string(), Value::from(v.to_vec()));
    }
}

fn render_dns(d: &Dns) -> Value {
    let mut m = Map::new();
    put_list(&mut m, "nameservers", &d.nameservers);
    put_str(&mut m, "domain", &d.domain);
    put_list(&mut m, "search", &d.search);
    put_list(&mut m, "options", &d.options);
    Value::Object(m)
}

fn render_route(rt: &Route, dst: &str, gw: Option<&str>, shape: Shape) -> Value {
    let mut m = Map::new();
    m.insert("dst".into(), Value::from(dst));
    if let Some(g) = gw {
        m.insert("gw".into(), Value::from(g));
    }
    if shape == Shape::V11 {
        put_u32(&mut m, "mtu", nonzero(rt.mtu));
        put_u32(&mut m, "advmss", nonzero(rt.advmss));
        put_u32(&mut m, "priority", nonzero(rt.priority));
        put_u32(&mut m, "table", rt.table);
        put_u32(&mut m, "scope", rt.scope);
    }
    Value::Object(m)
}

/// Render `r` as the success JSON of spec `cni_version`.
///
/// Keys are inserted in spec order (cniVersion, interfaces, ips, routes,
/// dns); without serde_json's `preserve_order` the map sorts them, which
/// runtimes do not care about. Empty lists are omitted, `dns` is always an
/// object, like the reference. Before 0.3.0 only the first IPv4 and first
/// IPv6 address survive and routes are grouped under the matching family
/// (routes of a family with no address are dropped, as in the reference).
pub fn render(r: &CniResult, cni_version: &str) -> Result<Value, CniError> {
    if !is_supported(cni_version) {
        return Err(
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
                .with_details(incompatible_details(cni_version)),
        );
    }
    let shape = shape_of(Version::parse(cni_version)?);
    let checked = check(r)?;

    let mut out = Map::new();
    out.insert("cniVersion".into(), Value::from(cni_version));

    if shape == Shape::Legacy {
        // (ip4, ip6): the first address of each family, then its routes.
        let mut v4: Option<(Map<String, Value>, Vec<Value>)> = None;
        let mut v6: Option<(Map<String, Value>, Vec<Value>)> = None;
        for (addr, gw, parsed) in &checked.ips {
            let slot = if is_v4(*parsed) { &mut v4 } else { &mut v6 };
            if slot.is_none() {
                let mut m = Map::new();
                m.insert("ip".into(), Value::from(addr.as_str()));
                if let Some(g) = gw {
                    m.insert("gateway".into(), Value::from(g.as_str()));
                }
                *slot = Some((m, Vec::new()));
            }
        }
        for ((dst, gw, parsed), rt) in checked.routes.iter().zip(&r.routes) {
            let slot = if is_v4(*parsed) { &mut v4 } else { &mut v6 };
            if let Some((_, routes)) = slot {
                routes.push(render_route(rt, dst, gw.as_deref(), shape));
            }
        }
        for (key, fam) in [("ip4", v4), ("ip6", v6)] {
            if let Some((mut m, routes)) = fam {
                if !routes.is_empty() {
                    m.insert("routes".into(), Value::Array(routes));
                }
                out.insert(key.to_string(), Value::Object(m));
            }
        }
        out.insert("dns".into(), render_dns(&r.dns));
        return Ok(Value::Object(out));
    }

    if !r.interfaces.is_empty() {
        let list = r
            .interfaces
            .iter()
            .map(|i| {
                let mut m = Map::new();
                m.insert("name".into(), Value::from(i.name.as_str()));
                put_str(&mut m, "mac", &i.mac);
                if shape == Shape::V11 {
                    put_u32(&mut m, "mtu", nonzero(i.mtu));
                }
                put_str(&mut m, "sandbox", &i.sandbox);
                if shape == Shape::V11 {
                    put_str(&mut m, "socketPath", &i.socket_path);
                    put_str(&mut m, "pciID", &i.pci_id);
                }
                Value::Object(m)
            })
            .collect();
        out.insert("interfaces".into(), Value::Array(list));
    }
    if !r.ips.is_empty() {
        let list = checked
            .ips
            .iter()
            .zip(&r.ips)
            .map(|((addr, gw, parsed), ip)| {
                let mut m = Map::new();
                if shape == Shape::V03 {
                    let v = if is_v4(*parsed) { "4" } else { "6" };
                    m.insert("version".into(), Value::from(v));
                }
                m.insert("address".into(), Value::from(addr.as_str()));
                if let Some(g) = gw {
                    m.insert("gateway".into(), Value::from(g.as_str()));
                }
                put_u32(&mut m, "interface", ip.interface);
                Value::Object(m)
            })
            .collect();
        out.insert("ips".into(), Value::Array(list));
    }
    if !r.routes.is_empty() {
        let list = checked
            .routes
            .iter()
            .zip(&r.routes)
            .map(|((dst, gw, _), rt)| render_route(rt, dst, gw.as_deref(), shape))
            .collect();
        out.insert("routes".into(), Value::Array(list));
    }
    out.insert("dns".into(), render_dns(&r.dns));
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------- parse

/// "a.b" path for error details; top-level members have no leading dot.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn bad(path: &str, what: String) -> CniError {
    CniError::new(code::DECODING_FAILURE, "failed to decode CNI result")
        .with_details(format!("{path}: {what}"))
}

fn as_obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, CniError> {
    v.as_object()
        .ok_or_else(|| bad(path, format!("expected an object, got {}", json_kind(v))))
}

/// A member, with JSON `null` treated as absent (Go decodes null as zero).
fn member<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn get_str(m: &Map<String, Value>, key: &str, path: &str) -> Result<String, CniError> {
    match member(m, key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(bad(
            &join(path, key),
            format!("expected a string, got {}", json_kind(v)),
        )),
    }
}

fn get_u32(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>, CniError> {
    match member(m, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                bad(
                    &join(path, key),
                    format!("expected an integer in 0..=4294967295, got {v}"),
                )
            }),
    }
}

fn get_arr<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a [Value], CniError> {
    match member(m, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(bad(
            &join(path, key),
            format!("expected an array, got {}", json_kind(v)),
        )),
    }
}

fn get_str_list(m: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<String>, CniError> {
    get_arr(m, key, path)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(bad(
                &format!("{}[{i}]", join(path, key)),
                format!("expected a string, got {}", json_kind(other)),
            )),
        })
        .collect()
}

fn get_cidr(m: &Map<String, Value>, key: &str, path: &str) -> Result<String, CniError> {
    let p = join(path, key);
    if member(m, key).is_none() {
        return Err(bad(&p, "is required".into()));
    }
    let s = get_str(m, key, path)?;
    parse_cidr(&s)
        .map(|(c, _)| c)
        .ok_or_else(|| bad(&p, format!("{s:?} is not an address with prefix")))
}

fn get_ip(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, CniError> {
    if member(m, key).is_none() {
        return Ok(None);
    }
    let s = get_str(m, key, path)?;
    // Go decodes "" as a nil IP, i.e. absent.
    if s.is_empty() {
        return Ok(None);
    }
    parse_ip(&s)
        .map(Some)
        .ok_or_else(|| bad(&join(path, key), format!("{s:?} is not an IP address")))
}

fn parse_route(v: &Value, path: &str) -> Result<Route, CniError> {
    let m = as_obj(v, path)?;
    Ok(Route {
        dst: get_cidr(m, "dst", path)?,
        gw: get_ip(m, "gw", path)?,
        mtu: nonzero(get_u32(m, "mtu", path)?),
        advmss: nonzero(get_u32(m, "advmss", path)?),
        priority: nonzero(get_u32(m, "priority", path)?),
        table: get_u32(m, "table", path)?,
        scope: get_u32(m, "scope", path)?,
    })
}

fn parse_routes(m: &Map<String, Value>, path: &str) -> Result<Vec<Route>, CniError> {
    get_arr(m, "routes", path)?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_route(v, &format!("{}[{i}]", join(path, "routes"))))
        .collect()
}

fn parse_dns(m: &Map<String, Value>) -> Result<Dns, CniError> {
    let Some(v) = member(m, "dns") else {
        return Ok(Dns::default());
    };
    let d = as_obj(v, "dns")?;
    Ok(Dns {
        nameservers: get_str_list(d, "nameservers", "dns")?,
        domain: get_str(d, "domain", "dns")?,
        search: get_str_list(d, "search", "dns")?,
        options: get_str_list(d, "options", "dns")?,
    })
}

fn parse_legacy(m: &Map<String, Value>) -> Result<CniResult, CniError> {
    let mut r = CniResult::default();
    for key in ["ip4", "ip6"] {
        let Some(v) = member(m, key) else { continue };
        let ipm = as_obj(v, key)?;
        r.ips.push(IpConfig {
            address: get_cidr(ipm, "ip", key)?,
            gateway: get_ip(ipm, "gateway", key)?,
            interface: None,
        });
        r.routes.extend(parse_routes(ipm, key)?);
    }
    r.dns = parse_dns(m)?;
    Ok(r)
}

fn parse_modern(m: &Map<String, Value>) -> Result<CniResult, CniError> {
    let mut r = CniResult::default();
    for (i, v) in get_arr(m, "interfaces", "")?.iter().enumerate() {
        let path = format!("interfaces[{i}]");
        let im = as_obj(v, &path)?;
        r.interfaces.push(Interface {
            name: get_str(im, "name", &path)?,
            mac: get_str(im, "mac", &path)?,
            mtu: nonzero(get_u32(im, "mtu", &path)?),
            sandbox: get_str(im, "sandbox", &path)?,
            socket_path: get_str(im, "socketPath", &path)?,
            pci_id: get_str(im, "pciID", &path)?,
        });
    }
    for (i, v) in get_arr(m, "ips", "")?.iter().enumerate() {
        let path = format!("ips[{i}]");
        let im = as_obj(v, &path)?;
        // `version` (0.3.x/0.4.0) is redundant with the address; ignored
        // like the reference's converters do.
        r.ips.push(IpConfig {
            address: get_cidr(im, "address", &path)?,
            gateway: get_ip(im, "gateway", &path)?,
            interface: get_u32(im, "interface", &path)?,
        });
    }
    r.routes = parse_routes(m, "")?;
    r.dns = parse_dns(m)?;
    Ok(r)
}

/// Read a result (typically `prevResult`, or a delegated IPAM plugin's
/// output) written in any spec version. The document's own `cniVersion`
/// wins; `cni_version` (the config's) is the fallback, as the spec says.
/// Versions newer than ours are read with the newest shape so a newer
/// runtime's cached result still works. Malformed input is code 6.
pub fn parse(v: &Value, cni_version: &str) -> Result<CniResult, CniError> {
    let m = as_obj(v, "result")?;
    let ver = match member(m, "cniVersion") {
        None => cni_version.to_string(),
        Some(Value::String(s)) if s.is_empty() => cni_version.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(
                "cniVersion",
                format!("expected a string, got {}", json_kind(other)),
            ))
        }
    };
    let ver = Version::parse(&ver)?;
    let r = if shape_of(ver) == Shape::Legacy {
        parse_legacy(m)?
    } else {
        parse_modern(m)?
    };
    Ok(r)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::super::version::SUPPORTED;
    use super::*;
    use serde_json::json;

    fn s(x: &str) -> String {
        x.to_string()
    }

    /// A result exercising every field.
    fn rich() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: s("cni0"),
                    mac: s("0a:58:0a:01:00:01"),
                    mtu: Some(1450),
                    ..Default::default()
                },
                Interface {
                    name: s("eth0"),
                    mac: s("0a:58:0a:01:00:05"),
                    mtu: Some(1450),
                    sandbox: s("/run/netns/test"),
                    socket_path: s("/run/vhost.sock"),
                    pci_id: s("0000:00:1f.6"),
                },
            ],
            ips: vec![
                IpConfig {
                    address: s("10.1.0.5/16"),
                    gateway: Some(s("10.1.0.1")),
                    interface: Some(1),
                },
                IpConfig {
                    address: s("2001:db8::5/64"),
                    gateway: Some(s("2001:db8::1")),
                    interface: Some(1),
                },
                IpConfig {
                    address: s("10.2.0.5/24"),
                    gateway: None,
                    interface: None,
                },
            ],
            routes: vec![
                Route {
                    dst: s("0.0.0.0/0"),
                    gw: Some(s("10.1.0.1")),
                    mtu: Some(1400),
                    advmss: Some(1360),
                    priority: Some(100),
                    table: Some(0),
                    scope: Some(253),
                },
                Route {
                    dst: s("::/0"),
                    gw: None,
                    table: Some(42),
                    ..Default::default()
                },
                Route {
                    dst: s("192.168.0.0/16"),
                    ..Default::default()
                },
            ],
            dns: Dns {
                nameservers: vec![s("10.1.0.1"), s("2001:db8::1")],
                domain: s("example.com"),
                search: vec![s("svc.example.com")],
                options: vec![s("ndots:5")],
            },
        }
    }

    fn dns_json() -> Value {
        json!({"nameservers": ["10.1.0.1", "2001:db8::1"], "domain": "example.com",
               "search": ["svc.example.com"], "options": ["ndots:5"]})
    }

    fn golden(v: &str) -> Value {
        match v {
            "0.1.0" | "0.2.0" => json!({
                "cniVersion": v,
                "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "192.168.0.0/16"}]},
                "ip6": {"ip": "2001:db8::5/64", "gateway": "2001:db8::1",
                        "routes": [{"dst": "::/0"}]},
                "dns": dns_json(),
            }),
            "0.3.0" | "0.3.1" | "0.4.0" => json!({
                "cniVersion": v,
                "interfaces": [
                    {"name": "cni0", "mac": "0a:58:0a:01:00:01"},
                    {"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/run/netns/test"}
                ],
                "ips": [
                    {"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                    {"version": "6", "address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 1},
                    {"version": "4", "address": "10.2.0.5/24"}
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}, {"dst": "192.168.0.0/16"}],
                "dns": dns_json(),
            }),
            "1.0.0" => json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cni0", "mac": "0a:58:0a:01:00:01"},
                    {"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/run/netns/test"}
                ],
                "ips": [
                    {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                    {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 1},
                    {"address": "10.2.0.5/24"}
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}, {"dst": "192.168.0.0/16"}],
                "dns": dns_json(),
            }),
            "1.1.0" => json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "cni0", "mac": "0a:58:0a:01:00:01", "mtu": 1450},
                    {"name": "eth0", "mac": "0a:58:0a:01:00:05", "mtu": 1450, "sandbox": "/run/netns/test",
                     "socketPath": "/run/vhost.sock", "pciID": "0000:00:1f.6"}
                ],
                "ips": [
                    {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                    {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 1},
                    {"address": "10.2.0.5/24"}
                ],
                "routes": [
                    {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1400, "advmss": 1360,
                     "priority": 100, "table": 0, "scope": 253},
                    {"dst": "::/0", "table": 42},
                    {"dst": "192.168.0.0/16"}
                ],
                "dns": dns_json(),
            }),
            other => panic!("no golden for {other}"),
        }
    }

    /// What survives a render in `v` and a parse back.
    fn projected(r: &CniResult, v: &str) -> CniResult {
        let shape = shape_of(Version::parse(v).unwrap());
        let mut p = r.clone();
        match shape {
            Shape::Legacy => {
                p.interfaces.clear();
                let v4 = r.ips.iter().find(|i| !i.address.contains(':')).cloned();
                let v6 = r.ips.iter().find(|i| i.address.contains(':')).cloned();
                p.ips = v4
                    .iter()
                    .chain(v6.iter())
                    .cloned()
                    .map(|mut i| {
                        i.interface = None;
                        i
                    })
                    .collect();
                let strip = |rt: &Route| Route {
                    dst: rt.dst.clone(),
                    gw: rt.gw.clone(),
                    ..Default::default()
                };
                let r4 = r
                    .routes
                    .iter()
                    .filter(|x| !x.dst.contains(':') && v4.is_some())
                    .map(strip);
                let r6 = r
                    .routes
                    .iter()
                    .filter(|x| x.dst.contains(':') && v6.is_some())
                    .map(strip);
                p.routes = r4.chain(r6).collect();
            }
            Shape::V03 | Shape::V10 => {
                for i in &mut p.interfaces {
                    i.mtu = None;
                    i.socket_path.clear();
                    i.pci_id.clear();
                }
                for rt in &mut p.routes {
                    *rt = Route {
                        dst: rt.dst.clone(),
                        gw: rt.gw.clone(),
                        ..Default::default()
                    };
                }
            }
            Shape::V11 => {}
        }
        p
    }

    #[test]
    fn golden_every_version() {
        for v in SUPPORTED {
            assert_eq!(render(&rich(), v).unwrap(), golden(v), "version {v}");
        }
    }

    #[test]
    fn empty_result_every_version() {
        for v in SUPPORTED {
            assert_eq!(
                render(&CniResult::default(), v).unwrap(),
                json!({"cniVersion": v, "dns": {}})
            );
        }
    }

    #[test]
    fn ipam_style_abbreviated_result() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: s("10.22.0.2/16"),
                gateway: Some(s("10.22.0.1")),
                interface: None,
            }],
            routes: vec![Route {
                dst: s("0.0.0.0/0"),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            render(&r, "0.4.0").unwrap(),
            json!({"cniVersion": "0.4.0",
                   "ips": [{"version": "4", "address": "10.22.0.2/16", "gateway": "10.22.0.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}], "dns": {}})
        );
    }

    #[test]
    fn dns_partial_members_omitted() {
        let r = CniResult {
            dns: Dns {
                domain: s("x.local"),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            render(&r, "1.0.0").unwrap()["dns"],
            json!({"domain": "x.local"})
        );
        assert!(!r.dns.is_empty());
        assert!(Dns::default().is_empty());
    }

    #[test]
    fn zero_means_unset_for_mtu_like_fields() {
        let r = CniResult {
            interfaces: vec![Interface {
                name: s("eth0"),
                mtu: Some(0),
                ..Default::default()
            }],
            routes: vec![Route {
                dst: s("0.0.0.0/0"),
                mtu: Some(0),
                advmss: Some(0),
                priority: Some(0),
                table: Some(0),
                scope: Some(0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = render(&r, "1.1.0").unwrap();
        assert_eq!(out["interfaces"], json!([{"name": "eth0"}]));
        assert_eq!(
            out["routes"],
            json!([{"dst": "0.0.0.0/0", "table": 0, "scope": 0}])
        );
    }

    #[test]
    fn legacy_drops_extra_ips_and_orphan_routes() {
        let r = CniResult {
            ips: vec![
                IpConfig {
                    address: s("10.0.0.2/24"),
                    ..Default::default()
                },
                IpConfig {
                    address: s("10.0.1.2/24"),
                    ..Default::default()
                },
            ],
            routes: vec![
                Route {
                    dst: s("::/0"),
                    ..Default::default()
                },
                Route {
                    dst: s("10.9.0.0/16"),
                    gw: Some(s("10.0.0.1")),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            render(&r, "0.2.0").unwrap(),
            json!({"cniVersion": "0.2.0",
                   "ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "10.9.0.0/16", "gw": "10.0.0.1"}]},
                   "dns": {}})
        );
    }

    #[test]
    fn render_canonicalises_addresses() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: s("2001:DB8:0:0::5/064"),
                gateway: Some(s("2001:DB8::1")),
                interface: None,
            }],
            routes: vec![Route {
                dst: s("0:0::0/0"),
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = render(&r, "1.0.0").unwrap();
        assert_eq!(out["ips"][0]["address"], "2001:db8::5/64");
        assert_eq!(out["ips"][0]["gateway"], "2001:db8::1");
        assert_eq!(out["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn v4_mapped_counts_as_v4() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: s("::ffff:10.0.0.1/120"),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(render(&r, "0.4.0").unwrap()["ips"][0]["version"], "4");
        assert!(render(&r, "0.2.0").unwrap().get("ip4").is_some());
    }

    #[test]
    fn render_rejects_invalid_with_999() {
        let base = CniResult {
            interfaces: vec![Interface {
                name: s("eth0"),
                ..Default::default()
            }],
            ips: vec![IpConfig {
                address: s("10.0.0.2/24"),
                gateway: None,
                interface: Some(0),
            }],
            routes: vec![Route {
                dst: s("0.0.0.0/0"),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(render(&base, "1.0.0").is_ok());
        type Mutator = fn(&mut CniResult);
        let cases: [(Mutator, &str); 11] = [
            (|r| r.ips[0].address = s("10.0.0.2"), "ips[0].address"),
            (|r| r.ips[0].address = s("10.0.0.2/33"), "ips[0].address"),
            (
                |r| r.ips[0].address = s("2001:db8::1/129"),
                "ips[0].address",
            ),
            (|r| r.ips[0].address = s("10.0.0.256/24"), "ips[0].address"),
            (|r| r.ips[0].address = s("10.0.0.2/-1"), "ips[0].address"),
            (
                |r| r.ips[0].address = s("fe80::1%eth0/64"),
                "ips[0].address",
            ),
            (
                |r| r.ips[0].gateway = Some(s("10.0.0.1/24")),
                "ips[0].gateway",
            ),
            (
                |r| r.ips[0].interface = Some(1),
                "ips[0].interface 1 is out of range",
            ),
            (|r| r.routes[0].dst = s("default"), "routes[0].dst"),
            (|r| r.routes[0].gw = Some(s("")), "routes[0].gw"),
            (
                |r| {
                    r.interfaces.clear();
                },
                "ips[0].interface 0 is out of range",
            ),
        ];
        for (mutate, what) in cases {
            let mut r = base.clone();
            mutate(&mut r);
            for v in SUPPORTED {
                let e = render(&r, v).unwrap_err();
                assert_eq!(e.code, 999, "{what}");
                assert!(e.msg.contains(what), "{what}: {}", e.msg);
            }
        }
    }

    #[test]
    fn render_rejects_unsupported_version() {
        for v in ["", "1.0", "1.2.0", "0.3.2", "x"] {
            let e = render(&CniResult::default(), v).unwrap_err();
            assert_eq!(e.code, 1, "{v}");
            assert!(e.details.contains("plugin supports"));
        }
    }

    #[test]
    fn round_trip_every_version() {
        for v in SUPPORTED {
            let out = render(&rich(), v).unwrap();
            // With and without the document carrying its own version.
            assert_eq!(parse(&out, "0.0.0").unwrap(), projected(&rich(), v), "{v}");
            let mut bare = out.clone();
            bare.as_object_mut().unwrap().remove("cniVersion");
            assert_eq!(parse(&bare, v).unwrap(), projected(&rich(), v), "{v}");
            // Rendering again is stable.
            assert_eq!(render(&parse(&out, v).unwrap(), v).unwrap(), out, "{v}");
        }
    }

    #[test]
    fn convert_020_prev_result_to_100() {
        let prev = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.254"}]},
            "ip6": {"ip": "2001:db8::5/64", "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
            "dns": {"nameservers": ["10.1.0.1"]}
        });
        let r = parse(&prev, "1.0.0").unwrap();
        assert_eq!(
            render(&r, "1.0.0").unwrap(),
            json!({
                "cniVersion": "1.0.0",
                "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}, {"address": "2001:db8::5/64"}],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.254"},
                           {"dst": "::/0", "gw": "2001:db8::1"}],
                "dns": {"nameservers": ["10.1.0.1"]}
            })
        );
    }

    #[test]
    fn convert_040_prev_result_to_110() {
        let prev = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "cni0", "mac": "00:11:22:33:44:55"},
                           {"name": "eth0", "mac": "00:11:22:33:44:66", "sandbox": "/proc/42/ns/net"}],
            "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let r = parse(&prev, "1.1.0").unwrap();
        assert_eq!(
            render(&r, "1.1.0").unwrap(),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "cni0", "mac": "00:11:22:33:44:55"},
                               {"name": "eth0", "mac": "00:11:22:33:44:66", "sandbox": "/proc/42/ns/net"}],
                "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn convert_110_down_to_020() {
        let r = parse(&golden("1.1.0"), "1.1.0").unwrap();
        assert_eq!(render(&r, "0.2.0").unwrap(), golden("0.2.0"));
        assert_eq!(render(&r, "0.3.1").unwrap(), golden("0.3.1"));
    }

    #[test]
    fn parse_uses_own_version_over_config() {
        // A legacy document read under a 1.0.0 config is still legacy.
        let legacy = json!({"cniVersion": "0.1.0", "ip4": {"ip": "10.0.0.2/24"}});
        assert_eq!(
            parse(&legacy, "1.0.0").unwrap().ips[0].address,
            "10.0.0.2/24"
        );
        // Without its own version it is read as the config's version:
        // under 1.0.0, `ip4` is just an unknown key.
        let bare = json!({"ip4": {"ip": "10.0.0.2/24"}});
        assert!(parse(&bare, "1.0.0").unwrap().ips.is_empty());
        assert_eq!(parse(&bare, "0.2.0").unwrap().ips.len(), 1);
        // Newer-than-known versions are read with the newest shape.
        let newer = json!({"cniVersion": "1.2.0", "ips": [{"address": "10.0.0.2/24"}], "extra": 1});
        assert_eq!(parse(&newer, "1.1.0").unwrap().ips.len(), 1);
    }

    #[test]
    fn parse_tolerates_nulls_and_unknown_keys() {
        let v = json!({
            "cniVersion": "1.0.0",
            "interfaces": null, "routes": null, "dns": null, "whatever": [1, 2],
            "ips": [{"address": "10.0.0.2/24", "gateway": null, "interface": null, "version": "4"}]
        });
        let r = parse(&v, "1.0.0").unwrap();
        assert_eq!(
            r.ips,
            vec![IpConfig {
                address: s("10.0.0.2/24"),
                gateway: None,
                interface: None
            }]
        );
        // Empty gateway string is Go's nil IP.
        let v = json!({"ips": [{"address": "10.0.0.2/24", "gateway": ""}]});
        assert_eq!(parse(&v, "0.4.0").unwrap().ips[0].gateway, None);
    }

    #[test]
    fn parse_errors_are_code_6_with_path() {
        let cases = [
            (json!([]), "result"),
            (json!({"cniVersion": 1}), "cniVersion"),
            (json!({"interfaces": {}}), "interfaces"),
            (json!({"interfaces": [1]}), "interfaces[0]"),
            (json!({"interfaces": [{"name": 5}]}), "interfaces[0].name"),
            (
                json!({"interfaces": [{"name": "e", "mtu": -1}]}),
                "interfaces[0].mtu",
            ),
            (
                json!({"interfaces": [{"name": "e", "mtu": 1.5}]}),
                "interfaces[0].mtu",
            ),
            (
                json!({"interfaces": [{"name": "e", "mtu": 4294967296u64}]}),
                "interfaces[0].mtu",
            ),
            (json!({"ips": [{}]}), "ips[0].address"),
            (json!({"ips": [{"address": "10.0.0.1"}]}), "ips[0].address"),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "gateway": "x"}]}),
                "ips[0].gateway",
            ),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "interface": -1}]}),
                "ips[0].interface",
            ),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "interface": "0"}]}),
                "ips[0].interface",
            ),
            (json!({"routes": [{"gw": "10.0.0.1"}]}), "routes[0].dst"),
            (
                json!({"routes": [{"dst": "0.0.0.0/0", "table": "main"}]}),
                "routes[0].table",
            ),
            (json!({"dns": []}), "dns"),
            (
                json!({"dns": {"nameservers": "1.1.1.1"}}),
                "dns.nameservers",
            ),
            (json!({"dns": {"search": [1]}}), "dns.search[0]"),
            (json!({"dns": {"domain": ["x"]}}), "dns.domain"),
        ];
        for (doc, path) in cases {
            let e = parse(&doc, "1.0.0").unwrap_err();
            assert_eq!(e.code, 6, "{doc}");
            assert!(e.details.contains(path), "{doc}: {}", e.details);
        }
        let legacy = [
            (json!({"ip4": "10.0.0.1/24"}), "ip4"),
            (json!({"ip4": {}}), "ip4.ip"),
            (
                json!({"ip6": {"ip": "10.0.0.1/24", "routes": [{"dst": 3}]}}),
                "ip6.routes[0].dst",
            ),
        ];
        for (doc, path) in legacy {
            let e = parse(&doc, "0.2.0").unwrap_err();
            assert_eq!(e.code, 6, "{doc}");
            assert!(e.details.contains(path), "{doc}: {}", e.details);
        }
        assert_eq!(
            parse(&json!({"cniVersion": "abc"}), "1.0.0")
                .unwrap_err()
                .code,
            6
        );
        assert_eq!(parse(&json!({}), "garbage").unwrap_err().code, 6);
    }

    #[test]
    fn parse_out_of_range_interface_is_deferred_to_render() {
        let v = json!({"ips": [{"address": "10.0.0.1/24", "interface": 3}]});
        let r = parse(&v, "1.0.0").unwrap();
        assert_eq!(render(&r, "1.0.0").unwrap_err().code, 999);
    }

    #[test]
    fn cidr_helper() {
        assert_eq!(
            parse_cidr("10.0.0.1/08").map(|x| x.0),
            Some(s("10.0.0.1/8"))
        );
        assert_eq!(parse_cidr("::/0").map(|x| x.0), Some(s("::/0")));
        for bad in [
            "",
            "/",
            "10.0.0.1/",
            "/24",
            "10.0.0.1/+8",
            "10.0.0.1/1000",
            "10.0.0.1/24/1",
            " 10.0.0.1/24",
        ] {
            assert!(parse_cidr(bad).is_none(), "{bad:?}");
        }
    }
}
