//! The nftables backend, in the upstream plugin's layout (read from
//! containernetworking/plugins `plugins/meta/portmap/portmap_nftables.go` at
//! main, commit 3d27709f, 2026-04), so a node can switch between upstream's
//! portmap and this one while pods run. Per family, table `ip cni_hostport` /
//! `ip6 cni_hostport` (comment "CNI portmap plugin"):
//!
//! ```text
//! chain hostports                 # one rule per mapping, comment = container id:
//!                                 #   [ip daddr <hostIP>] tcp dport 8080 dnat to 10.0.0.2:80
//! chain hostip_hostports          # empty, kept by upstream for upgrades
//! chain hostports_all             # jump hostip_hostports; jump hostports
//! chain prerouting (nat, prerouting, dstnat): [conditions] fib daddr type local jump hostports_all
//! chain output     (nat, output, dstnat):     [conditions] fib daddr type local jump hostports_all
//! chain masquerading (nat, postrouting, srcnat), with snat, comment = container id:
//!                                 #   ip saddr 10.0.0.2 ip daddr 10.0.0.2 masquerade
//!                                 #   ip saddr 127.0.0.1 ip daddr 10.0.0.2 masquerade   (IPv4)
//!                                 #   masqAll: ip saddr 0.0.0.0/0 ip daddr 10.0.0.2 masquerade
//! ```
//!
//! ADD is upstream's one transaction per family: it creates the skeleton
//! (flushing and rewriting the shared jump chains, so the last ADD's
//! conditions guard them) and appends the attachment's rules, without reading
//! the table first. A re-ADD appends again, as upstream does (DEL and CHECK go
//! by comment, so duplicates are harmless). When two attachments claim a
//! port the first rule in `hostports` wins, as upstream.
//!
//! DEL removes the rules commented with the container id from `hostports`,
//! `hostip_hostports` and `masquerading`, as upstream, and also what earlier
//! releases of this binary wrote (maps `wasm_hostports`,
//! `wasm_hostip_hostports`, sets `wasm_masq`, `wasm_masq_all` with elements
//! commented `<network>:<container id>`, chains `wasm_*`): its elements, and
//! that whole old skeleton once no element is left in it.
//!
//! GC: upstream's rules carry only the container id, not the network, so a
//! GC of one network cannot tell them from another network's; GC removes the
//! old layout's elements of the network's stale attachments and leaves
//! upstream-layout rules alone (upstream has no GC).

use std::net::IpAddr;

use serde_json::Value;

use super::{Owner, PortmapSpec};
use crate::exec::run;
use crate::{both_families, KResult, KernelError};

pub const TABLE: &str = "cni_hostport";
pub const TABLE_COMMENT: &str = "CNI portmap plugin";
const HOSTPORTS: &str = "hostports";
const HOSTIP_HOSTPORTS: &str = "hostip_hostports";
const HOSTPORTS_ALL: &str = "hostports_all";
const MASQUERADING: &str = "masquerading";
/// The chains upstream's DEL looks for the container's rules in.
const RULE_CHAINS: [&str; 3] = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING];

/// The layout of earlier releases of this binary (removed by DEL and GC).
const OLD_SETS: [&str; 4] = [
    "wasm_hostports",
    "wasm_hostip_hostports",
    "wasm_masq",
    "wasm_masq_all",
];
/// Base chains first: they jump to `wasm_hostports`.
const OLD_CHAINS: [&str; 4] = [
    "wasm_prerouting",
    "wasm_output",
    "wasm_postrouting",
    "wasm_hostports",
];

fn fam(v6: bool) -> &'static str {
    if v6 {
        "ip6"
    } else {
        "ip"
    }
}

/// The old layout's element comment.
pub fn old_element_comment(owner: &Owner) -> String {
    format!("{}:{}", owner.network, owner.container_id)
}

/// The shared skeleton of one family, as upstream's transaction writes it.
/// `conditions` (validated nft match tokens) guard the prerouting/output
/// jumps: they apply node-wide and the last ADD sets them.
pub fn skeleton(v6: bool, conditions: &[String], snat: bool) -> String {
    let guard: String = conditions.iter().map(|c| format!("{c} ")).collect();
    let t = format!("{} {TABLE}", fam(v6));
    let mut s = format!("add table {t} {{ comment \"{TABLE_COMMENT}\" ; }}\n");
    s.push_str(&format!("add chain {t} {HOSTPORTS}\n"));
    s.push_str(&format!("add chain {t} {HOSTIP_HOSTPORTS}\n"));
    s.push_str(&format!("add chain {t} {HOSTPORTS_ALL}\n"));
    s.push_str(&format!("flush chain {t} {HOSTPORTS_ALL}\n"));
    s.push_str(&format!(
        "add rule {t} {HOSTPORTS_ALL} jump {HOSTIP_HOSTPORTS}\n"
    ));
    s.push_str(&format!("add rule {t} {HOSTPORTS_ALL} jump {HOSTPORTS}\n"));
    for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
        s.push_str(&format!(
            "add chain {t} {chain} {{ type nat hook {hook} priority -100 ; }}\n"
        ));
        s.push_str(&format!("flush chain {t} {chain}\n"));
        s.push_str(&format!(
            "add rule {t} {chain} {guard}fib daddr type local jump {HOSTPORTS_ALL}\n"
        ));
    }
    if snat {
        s.push_str(&format!(
            "add chain {t} {MASQUERADING} {{ type nat hook postrouting priority 100 ; }}\n"
        ));
    }
    s
}

/// `ip:port`, `[ip6]:port` (Go's net.JoinHostPort).
fn join_host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The attachment's rules of one family as (chain, rule text), in upstream's
/// order: one DNAT rule per mapping of this family, then the masquerade rules.
pub fn rules(spec: &PortmapSpec, v6: bool) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let ip = fam(v6);
    for f in spec
        .families
        .iter()
        .filter(|f| f.container.ip.is_ipv6() == v6)
    {
        let cip = f.container.ip;
        for m in f.mappings.iter().filter(|m| !m.other_family) {
            let daddr = m
                .host_ip
                .map(|h| format!("{ip} daddr {h} "))
                .unwrap_or_default();
            out.push((
                HOSTPORTS,
                format!(
                    "{daddr}{} dport {} dnat to {}",
                    m.proto.as_str(),
                    m.host_port,
                    join_host_port(cip, m.container_port)
                ),
            ));
        }
        if spec.options.snat {
            let src = match (spec.options.masq_all, v6) {
                (true, false) => "0.0.0.0/0".to_string(),
                (true, true) => "::/0".to_string(),
                (false, _) => cip.to_string(),
            };
            out.push((
                MASQUERADING,
                format!("{ip} saddr {src} {ip} daddr {cip} masquerade"),
            ));
            if !v6 && !spec.options.masq_all {
                out.push((
                    MASQUERADING,
                    format!("{ip} saddr 127.0.0.1 {ip} daddr {cip} masquerade"),
                ));
            }
        }
    }
    out
}

/// The ADD transaction (both families, each as upstream writes it).
pub fn render_add(owner: &Owner, spec: &PortmapSpec) -> String {
    let mut s = String::new();
    for f in &spec.families {
        let v6 = f.container.ip.is_ipv6();
        s.push_str(&skeleton(v6, &f.conditions, spec.options.snat));
        for (chain, rule) in rules(spec, v6) {
            s.push_str(&format!(
                "add rule {} {TABLE} {chain} {rule} comment \"{}\"\n",
                fam(v6),
                owner.container_id
            ));
        }
    }
    s
}

/// What `nft -j list table` says about one family's table.
#[derive(Debug, Default)]
pub struct TableState {
    pub v6: bool,
    pub chains: Vec<String>,
    pub sets: Vec<String>,
    /// (set, key, comment) of the old layout's elements
    pub elems: Vec<(String, String, Option<String>)>,
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
        let mut st = TableState {
            v6,
            ..Default::default()
        };
        for item in super::super::nft_json::parse(json)? {
            if let Some(c) = item.chain {
                st.chains.push(c.name);
            }
            for (set, is_map) in [(item.set, false), (item.map, true)] {
                let Some(set) = set else { continue };
                for e in &set.elem {
                    let k = match (is_map, e.as_array()) {
                        (true, Some(pair)) if pair.len() == 2 => &pair[0],
                        _ => e,
                    };
                    if let Some((key, comment)) = render_elem(k) {
                        st.elems.push((set.name.clone(), key, comment));
                    }
                }
                st.sets.push(set.name);
            }
            if let Some(r) = item.rule {
                st.rules.push((r.chain, r.handle, r.comment));
            }
        }
        Ok(st)
    }

    fn rules_of<'a>(&'a self, chain: &'a str, cid: &'a str) -> impl Iterator<Item = u64> + 'a {
        self.rules
            .iter()
            .filter(move |(c, _, comment)| c == chain && comment.as_deref() == Some(cid))
            .map(|(_, h, _)| *h)
    }

    /// Deletes of the old layout's elements for which `stale(comment)`
    /// holds, and of the whole old skeleton when no element would be left.
    fn old_layout_deletes(&self, stale: impl Fn(&str) -> bool) -> Vec<String> {
        let f = fam(self.v6);
        let mut out = Vec::new();
        let mut left = 0;
        for (set, key, c) in &self.elems {
            if !OLD_SETS.contains(&set.as_str()) {
                continue;
            }
            if c.as_deref().is_some_and(&stale) {
                out.push(format!("delete element {f} {TABLE} {set} {{ {key} }}\n"));
            } else {
                left += 1;
            }
        }
        let has_old = self.sets.iter().any(|s| OLD_SETS.contains(&s.as_str()))
            || self.chains.iter().any(|c| OLD_CHAINS.contains(&c.as_str()));
        if left == 0 && has_old {
            for c in OLD_CHAINS
                .iter()
                .filter(|c| self.chains.iter().any(|h| h == *c))
            {
                out.push(format!("flush chain {f} {TABLE} {c}\n"));
            }
            for c in OLD_CHAINS
                .iter()
                .filter(|c| self.chains.iter().any(|h| h == *c))
            {
                out.push(format!("delete chain {f} {TABLE} {c}\n"));
            }
            for s in OLD_SETS
                .iter()
                .filter(|s| self.sets.iter().any(|h| h == *s))
            {
                let kind = if s.starts_with("wasm_masq") {
                    "set"
                } else {
                    "map"
                };
                out.push(format!("delete {kind} {f} {TABLE} {s}\n"));
            }
        }
        out
    }

    /// Deletes of everything `owner` has here, in both layouts.
    fn deletes_owned(&self, owner: &Owner) -> Vec<String> {
        let f = fam(self.v6);
        let mut out: Vec<String> = RULE_CHAINS
            .iter()
            .flat_map(|chain| {
                self.rules_of(chain, &owner.container_id)
                    .map(move |h| format!("delete rule {f} {TABLE} {chain} handle {h}\n"))
            })
            .collect();
        let comment = old_element_comment(owner);
        out.extend(self.old_layout_deletes(|c| c == comment));
        out
    }
}

/// The family's table, None when it does not exist.
fn list(v6: bool) -> KResult<Option<TableState>> {
    match run("nft", &["-j", "list", "table", fam(v6), TABLE], "") {
        Ok(out) => TableState::parse(v6, &out).map(Some),
        Err(e) if crate::exec::tool_failed(&e, crate::exec::ToolFailure::Missing) => Ok(None),
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

pub fn apply(owner: &Owner, spec: &PortmapSpec, until: std::time::Instant) -> KResult<()> {
    let script = render_add(owner, spec);
    // Both families' skeletons (which flush and refill the shared
    // prerouting/output chains) go whole in the first piece, so a long
    // batch never leaves those chains empty between two transactions; the
    // attachment's own rules, commented with its id, follow in pieces.
    let own = format!("comment \"{}\"", owner.container_id);
    let (rules, skeleton): (Vec<&str>, Vec<&str>) = script.lines().partition(|l| l.ends_with(&own));
    let pieces = super::chunks(&skeleton, &rules, "", "");
    super::apply_pieces(&pieces, until, transact)
}

pub fn remove(owner: &Owner) -> KResult<()> {
    let mut script = String::new();
    for st in both_families(list) {
        if let Some(st) = st? {
            script.extend(st.deletes_owned(owner));
        }
    }
    transact(&script)
}

/// As upstream's CHECK: the chains hold at least as many rules commented
/// with the container id as the attachment has mappings (and masquerade
/// rules) in each family.
pub fn check(owner: &Owner, spec: &PortmapSpec) -> KResult<()> {
    for v6 in [false, true] {
        let want = rules(spec, v6);
        if want.is_empty() {
            continue;
        }
        let st = list(v6)?.ok_or_else(|| {
            KernelError::NotInPlace(format!("table {} {TABLE} does not exist", fam(v6)))
        })?;
        for chain in [HOSTPORTS, MASQUERADING] {
            let n = want.iter().filter(|(c, _)| *c == chain).count();
            let have = st.rules_of(chain, &owner.container_id).count();
            if have < n {
                return Err(KernelError::NotInPlace(format!(
                    "missing hostport rules in {:?} chain of {} {TABLE}: {have} of {n} commented {:?}",
                    chain,
                    fam(v6),
                    owner.container_id
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
        script.extend(st.old_layout_deletes(|c| {
            c.split_once(':')
                .is_some_and(|(net, cid)| net == network && !valid.iter().any(|v| v == cid))
        }));
    }
    transact(&script)
}

#[cfg(test)]
mod tests {
    use super::super::{Backend, FamilySpec, Mapping, Options, Proto};
    use super::*;
    use crate::Addr;

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
                    conditions: vec!["ip6".into(), "saddr".into(), "fd00::/8".into()],
                },
            ],
        }
    }

    fn owner() -> Owner {
        Owner {
            network: "n".into(),
            container_id: "c".into(),
        }
    }

    /// upstream's forwardPorts transaction, transcribed from
    /// portmap_nftables.go (3d27709f) for the same mappings.
    #[test]
    fn add_is_upstreams_transaction() {
        let s = render_add(&owner(), &spec());
        assert_eq!(
            s,
            r#"add table ip cni_hostport { comment "CNI portmap plugin" ; }
add chain ip cni_hostport hostports
add chain ip cni_hostport hostip_hostports
add chain ip cni_hostport hostports_all
flush chain ip cni_hostport hostports_all
add rule ip cni_hostport hostports_all jump hostip_hostports
add rule ip cni_hostport hostports_all jump hostports
add chain ip cni_hostport prerouting { type nat hook prerouting priority -100 ; }
flush chain ip cni_hostport prerouting
add rule ip cni_hostport prerouting fib daddr type local jump hostports_all
add chain ip cni_hostport output { type nat hook output priority -100 ; }
flush chain ip cni_hostport output
add rule ip cni_hostport output fib daddr type local jump hostports_all
add chain ip cni_hostport masquerading { type nat hook postrouting priority 100 ; }
add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.0.0.2:80 comment "c"
add rule ip cni_hostport hostports ip daddr 192.168.1.1 udp dport 53 dnat to 10.0.0.2:53 comment "c"
add rule ip cni_hostport masquerading ip saddr 10.0.0.2 ip daddr 10.0.0.2 masquerade comment "c"
add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.0.0.2 masquerade comment "c"
add table ip6 cni_hostport { comment "CNI portmap plugin" ; }
add chain ip6 cni_hostport hostports
add chain ip6 cni_hostport hostip_hostports
add chain ip6 cni_hostport hostports_all
flush chain ip6 cni_hostport hostports_all
add rule ip6 cni_hostport hostports_all jump hostip_hostports
add rule ip6 cni_hostport hostports_all jump hostports
add chain ip6 cni_hostport prerouting { type nat hook prerouting priority -100 ; }
flush chain ip6 cni_hostport prerouting
add rule ip6 cni_hostport prerouting ip6 saddr fd00::/8 fib daddr type local jump hostports_all
add chain ip6 cni_hostport output { type nat hook output priority -100 ; }
flush chain ip6 cni_hostport output
add rule ip6 cni_hostport output ip6 saddr fd00::/8 fib daddr type local jump hostports_all
add chain ip6 cni_hostport masquerading { type nat hook postrouting priority 100 ; }
add rule ip6 cni_hostport hostports tcp dport 8080 dnat to [fd00::2]:80 comment "c"
add rule ip6 cni_hostport masquerading ip6 saddr fd00::2 ip6 daddr fd00::2 masquerade comment "c"
"#
        );
        let mut all = spec();
        all.options.masq_all = true;
        assert_eq!(
            rules(&all, false)[2..],
            [(
                MASQUERADING,
                "ip saddr 0.0.0.0/0 ip daddr 10.0.0.2 masquerade".to_string()
            )]
        );
        all.options.snat = false;
        assert!(!render_add(&owner(), &all).contains("masquerading"));
    }

    #[test]
    fn del_removes_both_layouts() {
        let json = r#"{"nftables": [{"metainfo": {}},
            {"chain": {"family": "ip", "table": "cni_hostport", "name": "hostports", "handle": 1}},
            {"chain": {"family": "ip", "table": "cni_hostport", "name": "wasm_prerouting", "handle": 2}},
            {"chain": {"family": "ip", "table": "cni_hostport", "name": "wasm_hostports", "handle": 3}},
            {"map": {"family": "ip", "name": "wasm_hostports", "table": "cni_hostport", "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "n:c"}}, {"concat": ["10.0.0.2", 80]}]]}},
            {"set": {"name": "wasm_masq", "elem": [{"elem": {"val": {"concat": ["127.0.0.1", "10.0.0.2"]}, "comment": "n:c"}}]}},
            {"rule": {"family": "ip", "table": "cni_hostport", "chain": "hostports", "handle": 7, "comment": "c", "expr": []}},
            {"rule": {"family": "ip", "table": "cni_hostport", "chain": "hostports", "handle": 8, "comment": "other", "expr": []}},
            {"rule": {"family": "ip", "table": "cni_hostport", "chain": "masquerading", "handle": 9, "comment": "c", "expr": []}}]}"#;
        let st = TableState::parse(false, json).expect("parse");
        let d = st.deletes_owned(&owner());
        assert_eq!(
            d.concat(),
            "delete rule ip cni_hostport hostports handle 7
delete rule ip cni_hostport masquerading handle 9
delete element ip cni_hostport wasm_hostports { tcp . 8080 }
delete element ip cni_hostport wasm_masq { 127.0.0.1 . 10.0.0.2 }
flush chain ip cni_hostport wasm_prerouting
flush chain ip cni_hostport wasm_hostports
delete chain ip cni_hostport wasm_prerouting
delete chain ip cni_hostport wasm_hostports
delete map ip cni_hostport wasm_hostports
delete set ip cni_hostport wasm_masq
"
        );
        // Another attachment's old element keeps the old skeleton.
        let other = Owner {
            network: "n".into(),
            container_id: "x".into(),
        };
        assert!(st.deletes_owned(&other).is_empty());
    }
}
