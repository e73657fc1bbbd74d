//! nftables rules of one bridge/ptp attachment, with the reference plugins'
//! table, chain and comment names so either binary can remove what the other
//! installed:
//!
//! * MAC spoof check (bridge `macspoofchk`), reference pkg/link/spoofcheck.go
//!   as shipped up to 1.5 (Debian's 1.1.1 among them): table `bridge nat`,
//!   base chain `PREROUTING` (filter, prerouting, priority -300) with
//!   `iifname "<host veth>" jump cni-br-iface-<id>`, that chain jumping to
//!   `cni-br-iface-<id>-mac`, which returns for `ether saddr <container MAC>`
//!   and drops the rest. `<id>` is `<container id>-<ifname>`, every rule is
//!   commented `macspoofchk-<id>`. Teardown also removes the layout of later
//!   releases (table `bridge cni_spoofcheck`, base chain `prerouting`).
//! * masquerade with `ipMasqBackend: nftables`, reference
//!   pkg/ip/ipmasq_nftables_linux.go: table `inet cni_plugins_masquerade`,
//!   chain `postrouting` (nat, srcnat) returning for multicast and going to
//!   `masq_checks`, which holds one rule per address,
//!   `ip saddr <ip> ip daddr != <subnet> masquerade`, commented
//!   `<sha512(net)[..16]>-<sha512(ifname:cid)[..16]>, net: …, if: …, id: …`.
//!
//! Reads go through `nft -j list`, every write is one `nft -f` transaction.

use std::net::IpAddr;

use serde_json::Value;
#[cfg(any(test, feature = "fake"))]
use {std::collections::BTreeMap, std::sync::Mutex};

use super::exec::run;
use super::firewall::nft::transact;
use super::masq::MasqEntry;
use super::{Addr, KResult, KernelError};

/// The attachment the rules belong to; every name derives from it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

/// The spoof-check table and base chain the reference up to 1.5 uses.
pub const SPOOF_TABLE: &str = "nat";
pub const SPOOF_BASE: &str = "PREROUTING";
/// The layout of later reference releases (removed on teardown as well).
const SPOOF_LAYOUTS: [(&str, &str); 2] =
    [(SPOOF_TABLE, SPOOF_BASE), ("cni_spoofcheck", "prerouting")];

pub const MASQ_TABLE: &str = "cni_plugins_masquerade";
pub const MASQ_CHAIN: &str = "masq_checks";
const MASQ_TABLE_COMMENT: &str =
    "Masquerading for plugins from github.com/containernetworking/plugins";
const MASQ_CHAIN_COMMENT: &str =
    "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet";
/// nft's limit on a comment.
const COMMENT_MAX: usize = 128;
/// nft's limit on a chain name (NFT_NAME_MAXLEN less the NUL).
const NAME_MAX: usize = 255;

/// The spoof check's names for one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoofNames {
    pub iface_chain: String,
    pub mac_chain: String,
    pub comment: String,
}

impl Attachment {
    /// `cni-br-iface-<cid>-<ifname>`, its `-mac` chain and the comment.
    /// Refused when the names would not be valid nft identifiers.
    pub fn spoof_names(&self) -> Result<SpoofNames, String> {
        let id = format!("{}-{}", self.container_id, self.ifname);
        let ok = id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!(
                "spoof-check chain name cni-br-iface-{id} is not a valid nftables name: container id and CNI_IFNAME may only hold letters, digits, '_', '.' and '-'"
            ));
        }
        let names = SpoofNames {
            iface_chain: format!("cni-br-iface-{id}"),
            mac_chain: format!("cni-br-iface-{id}-mac"),
            comment: format!("macspoofchk-{id}"),
        };
        if names.mac_chain.len() > NAME_MAX || names.comment.len() > COMMENT_MAX {
            return Err(format!(
                "spoof-check names for {id:?} exceed nftables' limits ({COMMENT_MAX}-character comments): use a shorter container id"
            ));
        }
        Ok(names)
    }

    /// The reference's per-attachment hash: 16 hex digits of sha512(network),
    /// `-`, 16 of sha512(`<ifname>:<container id>`).
    pub fn masq_hash(&self) -> String {
        format!(
            "{}-{}",
            network_hash(&self.network),
            &sha512_hex(&format!("{}:{}", self.ifname, self.container_id))[..16]
        )
    }

    /// The reference's rule comment, cut to nft's 128 characters.
    pub fn masq_comment(&self) -> Result<String, String> {
        let strip = |s: &str| s.replace('"', "");
        let mut c = format!(
            "{}, net: {}, if: {}, id: {}",
            self.masq_hash(),
            strip(&self.network),
            strip(&self.ifname),
            strip(&self.container_id)
        );
        if c.chars().any(|ch| !(' '..='~').contains(&ch) || ch == '\\') {
            return Err(format!(
                "masquerade comment {c:?} cannot be written to nftables: network name, CNI_IFNAME and container id must be printable ASCII without backslashes"
            ));
        }
        c.truncate(COMMENT_MAX);
        Ok(c)
    }
}

fn sha512_hex(s: &str) -> String {
    use sha2::{Digest, Sha512};
    Sha512::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 16 hex digits of sha512(network): the prefix of every comment of a network.
pub fn network_hash(network: &str) -> String {
    sha512_hex(network)[..16].to_string()
}

/// Firewall rules of one interface attachment, in nftables.
pub trait HostFirewall: Send + Sync {
    /// Installs (or replaces) the spoof check of the attachment: frames
    /// entering the bridge from `host_veth` must come from `mac`.
    fn spoofcheck_setup(&self, a: &Attachment, host_veth: &str, mac: &str) -> KResult<()>;
    /// Removes the attachment's spoof-check rules and chains, in both layouts.
    /// Nothing to remove is success.
    fn spoofcheck_teardown(&self, a: &Attachment) -> KResult<()>;
    /// None when every rule is in place, else what is missing.
    fn spoofcheck_check(
        &self,
        a: &Attachment,
        host_veth: &str,
        mac: &str,
    ) -> KResult<Option<String>>;
    /// Masquerades each entry (replacing the attachment's previous rules).
    fn masq_setup(&self, a: &Attachment, entries: &[MasqEntry]) -> KResult<()>;
    /// Removes the attachment's masquerade rules. Nothing to remove is success.
    fn masq_teardown(&self, a: &Attachment) -> KResult<()>;
    /// Whether the attachment has a masquerade rule for every ip.
    fn masq_check(&self, a: &Attachment, ips: &[IpAddr]) -> KResult<bool>;
    /// GC: removes the nftables masquerade rules of `network`'s attachments
    /// other than `keep` (all of the same network), in one transaction.
    /// Returns the comments of the rules removed.
    fn masq_gc(&self, network: &str, keep: &[Attachment]) -> KResult<Vec<String>>;
    /// GC: `(chain, container id)` of `network`'s iptables masquerade
    /// chains, recognised by the reference comment (see `masq_scan`).
    fn iptables_masq_chains(&self, network: &str) -> KResult<Vec<(String, String)>>;
    /// STATUS: whether masquerade rules can be written in the backend
    /// (`nftables`, else iptables); the error names the tool that failed.
    fn masq_usable(&self, nftables: bool) -> KResult<()>;
    /// Upstream's probe for a default backend (`masq_scan::supports`):
    /// whether the backend (`nftables`, else iptables) can be used at all.
    /// Shared by masquerade and portmap.
    fn backend_supported(&self, nftables: bool) -> bool;
}

/// The rules of `network` in `masq_checks` that belong to none of `keep`:
/// `(handle, comment)`. A rule is the network's when its comment starts
/// with the network's hash and `-`, as the reference GC finds them.
pub fn masq_gc_rules(l: &Listing, network: &str, keep: &[Attachment]) -> Vec<(u64, String)> {
    let prefix = format!("{}-", network_hash(network));
    let kept: Vec<String> = keep.iter().map(Attachment::masq_hash).collect();
    l.rules_in(MASQ_TABLE, MASQ_CHAIN)
        .filter_map(|r| {
            let c = r.comment.as_deref()?;
            let ours = c.starts_with(&prefix) && !kept.iter().any(|h| c.starts_with(h.as_str()));
            ours.then(|| (r.handle, c.to_string()))
        })
        .collect()
}

/// One rule of an `nft -j list` answer.
pub use super::nft_json::Rule;

/// Chains (table, name) and rules of an `nft -j list` answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub chains: Vec<(String, String)>,
    pub rules: Vec<Rule>,
}

impl Listing {
    pub fn parse(json: &str) -> KResult<Listing> {
        let mut out = Listing::default();
        for item in super::nft_json::parse(json)? {
            if let Some(c) = item.chain {
                out.chains.push((c.table, c.name));
            } else if let Some(r) = item.rule {
                out.rules.push(r);
            }
        }
        Ok(out)
    }

    fn has_chain(&self, table: &str, name: &str) -> bool {
        self.chains.iter().any(|(t, n)| t == table && n == name)
    }

    fn rules_in<'a>(&'a self, table: &'a str, chain: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.rules
            .iter()
            .filter(move |r| r.table == table && r.chain == chain)
    }
}

/// `(op, left, right)` of a match statement.
fn match_of(e: &Value) -> Option<(&str, &Value, &Value)> {
    let m = e.get("match")?;
    Some((m["op"].as_str()?, &m["left"], &m["right"]))
}

fn jump_target(r: &Rule) -> Option<&str> {
    r.expr
        .iter()
        .find_map(|e| e.get("jump").and_then(|j| j["target"].as_str()))
}

fn matches_iifname(r: &Rule, iface: &str) -> bool {
    r.expr.iter().any(|e| {
        matches!(match_of(e), Some(("==", l, rv)) if l["meta"]["key"] == "iifname" && rv.as_str() == Some(iface))
    })
}

fn matches_ether_saddr(r: &Rule, mac: &str) -> bool {
    r.expr.iter().any(|e| {
        matches!(match_of(e), Some(("==", l, rv))
            if l["payload"]["protocol"] == "ether" && l["payload"]["field"] == "saddr"
                && rv.as_str().is_some_and(|m| m.eq_ignore_ascii_case(mac)))
    })
}

fn has_verdict(r: &Rule, verdict: &str) -> bool {
    r.expr.iter().any(|e| e.get(verdict).is_some())
}

fn saddr_of(r: &Rule) -> Option<IpAddr> {
    r.expr.iter().find_map(|e| match match_of(e) {
        Some(("==", l, rv)) if l["payload"]["field"] == "saddr" => rv.as_str()?.parse().ok(),
        _ => None,
    })
}

/// `nft -j list <what>`; None when the table or chain does not exist.
fn list(args: &[&str]) -> KResult<Option<Listing>> {
    let mut all = vec!["-j", "list"];
    all.extend_from_slice(args);
    match run("nft", &all, "") {
        Ok(out) => Listing::parse(&out).map(Some),
        Err(e) if crate::exec::tool_failed(&e, crate::exec::ToolFailure::Missing) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A subnet in its network form (`10.1.2.3/16` → `10.1.0.0/16`).
fn masked(a: Addr) -> String {
    let m = a.network();
    format!("{}/{}", m.ip, m.prefix)
}

/// The spoof-check transaction: skeleton, the attachment's chains flushed,
/// its old base-chain jumps (`stale` handles) deleted, the rules added.
pub fn render_spoofcheck(n: &SpoofNames, host_veth: &str, mac: &str, stale: &[u64]) -> String {
    let t = format!("bridge {SPOOF_TABLE}");
    let c = &n.comment;
    let (ic, mc) = (&n.iface_chain, &n.mac_chain);
    let mut s = format!("add table {t}\n");
    s.push_str(&format!(
        "add chain {t} {SPOOF_BASE} {{ type filter hook prerouting priority -300 ; policy accept ; }}\n"
    ));
    for ch in [ic, mc] {
        s.push_str(&format!("add chain {t} {ch}\nflush chain {t} {ch}\n"));
    }
    for h in stale {
        s.push_str(&format!("delete rule {t} {SPOOF_BASE} handle {h}\n"));
    }
    s.push_str(&format!(
        "add rule {t} {SPOOF_BASE} iifname \"{host_veth}\" jump {ic} comment \"{c}\"\n"
    ));
    s.push_str(&format!("add rule {t} {ic} jump {mc} comment \"{c}\"\n"));
    s.push_str(&format!(
        "add rule {t} {mc} ether saddr {mac} return comment \"{c}\"\n"
    ));
    s.push_str(&format!("add rule {t} {mc} drop comment \"{c}\"\n"));
    s
}

/// Base-chain rules of the attachment in one layout: its comment, or a jump
/// to its chain.
fn spoof_jumps<'a>(l: &'a Listing, n: &'a SpoofNames, table: &'a str, base: &'a str) -> Vec<u64> {
    l.rules_in(table, base)
        .filter(|r| {
            r.comment.as_deref() == Some(n.comment.as_str())
                || jump_target(r) == Some(n.iface_chain.as_str())
        })
        .map(|r| r.handle)
        .collect()
}

/// The teardown transaction for a `list ruleset bridge` answer.
pub fn render_spoof_teardown(l: &Listing, n: &SpoofNames) -> String {
    let mut s = String::new();
    for (table, base) in SPOOF_LAYOUTS {
        let t = format!("bridge {table}");
        for h in spoof_jumps(l, n, table, base) {
            s.push_str(&format!("delete rule {t} {base} handle {h}\n"));
        }
        let present: Vec<&String> = [&n.iface_chain, &n.mac_chain]
            .into_iter()
            .filter(|c| l.has_chain(table, c))
            .collect();
        for c in &present {
            s.push_str(&format!("flush chain {t} {c}\n"));
        }
        for c in &present {
            s.push_str(&format!("delete chain {t} {c}\n"));
        }
    }
    s
}

/// What is missing from a `list ruleset bridge` answer, None when complete.
pub fn spoof_missing(l: &Listing, n: &SpoofNames, host_veth: &str, mac: &str) -> Option<String> {
    let t = SPOOF_TABLE;
    let (ic, mc) = (n.iface_chain.as_str(), n.mac_chain.as_str());
    let jump = l
        .rules_in(t, SPOOF_BASE)
        .any(|r| matches_iifname(r, host_veth) && jump_target(r) == Some(ic));
    if !jump {
        return Some(format!(
            "bridge {t} {SPOOF_BASE} has no rule `iifname \"{host_veth}\" jump {ic}`"
        ));
    }
    if !l.rules_in(t, ic).any(|r| jump_target(r) == Some(mc)) {
        return Some(format!("chain bridge {t} {ic} does not jump to {mc}"));
    }
    let mut rules = l.rules_in(t, mc);
    let ret = rules
        .next()
        .is_some_and(|r| matches_ether_saddr(r, mac) && has_verdict(r, "return"));
    let drop = rules.next().is_some_and(|r| has_verdict(r, "drop"));
    if !ret || !drop {
        return Some(format!(
            "chain bridge {t} {mc} does not allow only ether saddr {mac}"
        ));
    }
    None
}

/// The masquerade transaction: skeleton (postrouting rewritten as the
/// reference does), the attachment's old rules (`stale`) deleted, one rule
/// per entry added.
pub fn render_masq(comment: &str, entries: &[MasqEntry], stale: &[u64]) -> String {
    let t = format!("inet {MASQ_TABLE}");
    let mut s = format!("add table {t} {{ comment \"{MASQ_TABLE_COMMENT}\" ; }}\n");
    s.push_str(&format!(
        "add chain {t} {MASQ_CHAIN} {{ comment \"{MASQ_CHAIN_COMMENT}\" ; }}\n"
    ));
    s.push_str(&format!(
        "add chain {t} postrouting {{ type nat hook postrouting priority srcnat ; }}\n"
    ));
    s.push_str(&format!("flush chain {t} postrouting\n"));
    s.push_str(&format!(
        "add rule {t} postrouting ip daddr 224.0.0.0/4 return\n"
    ));
    s.push_str(&format!(
        "add rule {t} postrouting ip6 daddr ff00::/8 return\n"
    ));
    s.push_str(&format!("add rule {t} postrouting goto {MASQ_CHAIN}\n"));
    for h in stale {
        s.push_str(&format!("delete rule {t} {MASQ_CHAIN} handle {h}\n"));
    }
    for e in entries {
        let f = if e.ip.is_ipv4() { "ip" } else { "ip6" };
        s.push_str(&format!(
            "add rule {t} {MASQ_CHAIN} {f} saddr {} {f} daddr != {} masquerade comment \"{comment}\"\n",
            e.ip,
            masked(e.subnet)
        ));
    }
    s
}

/// Handles of the attachment's rules in `masq_checks` (comment prefix, as
/// the reference finds them).
fn masq_rules<'a>(l: &'a Listing, hash: &'a str) -> impl Iterator<Item = &'a Rule> {
    l.rules_in(MASQ_TABLE, MASQ_CHAIN)
        .filter(move |r| r.comment.as_deref().is_some_and(|c| c.starts_with(hash)))
}

fn masq_listing() -> KResult<Option<Listing>> {
    list(&["chain", "inet", MASQ_TABLE, MASQ_CHAIN])
}

fn invalid(m: String) -> KernelError {
    KernelError::Failed(m)
}

/// The real nftables of the calling process's network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl HostFirewall for System {
    fn spoofcheck_setup(&self, a: &Attachment, host_veth: &str, mac: &str) -> KResult<()> {
        let n = a.spoof_names().map_err(invalid)?;
        let stale = match list(&["chain", "bridge", SPOOF_TABLE, SPOOF_BASE])? {
            Some(l) => spoof_jumps(&l, &n, SPOOF_TABLE, SPOOF_BASE),
            None => Vec::new(),
        };
        transact(&render_spoofcheck(&n, host_veth, mac, &stale))
    }

    fn spoofcheck_teardown(&self, a: &Attachment) -> KResult<()> {
        let n = a.spoof_names().map_err(invalid)?;
        let l = list(&["ruleset", "bridge"])?.unwrap_or_default();
        transact(&render_spoof_teardown(&l, &n))
    }

    fn spoofcheck_check(
        &self,
        a: &Attachment,
        host_veth: &str,
        mac: &str,
    ) -> KResult<Option<String>> {
        let n = a.spoof_names().map_err(invalid)?;
        let l = list(&["ruleset", "bridge"])?.unwrap_or_default();
        Ok(spoof_missing(&l, &n, host_veth, mac))
    }

    fn masq_setup(&self, a: &Attachment, entries: &[MasqEntry]) -> KResult<()> {
        let comment = a.masq_comment().map_err(invalid)?;
        let hash = a.masq_hash();
        let stale: Vec<u64> = match masq_listing()? {
            Some(l) => masq_rules(&l, &hash).map(|r| r.handle).collect(),
            None => Vec::new(),
        };
        transact(&render_masq(&comment, entries, &stale))
    }

    fn masq_teardown(&self, a: &Attachment) -> KResult<()> {
        let hash = a.masq_hash();
        // Every bridge/ptp DEL asks, and on most nodes the table is not
        // there: one netlink lookup instead of an `nft` exec.
        let exists = super::nfnl::Nfnl::open()
            .and_then(|mut nl| nl.chain_exists(super::nfnl::NFPROTO_INET, MASQ_TABLE, MASQ_CHAIN));
        if let Ok(None | Some(false)) = exists {
            return Ok(());
        }
        // Rules are deleted by the handles just listed; one removed by a
        // concurrent writer meanwhile (a GC, another DEL of the same
        // attachment) fails the batch: list again, once.
        let attempt = || -> KResult<()> {
            let Some(l) = masq_listing()? else {
                return Ok(());
            };
            let t = format!("inet {MASQ_TABLE}");
            let script: String = masq_rules(&l, &hash)
                .map(|r| format!("delete rule {t} {MASQ_CHAIN} handle {}\n", r.handle))
                .collect();
            transact(&script)
        };
        attempt().or_else(|e| {
            tracing::debug!(error = %e, "nftables masquerade teardown raced another writer; listing again");
            attempt()
        })
    }

    fn masq_check(&self, a: &Attachment, ips: &[IpAddr]) -> KResult<bool> {
        let hash = a.masq_hash();
        let Some(l) = masq_listing()? else {
            return Ok(ips.is_empty());
        };
        let have: Vec<IpAddr> = masq_rules(&l, &hash).filter_map(saddr_of).collect();
        Ok(ips.iter().all(|ip| have.contains(ip)))
    }

    fn masq_gc(&self, network: &str, keep: &[Attachment]) -> KResult<Vec<String>> {
        let exists = super::nfnl::Nfnl::open()
            .and_then(|mut nl| nl.chain_exists(super::nfnl::NFPROTO_INET, MASQ_TABLE, MASQ_CHAIN));
        if let Ok(None | Some(false)) = exists {
            return Ok(Vec::new());
        }
        let Some(l) = masq_listing()? else {
            return Ok(Vec::new());
        };
        let gone = masq_gc_rules(&l, network, keep);
        let t = format!("inet {MASQ_TABLE}");
        let script: String = gone
            .iter()
            .map(|(h, _)| format!("delete rule {t} {MASQ_CHAIN} handle {h}\n"))
            .collect();
        transact(&script)?;
        Ok(gone.into_iter().map(|(_, c)| c).collect())
    }

    fn iptables_masq_chains(&self, network: &str) -> KResult<Vec<(String, String)>> {
        super::masq_scan::iptables_chains(network)
    }

    fn masq_usable(&self, nftables: bool) -> KResult<()> {
        super::masq_scan::backend_usable(nftables)
    }

    fn backend_supported(&self, nftables: bool) -> bool {
        super::masq_scan::supports(nftables)
    }
}

#[derive(Debug, Default)]
#[cfg(any(test, feature = "fake"))]
struct FakeState {
    /// attachment → (host veth, mac)
    spoof: BTreeMap<Attachment, (String, String)>,
    masq: BTreeMap<Attachment, Vec<MasqEntry>>,
    calls: Vec<String>,
}

/// A recording fake for unprivileged tests.
#[derive(Debug, Default)]
#[cfg(any(test, feature = "fake"))]
pub struct Fake {
    state: Mutex<FakeState>,
}

#[cfg(any(test, feature = "fake"))]
impl Fake {
    pub fn calls(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    /// Attachments with a spoof check: (container id, ifname, veth, mac).
    pub fn spoofchecks(&self) -> Vec<(Attachment, String, String)> {
        self.state
            .lock()
            .map(|s| {
                s.spoof
                    .iter()
                    .map(|(a, (v, m))| (a.clone(), v.clone(), m.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn masquerades(&self) -> BTreeMap<Attachment, Vec<MasqEntry>> {
        self.state
            .lock()
            .map(|s| s.masq.clone())
            .unwrap_or_default()
    }

    fn lock(&self) -> KResult<std::sync::MutexGuard<'_, FakeState>> {
        self.state
            .lock()
            .map_err(|_| KernelError::Failed("fake host firewall poisoned".into()))
    }
}

#[cfg(any(test, feature = "fake"))]
impl HostFirewall for Fake {
    fn spoofcheck_setup(&self, a: &Attachment, host_veth: &str, mac: &str) -> KResult<()> {
        let n = a.spoof_names().map_err(invalid)?;
        let mut s = self.lock()?;
        s.calls.push(format!(
            "spoofcheck-setup {} {host_veth} {mac}",
            n.iface_chain
        ));
        s.spoof
            .insert(a.clone(), (host_veth.to_string(), mac.to_string()));
        Ok(())
    }

    fn spoofcheck_teardown(&self, a: &Attachment) -> KResult<()> {
        let n = a.spoof_names().map_err(invalid)?;
        let mut s = self.lock()?;
        s.calls
            .push(format!("spoofcheck-teardown {}", n.iface_chain));
        s.spoof.remove(a);
        Ok(())
    }

    fn spoofcheck_check(
        &self,
        a: &Attachment,
        host_veth: &str,
        mac: &str,
    ) -> KResult<Option<String>> {
        let s = self.lock()?;
        Ok(match s.spoof.get(a) {
            Some((v, m)) if v == host_veth && m.eq_ignore_ascii_case(mac) => None,
            Some(_) => Some("spoof check installed for another veth or MAC".into()),
            None => Some("no spoof check".into()),
        })
    }

    fn masq_setup(&self, a: &Attachment, entries: &[MasqEntry]) -> KResult<()> {
        let comment = a.masq_comment().map_err(invalid)?;
        let mut s = self.lock()?;
        s.calls.push(format!(
            "masq-setup {comment} {}",
            entries
                .iter()
                .map(|e| format!("{}:{}", e.ip, masked(e.subnet)))
                .collect::<Vec<_>>()
                .join(",")
        ));
        s.masq.insert(a.clone(), entries.to_vec());
        Ok(())
    }

    fn masq_teardown(&self, a: &Attachment) -> KResult<()> {
        let mut s = self.lock()?;
        s.calls.push(format!("masq-teardown {}", a.masq_hash()));
        s.masq.remove(a);
        Ok(())
    }

    fn masq_check(&self, a: &Attachment, ips: &[IpAddr]) -> KResult<bool> {
        let s = self.lock()?;
        let have = s.masq.get(a).cloned().unwrap_or_default();
        Ok(ips.iter().all(|ip| have.iter().any(|e| e.ip == *ip)))
    }

    fn masq_gc(&self, network: &str, keep: &[Attachment]) -> KResult<Vec<String>> {
        let mut s = self.lock()?;
        s.calls
            .push(format!("masq-gc {network} keep {}", keep.len()));
        let gone: Vec<Attachment> = s
            .masq
            .keys()
            .filter(|a| a.network == network && !keep.contains(a))
            .cloned()
            .collect();
        for a in &gone {
            s.masq.remove(a);
        }
        Ok(gone.iter().map(Attachment::masq_hash).collect())
    }

    fn iptables_masq_chains(&self, network: &str) -> KResult<Vec<(String, String)>> {
        self.lock()?
            .calls
            .push(format!("iptables-masq-chains {network}"));
        Ok(Vec::new())
    }

    fn masq_usable(&self, nftables: bool) -> KResult<()> {
        self.lock()?
            .calls
            .push(format!("masq-usable nftables={nftables}"));
        Ok(())
    }

    /// The fake node has iptables (and nftables).
    fn backend_supported(&self, nftables: bool) -> bool {
        if let Ok(mut s) = self.lock() {
            s.calls
                .push(format!("backend-supported nftables={nftables}"));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att() -> Attachment {
        Attachment {
            network: "mynet".into(),
            container_id: "abc".into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn spoof_names_follow_the_reference() {
        let n = att().spoof_names().expect("names");
        assert_eq!(n.iface_chain, "cni-br-iface-abc-eth0");
        assert_eq!(n.mac_chain, "cni-br-iface-abc-eth0-mac");
        assert_eq!(n.comment, "macspoofchk-abc-eth0");
        let mut bad = att();
        bad.ifname = "e th0".into();
        assert!(bad.spoof_names().is_err());
        let mut long = att();
        long.container_id = "a".repeat(200);
        assert!(long.spoof_names().is_err());
    }

    #[test]
    fn masq_names_follow_the_reference() {
        // Python: hashlib.sha512(b"mynet").hexdigest()[:16] + "-" +
        //         hashlib.sha512(b"eth0:abc").hexdigest()[:16]
        let a = att();
        let h = a.masq_hash();
        assert_eq!(h.len(), 33);
        assert_eq!(&h[..16], &sha512_hex("mynet")[..16]);
        assert_eq!(&h[17..], &sha512_hex("eth0:abc")[..16]);
        assert_eq!(
            a.masq_comment().expect("comment"),
            format!("{h}, net: mynet, if: eth0, id: abc")
        );
        let mut long = att();
        long.container_id = "c".repeat(200);
        assert_eq!(long.masq_comment().expect("comment").len(), 128);
    }

    #[test]
    fn spoofcheck_script_shape() {
        let n = att().spoof_names().expect("names");
        let s = render_spoofcheck(&n, "veth1234abcd", "02:42:ac:11:00:02", &[7]);
        assert!(s.contains("add chain bridge nat PREROUTING { type filter hook prerouting priority -300 ; policy accept ; }"));
        assert!(s.contains("flush chain bridge nat cni-br-iface-abc-eth0-mac\n"));
        assert!(s.contains("delete rule bridge nat PREROUTING handle 7\n"));
        assert!(s.contains("add rule bridge nat PREROUTING iifname \"veth1234abcd\" jump cni-br-iface-abc-eth0 comment \"macspoofchk-abc-eth0\"\n"));
        assert!(s.contains("add rule bridge nat cni-br-iface-abc-eth0-mac ether saddr 02:42:ac:11:00:02 return comment"));
        assert!(s.ends_with(
            "add rule bridge nat cni-br-iface-abc-eth0-mac drop comment \"macspoofchk-abc-eth0\"\n"
        ));
    }

    /// What nft 1.0.6 prints for the reference's rules.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "bridge", "name": "nat", "handle": 1}},
      {"chain": {"family": "bridge", "table": "nat", "name": "PREROUTING", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}},
      {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-abc-eth0", "handle": 2}},
      {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-abc-eth0-mac", "handle": 3}},
      {"rule": {"family": "bridge", "table": "nat", "chain": "PREROUTING", "handle": 4, "comment": "macspoofchk-abc-eth0", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth1234"}}, {"jump": {"target": "cni-br-iface-abc-eth0"}}]}},
      {"rule": {"family": "bridge", "table": "nat", "chain": "PREROUTING", "handle": 9, "comment": "macspoofchk-other-eth0", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth9999"}}, {"jump": {"target": "cni-br-iface-other-eth0"}}]}},
      {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-abc-eth0", "handle": 5, "comment": "macspoofchk-abc-eth0", "expr": [{"jump": {"target": "cni-br-iface-abc-eth0-mac"}}]}},
      {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-abc-eth0-mac", "handle": 6, "comment": "macspoofchk-abc-eth0", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}}, "right": "02:00:00:00:00:01"}}, {"return": null}]}},
      {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-abc-eth0-mac", "handle": 7, "comment": "macspoofchk-abc-eth0", "expr": [{"drop": null}]}}]}"#;

    #[test]
    fn spoofcheck_listing_checked_and_torn_down() {
        let l = Listing::parse(LISTING).expect("parse");
        let n = att().spoof_names().expect("names");
        assert_eq!(spoof_missing(&l, &n, "veth1234", "02:00:00:00:00:01"), None);
        assert!(spoof_missing(&l, &n, "veth1234", "02:00:00:00:00:02").is_some());
        assert!(spoof_missing(&l, &n, "veth0000", "02:00:00:00:00:01").is_some());
        let s = render_spoof_teardown(&l, &n);
        assert_eq!(
            s,
            "delete rule bridge nat PREROUTING handle 4\n\
             flush chain bridge nat cni-br-iface-abc-eth0\n\
             flush chain bridge nat cni-br-iface-abc-eth0-mac\n\
             delete chain bridge nat cni-br-iface-abc-eth0\n\
             delete chain bridge nat cni-br-iface-abc-eth0-mac\n"
        );
        assert_eq!(render_spoof_teardown(&Listing::default(), &n), "");
    }

    #[test]
    fn masq_script_and_listing() {
        let e = MasqEntry {
            ip: "10.1.2.3".parse().expect("ip"),
            subnet: Addr {
                ip: "10.1.2.3".parse().expect("ip"),
                prefix: 24,
            },
        };
        let s = render_masq("h, net: n", &[e], &[3]);
        assert!(s.contains("add chain inet cni_plugins_masquerade postrouting { type nat hook postrouting priority srcnat ; }\nflush chain inet cni_plugins_masquerade postrouting\n"));
        assert!(s.contains("add rule inet cni_plugins_masquerade postrouting goto masq_checks\n"));
        assert!(s.contains("delete rule inet cni_plugins_masquerade masq_checks handle 3\n"));
        assert!(s.ends_with("add rule inet cni_plugins_masquerade masq_checks ip saddr 10.1.2.3 ip daddr != 10.1.2.0/24 masquerade comment \"h, net: n\"\n"));
        let l = Listing::parse(r#"{"nftables": [{"rule": {"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks", "handle": 6, "comment": "h-x, net: n", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.1.2.3"}}, {"masquerade": null}]}}]}"#).expect("parse");
        let found: Vec<Option<IpAddr>> = masq_rules(&l, "h-x").map(saddr_of).collect();
        assert_eq!(found, vec![Some("10.1.2.3".parse().expect("ip"))]);
        assert_eq!(masq_rules(&l, "h-y").count(), 0);
    }

    #[test]
    fn masq_gc_takes_the_networks_unlisted_rules_only() {
        let at = |net: &str, cid: &str| Attachment {
            network: net.into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
        };
        let (keep, gone, other) = (at("n", "keep"), at("n", "gone"), at("m", "gone"));
        let rule = |h: u64, a: &Attachment| {
            format!(
                r#"{{"rule": {{"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks", "handle": {h}, "comment": "{}", "expr": []}}}}"#,
                a.masq_comment().expect("comment")
            )
        };
        let l = Listing::parse(&format!(
            r#"{{"nftables": [{}, {}, {}, {}, {{"rule": {{"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks", "handle": 9, "expr": []}}}}]}}"#,
            rule(1, &keep),
            rule(2, &gone),
            rule(3, &gone),
            rule(4, &other)
        ))
        .expect("parse");
        let found: Vec<u64> = masq_gc_rules(&l, "n", std::slice::from_ref(&keep))
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        assert_eq!(found, [2, 3]);
        // another ifname of a kept container is not kept
        let mut eth1 = keep.clone();
        eth1.ifname = "eth1".into();
        assert_eq!(masq_gc_rules(&l, "n", &[eth1]).len(), 3);
        assert_eq!(masq_gc_rules(&l, "m", &[]).len(), 1);
    }
}
