//! IP masquerade of one attachment, as the reference bridge/ptp do it with
//! iptables: a nat chain per attachment (named by the caller) holding
//! `-d <subnet> -j ACCEPT` and `! -d <multicast> -j MASQUERADE`, and one
//! `POSTROUTING -s <ip> -j <chain>` jump per address, all with one comment.
//! With iptables-nft, a new attachment's setup and every teardown are one
//! nf_tables transaction over netlink (`xtnft` writes the rules exactly as
//! iptables-nft does); otherwise, and to complete an existing chain, writes
//! go through `iptables-restore --noflush --wait` (one batch per call) and
//! reads through `iptables-save -t nat`; every exec is bounded in time.
//! Self-contained on purpose: portmap's firewall code lives in `firewall`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::exec::run;
use super::nfnl::{Nfnl, Op, NFPROTO_IPV4, NFPROTO_IPV6};
use super::xtnft as xt;
use super::{both_families, Addr, KResult};
#[cfg(any(test, feature = "fake"))]
use {super::KernelError, std::collections::BTreeMap, std::sync::Mutex};

/// One address to masquerade: the container address and its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasqEntry {
    pub ip: IpAddr,
    pub subnet: Addr,
}

pub trait Masquerade: Send + Sync {
    /// Creates `chain` if missing and appends the rules each entry needs
    /// that are not there yet (idempotent, like the reference's AppendUnique).
    fn setup(&self, chain: &str, comment: &str, entries: &[MasqEntry]) -> KResult<()>;
    /// Removes every POSTROUTING jump to `chain`, then the chain, in both
    /// families. Nothing to remove is success.
    fn teardown(&self, chain: &str) -> KResult<()>;
    /// Whether `chain` exists and POSTROUTING jumps to it from every ip.
    fn check(&self, chain: &str, ips: &[IpAddr]) -> KResult<bool>;
}

/// Go's `%q` for the plain strings CNI names are made of.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The longest comment a rule holds (xt_comment's 256-byte buffer with its
/// NUL). iptables-nft cuts a longer one there, which is what the reference
/// plugin's rules then carry; iptables-restore would refuse it instead.
pub const MAX_COMMENT_BYTES: usize = 255;

/// The reference's rule comment: `name: "<net>" id: "<cid>"`, cut at
/// `MAX_COMMENT_BYTES` as iptables-nft cuts it for the reference (a
/// container id of ~2000 characters made our restore batch fail).
pub fn comment(network: &str, container_id: &str) -> String {
    let mut c = format!("name: {} id: {}", go_quote(network), go_quote(container_id));
    let mut end = c.len().min(MAX_COMMENT_BYTES);
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    c.truncate(end);
    c
}

/// The reference's chain name: `CNI-` + the first 24 hex digits of
/// sha512(network + container id).
pub fn chain_name(network: &str, container_id: &str) -> String {
    use sha2::{Digest, Sha512};
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("CNI-{hex}")
}

/// An address as iptables-save prints it (host bits cleared, prefix shown).
fn save_form(a: Addr) -> String {
    let m = a.network();
    format!("{}/{}", m.ip, m.prefix)
}

fn host_form(ip: IpAddr) -> String {
    save_form(Addr {
        ip,
        prefix: if ip.is_ipv4() { 32 } else { 128 },
    })
}

/// The real iptables of the host network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

struct Family {
    // A field, not pointer identity: every `&V6` of a const may be a new address.
    v6: bool,
    /// What the MASQUERADE rule leaves out (`! -d`).
    multicast_net: Addr,
    save: &'static str,
    list: &'static str,
    restore: &'static str,
}

const V4: Family = Family {
    v6: false,
    multicast_net: Addr {
        ip: IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)),
        prefix: 4,
    },
    save: "iptables-save",
    list: "iptables",
    restore: "iptables-restore",
};
const V6: Family = Family {
    v6: true,
    multicast_net: Addr {
        ip: IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 8,
    },
    save: "ip6tables-save",
    list: "ip6tables",
    restore: "ip6tables-restore",
};

fn family(ip: &IpAddr) -> &'static Family {
    if ip.is_ipv4() {
        &V4
    } else {
        &V6
    }
}

/// `iptables-save -t nat` split into rule lines, plus whether `chain` exists.
fn nat_rules(f: &Family, chain: &str) -> KResult<(Vec<String>, bool)> {
    let out = run(f.save, &["-t", "nat"], "")?;
    let decl = format!(":{chain} ");
    let exists = out.lines().any(|l| l.starts_with(&decl));
    Ok((
        out.lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect(),
        exists,
    ))
}

fn tokens(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// `-A <in> ... -j <target>` with `flag value` among its tokens.
fn has_rule(rules: &[String], chain_in: &str, flag: &[&str], target: &str) -> bool {
    rules.iter().any(|r| {
        let t = tokens(r);
        t.get(1) == Some(&chain_in)
            && t.windows(flag.len()).any(|w| w == flag)
            && t.windows(2).any(|w| w == ["-j", target])
    })
}

fn restore(f: &Family, body: &str) -> KResult<()> {
    let batch = format!("*nat\n{body}COMMIT\n");
    run(f.restore, &["--noflush", "--wait"], &batch).map(drop)
}

/// The rules `entries` need that `rules` (the table as saved) lack, in
/// `typed_setup`'s order (the ACCEPTs before the MASQUERADE, as the
/// reference appends them), written from the same typed rules the netlink
/// path encodes. `decl` opens a chain that does not exist yet.
fn render_setup(
    f: &Family,
    chain: &str,
    comment: &str,
    entries: &[&MasqEntry],
    rules: &[String],
    decl: Option<&str>,
) -> String {
    let mut body = decl.unwrap_or("").to_string();
    for (in_chain, r) in typed_setup(f, chain, comment, entries) {
        let at = in_chain.unwrap_or(chain);
        let args = r.args();
        // A chain being declared is empty; POSTROUTING's jumps are read.
        if (decl.is_none() || at != chain) && listed(rules, at, &args) {
            continue;
        }
        let line: Vec<String> = args.iter().map(|a| restore_arg(a)).collect();
        body.push_str(&format!("-A {at} {}\n", line.join(" ")));
    }
    body
}

/// Whether `rules` (as listed) hold a rule in `chain` with the addresses
/// and target of `args`: the reference's own rules carry the same
/// comment, but one of ours or the reference's may predate a cut comment.
fn listed(rules: &[String], chain: &str, args: &[String]) -> bool {
    let addresses: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .take_while(|a| !["-m", "-j", "-p"].contains(a))
        .collect();
    let target = args
        .windows(2)
        .find(|w| w[0] == "-j")
        .map_or("", |w| w[1].as_str());
    has_rule(rules, chain, &addresses, target)
}

/// One iptables-restore argument: bare when it can be, else quoted as the
/// reference's comments are (`go_quote`).
fn restore_arg(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\''))
    {
        a.to_string()
    } else {
        go_quote(a)
    }
}

/// One family's rules. A new attachment takes one batch: `-N` aborts it
/// when the chain already exists (and no jump to a missing chain can
/// exist), and only then is the table read to add what is missing.
fn setup_family(f: &Family, chain: &str, comment: &str, entries: &[&MasqEntry]) -> KResult<()> {
    match netlink_setup(f, chain, comment, entries) {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => {
            tracing::debug!(error = %e, "netlink masquerade setup failed; using iptables-restore")
        }
    }
    exec_setup_family(f, chain, comment, entries)
}

fn exec_setup_family(
    f: &Family,
    chain: &str,
    comment: &str,
    entries: &[&MasqEntry],
) -> KResult<()> {
    let fresh = format!("-N {chain}\n");
    if restore(
        f,
        &render_setup(f, chain, comment, entries, &[], Some(&fresh)),
    )
    .is_ok()
    {
        return Ok(());
    }
    let (rules, exists) = nat_rules(f, chain)?;
    // Declaring an existing chain under --noflush would flush it.
    let decl = format!(":{chain} - [0:0]\n");
    let body = render_setup(
        f,
        chain,
        comment,
        entries,
        &rules,
        (!exists).then_some(decl.as_str()),
    );
    if body.is_empty() {
        return Ok(());
    }
    restore(f, &body)
}

/// Unhooks every POSTROUTING jump to `chain` and deletes the chain, in one
/// batch after one listing of POSTROUTING (not the whole table: that grows
/// with every pod). Declaring the chain first makes a missing one a no-op.
fn teardown_family(f: &Family, chain: &str) -> KResult<()> {
    match netlink_teardown(f, chain) {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => tracing::debug!(error = %e, "netlink masquerade teardown failed; using iptables"),
    }
    exec_teardown_family(f, chain)
}

fn exec_teardown_family(f: &Family, chain: &str) -> KResult<()> {
    exec_teardown_attempt(f, chain).or_else(|e| {
        // A jump listed a moment ago was gone by the restore (a concurrent
        // writer in this namespace): list again, once, and delete what is
        // there now.
        tracing::debug!(error = %e, "masquerade teardown raced another writer; listing again");
        exec_teardown_attempt(f, chain)
    })
}

fn exec_teardown_attempt(f: &Family, chain: &str) -> KResult<()> {
    let listed = run(f.list, &["-w", "-t", "nat", "-S", "POSTROUTING"], "")?;
    let mut unhook = String::new();
    for r in listed.lines() {
        let t = tokens(r);
        if t.get(1) == Some(&"POSTROUTING") && t.windows(2).any(|w| w == ["-j", chain]) {
            // `-A X <spec>` → `-D X <spec>`, spec exactly as listed.
            unhook.push_str(&format!("-D {}\n", &r[3..]));
        }
    }
    // No jump: commit only when the chain is there. A commit that deletes
    // waits for an RCU grace period under the table's commit lock, which a
    // burst of DELs of IPv4-only pods would otherwise pay twice per pod.
    if unhook.is_empty() && !chain_exists(f, chain)? {
        return Ok(());
    }
    restore(f, &format!(":{chain} - [0:0]\n{unhook}-X {chain}\n"))
}

/// The rules of a new attachment as typed rules, in `render_setup`'s order
/// for a chain that does not exist yet: the ACCEPTs (one per subnet), the
/// MASQUERADE, then one POSTROUTING jump per address. `None`: the
/// attachment's own chain.
fn typed_setup(
    f: &Family,
    chain: &str,
    comment: &str,
    entries: &[&MasqEntry],
) -> Vec<(Option<&'static str>, xt::Rule)> {
    let v6 = f.v6;
    let tagged = |mut r: xt::Rule| {
        r.matches = vec![xt::Match::Comment(comment.to_string())];
        r
    };
    let mut accepts: Vec<xt::Rule> = Vec::new();
    let mut rest = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut accept = xt::Rule::new(v6, xt::Target::Accept);
        accept.dst = Some((e.subnet.network(), false));
        let accept = tagged(accept);
        if !accepts.contains(&accept) {
            accepts.push(accept);
        }
        if i == 0 {
            let multicast = f.multicast_net;
            let mut m = xt::Rule::new(v6, xt::Target::Masquerade);
            m.dst = Some((multicast, true));
            rest.push((None, tagged(m)));
        }
        let mut jump = xt::Rule::new(v6, xt::Target::Jump(chain.to_string()));
        jump.src = Some((
            Addr {
                ip: e.ip,
                prefix: if v6 { 128 } else { 32 },
            },
            false,
        ));
        rest.push((Some("POSTROUTING"), tagged(jump)));
    }
    let mut out: Vec<(Option<&'static str>, xt::Rule)> =
        accepts.into_iter().map(|r| (None, r)).collect();
    out.extend(rest);
    out
}

/// A new attachment over netlink, when iptables is iptables-nft: one
/// transaction that creates the chain (failing when it exists: that case
/// takes the exec path, which adds only what is missing), its rules and the
/// POSTROUTING jumps. `Ok(false)`: take the exec path.
fn netlink_setup(f: &Family, chain: &str, comment: &str, entries: &[&MasqEntry]) -> KResult<bool> {
    let v6 = f.v6;
    if !xt::iptables_is_nft(v6) || !xt::comment_fits(comment) {
        return Ok(false);
    }
    let mut ops = vec![Op::NewChain(chain.to_string())];
    for (in_chain, r) in typed_setup(f, chain, comment, entries) {
        ops.push(Op::NewRule(r.to_new(in_chain.unwrap_or(chain), true)));
    }
    let family = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
    match Nfnl::open()?.commit(family, "nat", &ops)? {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::debug!(error = %e, "netlink masquerade setup not applied; using iptables-restore");
            Ok(false)
        }
    }
}

/// Unhooks and deletes the chain over netlink: one listing of POSTROUTING,
/// one transaction (none when there is nothing). `Ok(false)`: exec path.
fn netlink_teardown(f: &Family, chain: &str) -> KResult<bool> {
    let v6 = f.v6;
    if !xt::iptables_is_nft(v6) {
        return Ok(false);
    }
    let family = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
    let mut nl = Nfnl::open()?;
    // A commit refused because the ruleset changed under it (another
    // family's teardown of this DEL, the nftables backend's, another pod's
    // ADD: the generation is the namespace's) is recomputed and retried:
    // the iptables fallback, listing then deleting, races the same
    // writers and then fails with "Bad rule".
    for attempt in 1..=5 {
        let generation = nl.generation()?;
        let ops = xt::nat_remove_ops(&mut nl, family, "POSTROUTING", chain)?;
        match nl.commit_at(Some(generation), family, "nat", &ops)? {
            Ok(()) => return Ok(true),
            Err(e) => {
                tracing::debug!(error = %e, attempt, "netlink masquerade teardown not applied");
            }
        }
    }
    Ok(false)
}

/// Whether the nat table has `chain`.
fn chain_exists(f: &Family, chain: &str) -> KResult<bool> {
    Ok(super::exec::nat_chain_rules(f.v6, chain)?.is_some())
}

impl Masquerade for System {
    fn setup(&self, chain: &str, comment: &str, entries: &[MasqEntry]) -> KResult<()> {
        let [v4, v6] = both_families(|v6| {
            let f = if v6 { &V6 } else { &V4 };
            let mine: Vec<&MasqEntry> = entries.iter().filter(|e| e.ip.is_ipv6() == v6).collect();
            if mine.is_empty() {
                return Ok(());
            }
            setup_family(f, chain, comment, &mine)
        });
        v4.and(v6)
    }

    fn teardown(&self, chain: &str) -> KResult<()> {
        // Both families at once: a DEL then waits for one family's execs, not two.
        let [v4, v6] = both_families(|v6| teardown_family(if v6 { &V6 } else { &V4 }, chain));
        // No ip6tables (or no v6 nat table): nothing of ours can be there.
        if let Err(e) = v6 {
            tracing::debug!(error = %e, "ip6tables unavailable; skipping IPv6 masquerade teardown");
        }
        v4
    }

    fn check(&self, chain: &str, ips: &[IpAddr]) -> KResult<bool> {
        for f in [&V4, &V6] {
            let mine: Vec<&IpAddr> = ips.iter().filter(|ip| family(ip).v6 == f.v6).collect();
            if mine.is_empty() {
                continue;
            }
            let (rules, exists) = nat_rules(f, chain)?;
            if !exists
                || !mine
                    .iter()
                    .all(|ip| has_rule(&rules, "POSTROUTING", &["-s", &host_form(**ip)], chain))
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Chain → entries, and the call log.
#[cfg(any(test, feature = "fake"))]
type FakeState = (BTreeMap<String, Vec<MasqEntry>>, Vec<String>);

/// A recording fake: chain → entries; every call logged.
#[derive(Debug, Default)]
#[cfg(any(test, feature = "fake"))]
pub struct Fake {
    state: Mutex<FakeState>,
}

#[cfg(any(test, feature = "fake"))]
impl Fake {
    /// Chains and their entries.
    pub fn chains(&self) -> BTreeMap<String, Vec<MasqEntry>> {
        self.state.lock().map(|s| s.0.clone()).unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().map(|s| s.1.clone()).unwrap_or_default()
    }
}

#[cfg(any(test, feature = "fake"))]
impl Masquerade for Fake {
    fn setup(&self, chain: &str, comment: &str, entries: &[MasqEntry]) -> KResult<()> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| KernelError::Failed("fake masquerade poisoned".into()))?;
        s.1.push(format!(
            "setup {chain} {comment} {}",
            entries
                .iter()
                .map(|e| format!("{}:{}", e.ip, save_form(e.subnet)))
                .collect::<Vec<_>>()
                .join(",")
        ));
        let v = s.0.entry(chain.to_string()).or_default();
        for e in entries {
            if !v.contains(e) {
                v.push(*e);
            }
        }
        Ok(())
    }

    fn teardown(&self, chain: &str) -> KResult<()> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| KernelError::Failed("fake masquerade poisoned".into()))?;
        s.1.push(format!("teardown {chain}"));
        s.0.remove(chain);
        Ok(())
    }

    fn check(&self, chain: &str, ips: &[IpAddr]) -> KResult<bool> {
        let s = self
            .state
            .lock()
            .map_err(|_| KernelError::Failed("fake masquerade poisoned".into()))?;
        Ok(s.0
            .get(chain)
            .is_some_and(|v| ips.iter().all(|ip| v.iter().any(|e| e.ip == *ip))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_reference() {
        // Python: "CNI-" + hashlib.sha512(b"mynetabc").hexdigest()[:24]
        assert_eq!(chain_name("mynet", "abc"), "CNI-e88f49d94512ff752ebe6070");
        assert_eq!(comment("mynet", "abc"), r#"name: "mynet" id: "abc""#);
        let long = "a".repeat(3000);
        let c = comment("mynet", &long);
        assert_eq!(c.len(), MAX_COMMENT_BYTES);
        assert!(c.starts_with(r#"name: "mynet" id: "aaa"#));
        assert_eq!(go_quote("a\"b"), r#""a\"b""#);
    }

    #[test]
    fn save_forms() {
        let a = Addr {
            ip: "10.1.2.3".parse().expect("ip"),
            prefix: 24,
        };
        assert_eq!(save_form(a), "10.1.2.0/24");
        assert_eq!(host_form("fd00::5".parse().expect("ip")), "fd00::5/128");
    }
}

/// The netlink path against the exec path on the real kernel.
#[cfg(test)]
mod netlink_equivalence {
    use super::*;
    use crate::testns::Ns;

    fn entries(v6: bool) -> Vec<MasqEntry> {
        let (a, b, net) = if v6 {
            ("fd00::2", "fd00::3", "fd00::/64")
        } else {
            ("10.0.0.2", "10.0.0.3", "10.0.0.0/24")
        };
        let subnet = crate::cidr(net);
        [a, b]
            .iter()
            .map(|ip| MasqEntry {
                ip: ip.parse().expect("ip"),
                subnet,
            })
            .collect()
    }

    #[test]
    fn netlink_and_iptables_restore_leave_the_same_tables() {
        let (nl_ns, ex_ns) = (Ns::new("mq-nl"), Ns::new("mq-ex"));
        for v6 in [false, true] {
            let f = if v6 { &V6 } else { &V4 };
            let all = entries(v6);
            let mine: Vec<&MasqEntry> = all.iter().collect();
            let (c1, c2) = (chain_name("n", "first"), chain_name("n", "second"));
            let (k1, k2) = (comment("n", "first"), comment("n", "second"));
            let took = nl_ns.enter(|| {
                // the first attachment of a node creates the nat table via iptables
                exec_setup_family(f, &c1, &k1, &mine).expect("exec setup");
                let took = netlink_setup(f, &c2, &k2, &mine).expect("netlink setup");
                // an existing chain is the exec path's
                assert!(!netlink_setup(f, &c2, &k2, &mine).expect("again"));
                took
            });
            assert!(took, "the netlink path took the setup (v6 {v6})");
            ex_ns.enter(|| {
                exec_setup_family(f, &c1, &k1, &mine).expect("exec setup");
                exec_setup_family(f, &c2, &k2, &mine).expect("exec setup");
            });
            assert_eq!(nl_ns.nat_rules(v6), ex_ns.nat_rules(v6), "v6 {v6}");
            nl_ns.enter(|| {
                assert!(netlink_teardown(f, &c1).expect("nl teardown"));
                exec_teardown_family(f, &c2).expect("exec teardown");
                assert!(netlink_teardown(f, &c2).expect("nothing left"));
            });
            let left = nl_ns.nat_rules(v6);
            assert!(!left.iter().any(|l| l.contains("CNI-")), "{left:#?}");
        }
    }
}
