//! The nftables backend, in the upstream reference's tables `ip cni_hostport`
//! and `ip6 cni_hostport` (comment "CNI portmap plugin"). Instead of one rule
//! per mapping, mappings are elements of maps keyed by protocol and port, so a
//! packet's lookup cost does not grow with the number of pods:
//!
//! ```text
//! map wasm_hostports        { type inet_proto . inet_service : <addr> . inet_service }
//! map wasm_hostip_hostports { type <addr> . inet_proto . inet_service : <addr> . inet_service }
//! set wasm_masq             { type <addr> . <addr> }   # saddr . daddr to masquerade (hairpin, 127.0.0.1)
//! set wasm_masq_all         { type <addr> }            # daddr to masquerade from anywhere (masqAll)
//! chain wasm_prerouting / wasm_output (nat, dstnat): [conditions] fib daddr type local jump wasm_hostports
//! chain wasm_hostports: dnat to daddr . l4proto . dport map @wasm_hostip_hostports; dnat to l4proto . dport map @wasm_hostports
//! chain wasm_postrouting (nat, srcnat): ct status dnat saddr . daddr @wasm_masq masquerade; ct status dnat daddr @wasm_masq_all masquerade
//! ```
//!
//! Every element carries the comment `<network>:<container id>`: that is how
//! DEL, CHECK and GC find an attachment's elements. The upstream plugin's own
//! per-mapping rules (comment = container id) are removed by DEL as well, so
//! pods it created can be torn down by this binary.
//!
//! ADD is one `nft -f` transaction for both families that only *creates*
//! elements (so it fails, changing nothing, when the skeleton is missing or a
//! key is taken); then it reads the tables and runs one transaction that
//! creates the skeleton and replaces conflicting elements.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use super::{Owner, PortmapSpec};
use crate::kernel::exec::run;
use crate::kernel::{both_families, KResult, KernelError};

pub const TABLE: &str = "cni_hostport";
const MAP_PORTS: &str = "wasm_hostports";
const MAP_HOSTIP: &str = "wasm_hostip_hostports";
const SET_MASQ: &str = "wasm_masq";
const SET_MASQ_ALL: &str = "wasm_masq_all";
/// The upstream plugin's chains holding per-container rules.
const UPSTREAM_CHAINS: [&str; 3] = ["hostports", "hostip_hostports", "masquerading"];

fn fam(v6: bool) -> (&'static str, &'static str) {
    if v6 {
        ("ip6", "ipv6_addr")
    } else {
        ("ip", "ipv4_addr")
    }
}

/// Our element comment. nft comments cannot hold `"`; CNI names never do.
pub fn element_comment(owner: &Owner) -> String {
    format!("{}:{}", owner.network, owner.container_id)
}

/// The shared skeleton of one family; idempotent (the chains are flushed and
/// rewritten, maps and sets are only added). `conditions` (validated nft
/// match tokens) guard the shared prerouting/output jump, as the upstream
/// plugin's do: they apply to every attachment of the node, and the last ADD
/// that writes the skeleton sets them.
pub fn skeleton(v6: bool, conditions: &[String]) -> String {
    let guard: String = conditions.iter().map(|c| format!("{c} ")).collect();
    let (f, a) = fam(v6);
    let t = format!("{f} {TABLE}");
    let mut s = String::new();
    s.push_str(&format!(
        "add table {t} {{ comment \"CNI portmap plugin\" ; }}\n"
    ));
    s.push_str(&format!(
        "add map {t} {MAP_PORTS} {{ type inet_proto . inet_service : {a} . inet_service ; }}\n"
    ));
    s.push_str(&format!("add map {t} {MAP_HOSTIP} {{ type {a} . inet_proto . inet_service : {a} . inet_service ; }}\n"));
    s.push_str(&format!("add set {t} {SET_MASQ} {{ type {a} . {a} ; }}\n"));
    s.push_str(&format!("add set {t} {SET_MASQ_ALL} {{ type {a} ; }}\n"));
    s.push_str(&format!("add chain {t} wasm_hostports\n"));
    s.push_str(&format!(
        "add chain {t} wasm_prerouting {{ type nat hook prerouting priority dstnat ; }}\n"
    ));
    s.push_str(&format!(
        "add chain {t} wasm_output {{ type nat hook output priority -100 ; }}\n"
    ));
    s.push_str(&format!(
        "add chain {t} wasm_postrouting {{ type nat hook postrouting priority srcnat ; }}\n"
    ));
    for c in [
        "wasm_hostports",
        "wasm_prerouting",
        "wasm_output",
        "wasm_postrouting",
    ] {
        s.push_str(&format!("flush chain {t} {c}\n"));
    }
    for c in ["wasm_prerouting", "wasm_output"] {
        s.push_str(&format!(
            "add rule {t} {c} {guard}fib daddr type local jump wasm_hostports\n"
        ));
    }
    s.push_str(&format!("add rule {t} wasm_hostports dnat {f} to {f} daddr . meta l4proto . th dport map @{MAP_HOSTIP}\n"));
    s.push_str(&format!(
        "add rule {t} wasm_hostports dnat {f} to meta l4proto . th dport map @{MAP_PORTS}\n"
    ));
    s.push_str(&format!("add rule {t} wasm_postrouting ct status dnat {f} saddr . {f} daddr @{SET_MASQ} masquerade\n"));
    s.push_str(&format!(
        "add rule {t} wasm_postrouting ct status dnat {f} daddr @{SET_MASQ_ALL} masquerade\n"
    ));
    s
}

/// One element: (v6, set, key, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub v6: bool,
    pub set: &'static str,
    pub key: String,
    pub value: Option<String>,
}

fn port_pair(ip: IpAddr, port: u16) -> String {
    format!("{ip} . {port}")
}

/// The elements an attachment needs, one per key (the last mapping of a
/// duplicated key wins, as in the reference's rule order).
pub fn elements(spec: &PortmapSpec) -> Vec<Elem> {
    let mut out: BTreeMap<(bool, &'static str, String), Option<String>> = BTreeMap::new();
    for f in &spec.families {
        let v6 = f.container.ip.is_ipv6();
        let cip = f.container.ip;
        for m in f.mappings.iter().filter(|m| !m.other_family) {
            let value = Some(port_pair(cip, m.container_port));
            match m.host_ip {
                Some(h) => out.insert(
                    (
                        v6,
                        MAP_HOSTIP,
                        format!("{h} . {} . {}", m.proto.as_str(), m.host_port),
                    ),
                    value,
                ),
                None => out.insert(
                    (
                        v6,
                        MAP_PORTS,
                        format!("{} . {}", m.proto.as_str(), m.host_port),
                    ),
                    value,
                ),
            };
        }
        if spec.options.snat && f.mappings.iter().any(|m| !m.other_family) {
            if spec.options.masq_all {
                out.insert((v6, SET_MASQ_ALL, cip.to_string()), None);
            } else {
                out.insert((v6, SET_MASQ, format!("{cip} . {cip}")), None);
                if !v6 {
                    out.insert((v6, SET_MASQ, format!("127.0.0.1 . {cip}")), None);
                }
            }
        }
    }
    out.into_iter()
        .map(|((v6, set, key), value)| Elem {
            v6,
            set,
            key,
            value,
        })
        .collect()
}

fn elem_line(verb: &str, e: &Elem, comment: &str) -> String {
    let (f, _) = fam(e.v6);
    match &e.value {
        Some(v) => format!(
            "{verb} element {f} {TABLE} {} {{ {} comment \"{comment}\" : {v} }}\n",
            e.set, e.key
        ),
        None => format!(
            "{verb} element {f} {TABLE} {} {{ {} comment \"{comment}\" }}\n",
            e.set, e.key
        ),
    }
}

/// The ADD transaction. `full`: with the skeleton of every family involved
/// and `add` (after `deletes`); otherwise `create` only, which fails on any
/// missing set or taken key.
pub fn render_add(owner: &Owner, spec: &PortmapSpec, full: bool, deletes: &[String]) -> String {
    let comment = element_comment(owner);
    let mut s = String::new();
    if full {
        for f in &spec.families {
            s.push_str(&skeleton(f.container.ip.is_ipv6(), &f.conditions));
        }
        for d in deletes {
            s.push_str(d);
        }
    }
    for e in elements(spec) {
        s.push_str(&elem_line(
            if full { "add" } else { "create" },
            &e,
            &comment,
        ));
    }
    s
}

/// What `nft -j list table` says about one family's table.
#[derive(Debug, Default)]
pub struct TableState {
    pub v6: bool,
    pub sets: Vec<String>,
    /// (set, key, value, comment)
    pub elems: Vec<(String, String, Option<String>, Option<String>)>,
    /// (chain, handle, comment) of rules
    pub rules: Vec<(String, u64, Option<String>)>,
}

fn render_part(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(
            s.parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|_| s.clone()),
        ),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => {
            let parts = o.get("concat")?.as_array()?;
            Some(
                parts
                    .iter()
                    .map(render_part)
                    .collect::<Option<Vec<_>>>()?
                    .join(" . "),
            )
        }
        _ => None,
    }
}

/// A set element as (key, comment): bare, or `{"elem": {"val": .., "comment": ..}}`.
fn render_elem(v: &Value) -> Option<(String, Option<String>)> {
    if let Some(e) = v.get("elem") {
        let key = render_part(e.get("val")?)?;
        return Some((
            key,
            e.get("comment").and_then(Value::as_str).map(str::to_string),
        ));
    }
    Some((render_part(v)?, None))
}

impl TableState {
    pub fn parse(v6: bool, json: &str) -> KResult<TableState> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| KernelError::Failed(format!("nft -j output is not JSON: {e}")))?;
        let mut st = TableState {
            v6,
            ..Default::default()
        };
        for item in v
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for kind in ["set", "map"] {
                let Some(set) = item.get(kind) else { continue };
                let Some(name) = set.get("name").and_then(Value::as_str) else {
                    continue;
                };
                st.sets.push(name.to_string());
                for e in set
                    .get("elem")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (k, val) = match (kind, e.as_array()) {
                        ("map", Some(pair)) if pair.len() == 2 => (&pair[0], render_part(&pair[1])),
                        _ => (e, None),
                    };
                    if let Some((key, comment)) = render_elem(k) {
                        st.elems.push((name.to_string(), key, val, comment));
                    }
                }
            }
            if let Some(r) = item.get("rule") {
                if let (Some(chain), Some(handle)) = (
                    r.get("chain").and_then(Value::as_str),
                    r.get("handle").and_then(Value::as_u64),
                ) {
                    st.rules.push((
                        chain.to_string(),
                        handle,
                        r.get("comment").and_then(Value::as_str).map(str::to_string),
                    ));
                }
            }
        }
        Ok(st)
    }

    fn delete_elem(&self, set: &str, key: &str) -> String {
        format!(
            "delete element {} {TABLE} {set} {{ {key} }}\n",
            fam(self.v6).0
        )
    }

    /// Deletes of everything `comment` owns here, plus the upstream plugin's
    /// rules of `container_id`.
    fn deletes_owned(&self, comment: &str, container_id: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = self
            .elems
            .iter()
            .filter(|e| e.3.as_deref() == Some(comment))
            .map(|e| self.delete_elem(&e.0, &e.1))
            .collect();
        if let Some(cid) = container_id {
            for (chain, handle, c) in &self.rules {
                if UPSTREAM_CHAINS.contains(&chain.as_str()) && c.as_deref() == Some(cid) {
                    out.push(format!(
                        "delete rule {} {TABLE} {chain} handle {handle}\n",
                        fam(self.v6).0
                    ));
                }
            }
        }
        out
    }
}

/// The family's table, None when it does not exist.
fn list(v6: bool) -> KResult<Option<TableState>> {
    match run("nft", &["-j", "list", "table", fam(v6).0, TABLE], "") {
        Ok(out) => TableState::parse(v6, &out).map(Some),
        Err(KernelError::Failed(m)) if m.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// One `nft -f` transaction; nothing to do for an empty script.
pub(crate) fn transact(script: &str) -> KResult<()> {
    if script.is_empty() {
        return Ok(());
    }
    run("nft", &["-f", "-"], script).map(drop)
}

pub fn apply(owner: &Owner, spec: &PortmapSpec) -> KResult<()> {
    // Conditions live in the skeleton: an ADD with them rewrites it.
    let conditions = spec.families.iter().any(|f| !f.conditions.is_empty());
    if !conditions && transact(&render_add(owner, spec, false, &[])).is_ok() {
        return Ok(());
    }
    // Slow path: make the skeleton, drop this attachment's old elements and
    // any element holding one of our keys (the newest attachment wins a port).
    let comment = element_comment(owner);
    let want = elements(spec);
    let mut deletes = Vec::new();
    for (v6, st) in [false, true].into_iter().zip(both_families(list)) {
        let Some(st) = st? else { continue };
        let mut d = st.deletes_owned(&comment, None);
        for (set, key, _, c) in &st.elems {
            if c.as_deref() != Some(comment.as_str())
                && want
                    .iter()
                    .any(|w| w.v6 == v6 && w.set == set && w.key == *key)
            {
                d.push(st.delete_elem(set, key));
            }
        }
        deletes.extend(d);
    }
    transact(&render_add(owner, spec, true, &deletes))
}

pub fn remove(owner: &Owner) -> KResult<()> {
    let comment = element_comment(owner);
    let mut script = String::new();
    for st in both_families(list) {
        if let Some(st) = st? {
            script.extend(st.deletes_owned(&comment, Some(&owner.container_id)));
        }
    }
    transact(&script)
}

pub fn check(owner: &Owner, spec: &PortmapSpec) -> KResult<()> {
    let comment = element_comment(owner);
    for v6 in [false, true] {
        let want: Vec<Elem> = elements(spec).into_iter().filter(|e| e.v6 == v6).collect();
        if want.is_empty() {
            continue;
        }
        let st = list(v6)?.ok_or_else(|| {
            KernelError::Failed(format!("table {} {TABLE} does not exist", fam(v6).0))
        })?;
        for w in want {
            let ok = st.elems.iter().any(|(set, key, val, c)| {
                set == w.set
                    && *key == w.key
                    && *val == w.value
                    && c.as_deref() == Some(comment.as_str())
            });
            if !ok {
                return Err(KernelError::Failed(format!(
                    "element {{ {} }} of this attachment is missing from {} {TABLE} {}",
                    w.key,
                    fam(v6).0,
                    w.set
                )));
            }
        }
    }
    Ok(())
}

pub fn gc(network: &str, valid: &[String]) -> KResult<()> {
    let mut script = String::new();
    for v6 in [false, true] {
        let Some(st) = list(v6)? else { continue };
        for (set, key, _, c) in &st.elems {
            let Some((net, cid)) = c.as_deref().and_then(|c| c.split_once(':')) else {
                continue;
            };
            if net == network && !valid.iter().any(|v| v == cid) {
                script.push_str(&st.delete_elem(set, key));
            }
        }
    }
    transact(&script)
}

#[cfg(test)]
mod tests {
    use super::super::{Backend, FamilySpec, Mapping, Options, Proto};
    use super::*;
    use crate::kernel::Addr;

    fn spec() -> PortmapSpec {
        PortmapSpec {
            backend: Backend::Nftables,
            options: Options {
                snat: true,
                masq_all: false,
                mark_bit: 13,
                external_mark_chain: None,
            },
            families: vec![
                FamilySpec {
                    container: Addr {
                        ip: "10.0.0.2".parse().expect("ip"),
                        prefix: 24,
                    },
                    mappings: vec![
                        Mapping {
                            host_port: 8080,
                            container_port: 80,
                            proto: Proto::Tcp,
                            host_ip: None,
                            other_family: false,
                        },
                        Mapping {
                            host_port: 53,
                            container_port: 53,
                            proto: Proto::Udp,
                            host_ip: Some("192.168.1.1".parse().expect("ip")),
                            other_family: false,
                        },
                    ],
                    conditions: vec![],
                },
                FamilySpec {
                    container: Addr {
                        ip: "fd00::2".parse().expect("ip"),
                        prefix: 64,
                    },
                    mappings: vec![Mapping {
                        host_port: 8080,
                        container_port: 80,
                        proto: Proto::Tcp,
                        host_ip: None,
                        other_family: false,
                    }],
                    conditions: vec![],
                },
            ],
        }
    }

    #[test]
    fn fast_path_only_creates_elements() {
        let o = Owner {
            network: "n".into(),
            container_id: "c".into(),
        };
        let s = render_add(&o, &spec(), false, &[]);
        assert_eq!(
            s,
            "create element ip cni_hostport wasm_hostip_hostports { 192.168.1.1 . udp . 53 comment \"n:c\" : 10.0.0.2 . 53 }
create element ip cni_hostport wasm_hostports { tcp . 8080 comment \"n:c\" : 10.0.0.2 . 80 }
create element ip cni_hostport wasm_masq { 10.0.0.2 . 10.0.0.2 comment \"n:c\" }
create element ip cni_hostport wasm_masq { 127.0.0.1 . 10.0.0.2 comment \"n:c\" }
create element ip6 cni_hostport wasm_hostports { tcp . 8080 comment \"n:c\" : fd00::2 . 80 }
create element ip6 cni_hostport wasm_masq { fd00::2 . fd00::2 comment \"n:c\" }
"
        );
        let full = render_add(&o, &spec(), true, &[]);
        assert!(full.starts_with("add table ip cni_hostport"), "{full}");
        assert!(full.contains("add table ip6 cni_hostport"), "{full}");
    }

    #[test]
    fn parses_listing() {
        let json = r#"{"nftables": [{"metainfo": {}}, {"map": {"family": "ip", "name": "wasm_hostports", "table": "cni_hostport", "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "n:c"}}, {"concat": ["10.0.0.2", 80]}]]}},
            {"set": {"name": "wasm_masq", "elem": [{"elem": {"val": {"concat": ["127.0.0.1", "10.0.0.2"]}, "comment": "n:c"}}, {"concat": ["10.0.0.3", "10.0.0.3"]}]}},
            {"rule": {"family": "ip", "table": "cni_hostport", "chain": "hostports", "handle": 7, "comment": "c", "expr": []}}]}"#;
        let st = TableState::parse(false, json).expect("parse");
        assert_eq!(
            st.elems[0],
            (
                "wasm_hostports".into(),
                "tcp . 8080".into(),
                Some("10.0.0.2 . 80".into()),
                Some("n:c".into())
            )
        );
        assert_eq!(
            st.elems[2],
            ("wasm_masq".into(), "10.0.0.3 . 10.0.0.3".into(), None, None)
        );
        let d = st.deletes_owned("n:c", Some("c"));
        assert_eq!(
            d,
            vec![
                "delete element ip cni_hostport wasm_hostports { tcp . 8080 }\n".to_string(),
                "delete element ip cni_hostport wasm_masq { 127.0.0.1 . 10.0.0.2 }\n".to_string(),
                "delete rule ip cni_hostport hostports handle 7\n".to_string(),
            ]
        );
    }
}
