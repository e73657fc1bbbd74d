//! The iptables backend: the reference portmap's chains, rules and comments,
//! byte for byte where it matters (names, comments, match order), so pods set
//! up by one binary are torn down by the other. With iptables-nft, the ADD of
//! a new attachment and every DEL are one nf_tables transaction over netlink
//! that touches only the named chains (no exec, no whole-table read: the
//! cost does not grow with the number of pods). Otherwise (legacy iptables,
//! a re-ADD, sctp, user conditions) and for CHECK and GC, each step of a
//! family is one `iptables-restore --noflush --wait` batch (atomic: all or
//! nothing); reads are one `iptables-save -t nat` or `iptables -S <chain>`.
//!
//! ADD first tries a batch that assumes the shared skeleton exists (checked
//! inside the batch with `-C`, so a missing piece aborts it harmlessly); only
//! when that fails does it read the table and create what is missing.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{dnat_chain, FamilySpec, Options, Owner, PortmapSpec};
use crate::exec::{nat_chain_rules, run};
use crate::nfnl::{Nfnl, Op, NFPROTO_IPV4, NFPROTO_IPV6};
use crate::xtnft as xt;
use crate::{both_families, Addr, KResult, KernelError};

pub const TOP_DNAT: &str = "CNI-HOSTPORT-DNAT";
pub const SETMARK: &str = "CNI-HOSTPORT-SETMARK";
pub const MASQ: &str = "CNI-HOSTPORT-MASQ";

struct Tools {
    save: &'static str,
    restore: &'static str,
}

const V4: Tools = Tools {
    save: "iptables-save",
    restore: "iptables-restore",
};
const V6: Tools = Tools {
    save: "ip6tables-save",
    restore: "ip6tables-restore",
};

fn tools(v6: bool) -> &'static Tools {
    if v6 {
        &V6
    } else {
        &V4
    }
}

/// Quotes one argument for iptables-restore when it needs it.
fn q(s: &str) -> String {
    if !s.is_empty() && !s.contains([' ', '"', '\\', '\'', '\t']) {
        return s.to_string();
    }
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn line(args: &[String]) -> String {
    args.iter().map(|a| q(a)).collect::<Vec<_>>().join(" ")
}

/// The reference's jump comment, cut to iptables' 255-byte limit.
pub fn dnat_comment(owner: &Owner) -> String {
    let c = format!(
        "dnat name: \"{}\" id: \"{}\"",
        owner.network, owner.container_id
    );
    if c.len() <= 255 {
        return c;
    }
    let mut cut = 253;
    while !c.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &c[..cut])
}

/// Each protocol of the mappings (sorted by name, as the reference does) with
/// its host ports in mapping order, every mapping's port counted.
fn ports_by_proto(fam: &FamilySpec) -> Vec<(super::Proto, Vec<u16>)> {
    let mut protos: Vec<_> = fam
        .mappings
        .iter()
        .map(|m| m.proto)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    protos.sort_by_key(|p| p.as_str());
    protos
        .into_iter()
        .map(|p| {
            let ports = fam
                .mappings
                .iter()
                .filter(|m| m.proto == p)
                .map(|m| m.host_port)
                .collect();
            (p, ports)
        })
        .collect()
}

/// The skeleton the reference keeps for every attachment, as `(chain,
/// rule)` pairs: the jumps from PREROUTING and OUTPUT to CNI-HOSTPORT-DNAT
/// and, with its own masquerade mark, the SETMARK and MASQ chains' rules
/// and POSTROUTING's jump to MASQ (prepended). Every rule here and below
/// is defined once: the exec path writes `args()`, the netlink path
/// encodes the same value.
fn skeleton(opts: &Options, v6: bool) -> Vec<(&'static str, xt::Rule)> {
    let mut top = xt::Rule::new(v6, xt::Target::Jump(TOP_DNAT.into()));
    top.matches = vec![xt::Match::DstTypeLocal];
    let mut out = vec![("PREROUTING", top.clone()), ("OUTPUT", top)];
    if needs_own_masq(opts) {
        let bit = 1u32 << opts.mark_bit.min(31);
        let mut setmark = xt::Rule::new(
            v6,
            xt::Target::SetXmark {
                value: bit,
                mask: bit,
            },
        );
        setmark.matches = vec![xt::Match::Comment("CNI portfwd masquerade mark".into())];
        let mut masq = xt::Rule::new(v6, xt::Target::Masquerade);
        masq.matches = vec![xt::Match::Mark {
            value: bit,
            mask: bit,
        }];
        let mut jump = xt::Rule::new(v6, xt::Target::Jump(MASQ.into()));
        jump.matches = vec![xt::Match::Comment(
            "CNI portfwd requiring masquerade".into(),
        )];
        out.extend([(SETMARK, setmark), (MASQ, masq), ("POSTROUTING", jump)]);
    }
    out
}

fn proto_number(p: super::Proto) -> u8 {
    match p {
        super::Proto::Tcp => xt::IPPROTO_TCP,
        super::Proto::Udp => xt::IPPROTO_UDP,
        super::Proto::Sctp => xt::IPPROTO_SCTP,
    }
}

fn host_addr(ip: IpAddr) -> Addr {
    Addr {
        ip,
        prefix: if ip.is_ipv4() { 32 } else { 128 },
    }
}

/// The attachment chain's rules: per mapping, the hairpin mark, the
/// localhost mark (IPv4) and the DNAT, in that order.
pub fn chain_rules(opts: &Options, fam: &FamilySpec) -> Vec<xt::Rule> {
    let v6 = fam.container.ip.is_ipv6();
    let setmark = opts
        .external_mark_chain
        .clone()
        .unwrap_or_else(|| SETMARK.to_string());
    let mut out = Vec::new();
    for m in fam.mappings.iter().filter(|m| !m.other_family) {
        let mut base = xt::Rule::new(v6, xt::Target::Accept);
        base.proto = Some(proto_number(m.proto));
        base.matches = vec![xt::Match::Dport(m.host_port)];
        base.dst = m.host_ip.map(|h| (host_addr(h), false));
        if opts.snat {
            let src = if opts.masq_all {
                Addr {
                    ip: if v6 {
                        IpAddr::from([0u16; 8])
                    } else {
                        IpAddr::from([0u8; 4])
                    },
                    prefix: 0,
                }
            } else {
                fam.container
            };
            let mut r = base.clone();
            r.src = Some((src, false));
            r.target = xt::Target::Jump(setmark.clone());
            out.push(r);
            if !v6 && !opts.masq_all {
                let mut r = base.clone();
                r.src = Some((host_addr(IpAddr::from([127, 0, 0, 1])), false));
                r.target = xt::Target::Jump(setmark.clone());
                out.push(r);
            }
        }
        let mut r = base;
        r.target = xt::Target::Dnat(fam.container.ip, m.container_port);
        out.push(r);
    }
    out
}

/// The rules that enter the attachment's chain `chain` from
/// CNI-HOSTPORT-DNAT: one per protocol and per 15 ports (multiport's
/// limit), with the user's `conditionsV4/V6` (free iptables matches, so
/// such rules go through iptables-restore only).
pub fn entry_rules(owner: &Owner, fam: &FamilySpec, chain: &str) -> Vec<xt::Rule> {
    let comment = dnat_comment(owner);
    let mut out = Vec::new();
    for (p, ports) in ports_by_proto(fam) {
        for chunk in ports.chunks(15) {
            let mut r = xt::Rule::new(
                fam.container.ip.is_ipv6(),
                xt::Target::Jump(chain.to_string()),
            );
            r.proto = Some(proto_number(p));
            r.matches = vec![
                xt::Match::Comment(comment.clone()),
                xt::Match::MultiportDst(chunk.to_vec()),
            ];
            r.extra = fam.conditions.clone();
            out.push(r);
        }
    }
    out
}
/// What `iptables-save -t nat` says exists.
#[derive(Debug, Default, Clone)]
pub struct NatState {
    pub chains: BTreeSet<String>,
    /// `-A` lines, verbatim
    pub rules: Vec<String>,
}

impl NatState {
    pub fn parse(save: &str) -> NatState {
        let mut st = NatState::default();
        for l in save.lines() {
            if let Some(rest) = l.strip_prefix(':') {
                if let Some(name) = rest.split_whitespace().next() {
                    st.chains.insert(name.to_string());
                }
            } else if l.starts_with("-A ") {
                st.rules.push(l.to_string());
            }
        }
        st
    }

    fn has(&self, chain: &str, rule: &[String]) -> bool {
        let want = format!("-A {chain} {}", line(rule));
        self.rules.contains(&want)
    }

    /// `-A <chain> ... -j <target>` lines, as `-D` lines.
    fn jumps_to(&self, chain: &str, target: &str) -> Vec<String> {
        jumps_to(self.rules.iter().map(String::as_str), chain, target)
    }
}

fn jumps_to<'a>(rules: impl Iterator<Item = &'a str>, chain: &str, target: &str) -> Vec<String> {
    let prefix = format!("-A {chain} ");
    let suffix = format!(" -j {target}");
    rules
        .filter(|r| r.starts_with(&prefix) && r.trim_end().ends_with(&suffix))
        .map(|r| format!("-D {chain} {}", &r[prefix.len()..]))
        .collect()
}

/// The attachment part of an ADD batch: (re)create its chain and rules, then
/// prepend its entry jumps (newest attachment wins a contested port, as in the
/// reference, without moving CNI-HOSTPORT-DNAT ahead of anything).
fn attachment_lines(owner: &Owner, opts: &Options, fam: &FamilySpec, out: &mut String) {
    let chain = dnat_chain(owner);
    for r in chain_rules(opts, fam) {
        out.push_str(&format!("-A {chain} {}\n", line(&r.args())));
    }
    for r in entry_rules(owner, fam, &chain).iter().rev() {
        out.push_str(&format!("-I {TOP_DNAT} 1 {}\n", line(&r.args())));
    }
}

fn needs_own_masq(opts: &Options) -> bool {
    opts.snat && opts.external_mark_chain.is_none()
}

/// The one-exec ADD of a new attachment: the skeleton is verified with
/// `-C` inside the batch, and `-N` fails it when the attachment's chain
/// exists (a re-ADD, whose old entry jumps `render_add` unhooks).
pub fn render_fast(owner: &Owner, opts: &Options, fam: &FamilySpec) -> String {
    let chain = dnat_chain(owner);
    let mut b = format!("*nat\n-N {chain}\n");
    b.push_str(&skeleton_checks(opts, fam.container.ip.is_ipv6()));
    attachment_lines(owner, opts, fam, &mut b);
    b.push_str("COMMIT\n");
    b
}

/// The full ADD against a known table state: creates what is missing of the
/// skeleton, drops the attachment's old jumps, installs its rules.
pub fn render_add(owner: &Owner, opts: &Options, fam: &FamilySpec, st: &NatState) -> String {
    let chain = dnat_chain(owner);
    let mut decl = String::from("*nat\n");
    let mut body = String::new();
    let declare = |name: &str, decl: &mut String| {
        if !st.chains.contains(name) {
            decl.push_str(&format!(":{name} - [0:0]\n"));
        }
    };
    declare(TOP_DNAT, &mut decl);
    if needs_own_masq(opts) {
        declare(SETMARK, &mut decl);
        declare(MASQ, &mut decl);
    }
    // Always declared: creates it, or flushes the old rules of a re-ADD.
    decl.push_str(&format!(":{chain} - [0:0]\n"));
    for (c, r) in skeleton(opts, fam.container.ip.is_ipv6()) {
        let args = r.args();
        if st.has(c, &args) {
            continue;
        }
        // POSTROUTING's jump is prepended: the bridge/ptp masquerade rules
        // must not shadow it.
        let at = if c == "POSTROUTING" {
            "-I POSTROUTING 1".to_string()
        } else {
            format!("-A {c}")
        };
        body.push_str(&format!("{at} {}\n", line(&args)));
    }
    for d in st.jumps_to(TOP_DNAT, &chain) {
        body.push_str(&d);
        body.push('\n');
    }
    attachment_lines(owner, opts, fam, &mut body);
    format!("{decl}{body}COMMIT\n")
}

/// The ADD of a new attachment over netlink, when iptables is iptables-nft,
/// every rule is expressible and the skeleton is in place: one
/// transaction that creates the attachment's chain (failing if it exists:
/// a re-ADD takes the exec path, which replaces the old rules), fills it
/// and prepends its entry jumps. `Ok(false)`: take the exec path.
fn netlink_add(owner: &Owner, opts: &Options, fam: &FamilySpec, v6: bool) -> KResult<bool> {
    if !xt::iptables_is_nft(v6) {
        return Ok(false);
    }
    let chain = dnat_chain(owner);
    let rules = chain_rules(opts, fam);
    let entries = entry_rules(owner, fam, &chain);
    if !rules.iter().chain(&entries).all(xt::Rule::netlink_ready) {
        return Ok(false);
    }
    // The checks and the commit are one unit: a commit after anyone else's
    // is refused, and the exec path takes over.
    let mut nl = Nfnl::open()?;
    let generation = nl.generation()?;
    for (in_chain, rule) in skeleton(opts, v6) {
        if !xt::nat_has(&rule, in_chain)? {
            return Ok(false);
        }
    }
    let mut ops = vec![Op::NewChain(chain.clone())];
    ops.extend(rules.iter().map(|r| Op::NewRule(r.to_new(&chain, true))));
    // Each at the head, last first: they end up in entry_rules' order.
    ops.extend(
        entries
            .iter()
            .rev()
            .map(|r| Op::NewRule(r.to_new(TOP_DNAT, false))),
    );
    let family = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
    match nl.commit_at(Some(generation), family, "nat", &ops)? {
        Ok(()) => Ok(true),
        Err(e) => {
            // EEXIST (a re-ADD), a missing externalSetMarkChain, a ruleset
            // changed under the checks (ERESTART), ...: the exec path
            // handles it and reports in iptables' words.
            tracing::debug!(error = %e, "netlink ADD not applied; using iptables-restore");
            Ok(false)
        }
    }
}

/// The DEL over netlink: one listing of CNI-HOSTPORT-DNAT, one transaction
/// (none when there is nothing). `Ok(false)`: take the exec path.
fn netlink_remove(chain: &str, v6: bool) -> KResult<bool> {
    if !xt::iptables_is_nft(v6) {
        return Ok(false);
    }
    let family = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
    let mut nl = Nfnl::open()?;
    let generation = nl.generation()?;
    let ops = xt::nat_remove_ops(&mut nl, family, TOP_DNAT, chain)?;
    match nl.commit_at(Some(generation), family, "nat", &ops)? {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::debug!(error = %e, "netlink DEL not applied; using iptables-restore");
            Ok(false)
        }
    }
}

fn restore(v6: bool, batch: &str) -> KResult<()> {
    run(tools(v6).restore, &["--noflush", "--wait"], batch).map(drop)
}

fn save(v6: bool) -> KResult<NatState> {
    run(tools(v6).save, &["-t", "nat"], "").map(|s| NatState::parse(&s))
}

pub fn apply(owner: &Owner, spec: &PortmapSpec, until: std::time::Instant) -> KResult<()> {
    let [v4, v6] = both_families(|v6| {
        spec.families
            .iter()
            .filter(|fam| fam.container.ip.is_ipv6() == v6)
            .try_for_each(|fam| apply_family(owner, &spec.options, fam, v6, until))
    });
    v4.and(v6)
}

fn apply_family(
    owner: &Owner,
    opts: &Options,
    fam: &FamilySpec,
    v6: bool,
    until: std::time::Instant,
) -> KResult<()> {
    // One netlink transaction: only for a batch that fits in one piece (a
    // mapping makes at most three rules: two marks and its DNAT).
    if fam.mappings.len() * 3 <= super::CHUNK_LINES {
        match netlink_add(owner, opts, fam, v6) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "netlink ADD failed; using iptables-restore"),
        }
    }
    exec_apply_family(owner, opts, fam, v6, until)
}

/// Runs an iptables-restore batch in pieces (see `super::chunks`): the
/// `*nat` line and the chain declarations open the first piece only.
fn restore_in_pieces(v6: bool, batch: &str, until: std::time::Instant) -> KResult<()> {
    let lines: Vec<&str> = batch
        .lines()
        .filter(|l| *l != "*nat" && *l != "COMMIT")
        .collect();
    let decl = lines.iter().take_while(|l| l.starts_with(':')).count();
    let pieces = super::chunks(&lines[..decl], &lines[decl..], "*nat\n", "COMMIT\n");
    super::apply_pieces(&pieces, until, |p| restore(v6, p))
}

/// The ADD through iptables-restore: one batch when the skeleton is there,
/// else a read of the table and a batch that completes it.
fn exec_apply_family(
    owner: &Owner,
    opts: &Options,
    fam: &FamilySpec,
    v6: bool,
    until: std::time::Instant,
) -> KResult<()> {
    let fast = render_fast(owner, opts, fam);
    let fast = if fast.lines().count() <= super::CHUNK_LINES {
        restore(v6, &fast)
    } else if skeleton_in_place(v6, opts)? {
        restore_in_pieces(v6, &fast, until)
    } else {
        Err(KernelError::Failed("the skeleton is incomplete".into()))
    };
    // Any other failure (the chain exists, a piece failed) is mended by the
    // full batch, which replaces the attachment's rules whatever is there.
    match fast {
        Ok(()) => return Ok(()),
        Err(e @ KernelError::Timeout(_)) => return Err(e),
        Err(_) => {}
    }
    let st = save(v6)?;
    if let Some(ext) = &opts.external_mark_chain {
        if !st.chains.contains(ext) {
            return Err(KernelError::Failed(format!(
                "externalSetMarkChain {ext} does not exist in the {} nat table; create it first (kube-proxy does for KUBE-MARK-MASQ) or leave the option out",
                if v6 { "ip6tables" } else { "iptables" }
            )));
        }
    }
    restore_in_pieces(v6, &render_add(owner, opts, fam, &st), until)
}

/// Whether the skeleton the fast batch checks with `-C` is in place, checked
/// apart from the batch when the batch goes in pieces (a failed check in a
/// later piece would leave the earlier ones applied).
fn skeleton_in_place(v6: bool, opts: &Options) -> KResult<bool> {
    let b = format!("*nat\n{}COMMIT\n", skeleton_checks(opts, v6));
    Ok(restore(v6, &b).is_ok())
}

/// `-C` lines for the skeleton a fast ADD relies on (a batch of checks
/// changes nothing and fails if one rule is missing).
fn skeleton_checks(opts: &Options, v6: bool) -> String {
    skeleton(opts, v6)
        .iter()
        .map(|(c, r)| format!("-C {c} {}\n", line(&r.args())))
        .collect()
}

/// The lines of `iptables -S <chain>`, empty when the chain does not exist.
fn list_chain(v6: bool, chain: &str) -> KResult<Vec<String>> {
    Ok(nat_chain_rules(v6, chain)?.unwrap_or_default())
}

/// The DEL batch: unhook every jump to the attachment's chain, then flush
/// and delete it (declaring it first makes a missing chain a no-op).
pub fn render_remove(chain: &str, unhook: &[String]) -> String {
    let mut b = format!("*nat\n:{chain} - [0:0]\n");
    for d in unhook {
        b.push_str(d);
        b.push('\n');
    }
    b.push_str(&format!("-X {chain}\nCOMMIT\n"));
    b
}

/// Per family: list the jumps, then one batch. A family whose iptables does
/// not work at all is skipped as long as the other one worked.
pub fn remove(owner: &Owner) -> KResult<()> {
    let chain = dnat_chain(owner);
    let results = both_families(|v6| {
        match netlink_remove(&chain, v6) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "netlink DEL failed; using iptables-restore"),
        }
        exec_remove_family(&chain, v6)
    });
    let errors: Vec<KernelError> = results.into_iter().filter_map(Result::err).collect();
    // The reference also tolerates one unusable family; a timeout is never tolerated.
    let mut errors = errors.into_iter();
    match (errors.next(), errors.next()) {
        (None, _) => Ok(()),
        (Some(e), None) if !matches!(e, KernelError::Timeout(_)) => {
            tracing::info!(error = %e, "one address family's iptables is unusable; skipped");
            Ok(())
        }
        (Some(e), _) => Err(e),
    }
}

/// The DEL through iptables: list the jumps, then one batch.
fn exec_remove_family(chain: &str, v6: bool) -> KResult<()> {
    // Portmap never set up this family: its chain comes with the top one.
    let Some(rules) = nat_chain_rules(v6, TOP_DNAT)? else {
        return Ok(());
    };
    let unhook = jumps_to(rules.iter().map(String::as_str), TOP_DNAT, chain);
    // No jump and no chain (the other family of a single-stack pod, a
    // second DEL): no commit, which would wait for a grace period under
    // the table's commit lock.
    if unhook.is_empty() && nat_chain_rules(v6, chain)?.is_none() {
        return Ok(());
    }
    restore(v6, &render_remove(chain, &unhook))
}

/// The CHECK batch: `-C` of every rule, nothing else (a batch of checks
/// changes nothing).
pub fn render_check(owner: &Owner, opts: &Options, fam: &FamilySpec) -> String {
    let chain = dnat_chain(owner);
    let mut b = String::from("*nat\n");
    for r in chain_rules(opts, fam) {
        b.push_str(&format!("-C {chain} {}\n", line(&r.args())));
    }
    for r in entry_rules(owner, fam, &chain) {
        b.push_str(&format!("-C {TOP_DNAT} {}\n", line(&r.args())));
    }
    b.push_str("COMMIT\n");
    b
}

pub fn check(owner: &Owner, spec: &PortmapSpec) -> KResult<()> {
    for fam in &spec.families {
        let v6 = fam.container.ip.is_ipv6();
        restore(v6, &render_check(owner, &spec.options, fam)).map_err(|e| {
            KernelError::NotInPlace(format!(
                "port mapping rules of {} are missing or changed in chain {}: {e}",
                fam.container.ip,
                dnat_chain(owner)
            ))
        })?;
    }
    Ok(())
}

/// The network and container id in a reference jump comment.
fn parse_comment(rule: &str) -> Option<(String, String)> {
    let start = rule.find("dnat name: \\\"")? + "dnat name: \\\"".len();
    let rest = &rule[start..];
    let (net, rest) = rest.split_once("\\\" id: \\\"")?;
    let (cid, _) = rest.split_once("\\\"")?;
    Some((net.to_string(), cid.to_string()))
}

pub fn gc(network: &str, valid: &[String]) -> KResult<()> {
    for v6 in [false, true] {
        let rules = match list_chain(v6, TOP_DNAT) {
            Ok(r) => r,
            Err(e) if v6 => {
                tracing::info!(error = %e, "ip6tables unusable; GC skipped it");
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut stale: BTreeSet<String> = BTreeSet::new();
        for r in &rules {
            if let Some((net, cid)) = parse_comment(r) {
                if net == network && !valid.contains(&cid) {
                    stale.insert(dnat_chain(&Owner {
                        network: net,
                        container_id: cid,
                    }));
                }
            }
        }
        if stale.is_empty() {
            continue;
        }
        let mut b = String::from("*nat\n");
        for c in &stale {
            b.push_str(&format!(":{c} - [0:0]\n"));
        }
        for c in &stale {
            for d in jumps_to(rules.iter().map(String::as_str), TOP_DNAT, c) {
                b.push_str(&d);
                b.push('\n');
            }
        }
        for c in &stale {
            b.push_str(&format!("-X {c}\n"));
        }
        b.push_str("COMMIT\n");
        restore(v6, &b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Mapping, Proto};
    use super::*;
    use crate::Addr;

    fn owner() -> Owner {
        Owner {
            network: "net1".into(),
            container_id: "cid1".into(),
        }
    }

    fn fam() -> FamilySpec {
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
                Mapping {
                    host_port: 9090,
                    container_port: 90,
                    proto: Proto::Tcp,
                    host_ip: Some("fd00::1".parse().expect("ip")),
                    other_family: true,
                },
            ],
            conditions: vec!["!".into(), "-s".into(), "10.9.0.0/16".into()],
        }
    }

    fn opts() -> Options {
        Options {
            snat: true,
            masq_all: false,
            mark_bit: 13,
            external_mark_chain: None,
        }
    }

    #[test]
    fn rules_match_the_reference() {
        let c = dnat_chain(&owner());
        let b = render_add(&owner(), &opts(), &fam(), &NatState::default());
        let expected = format!(
            "*nat
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:{c} - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-I POSTROUTING 1 -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ
-A {c} -s 10.0.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A {c} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A {c} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80
-A {c} -s 10.0.0.0/24 -d 192.168.1.1/32 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK
-A {c} -s 127.0.0.1/32 -d 192.168.1.1/32 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK
-A {c} -d 192.168.1.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.0.0.2:53
-I CNI-HOSTPORT-DNAT 1 -p udp -m comment --comment \"dnat name: \\\"net1\\\" id: \\\"cid1\\\"\" -m multiport --dports 53 ! -s 10.9.0.0/16 -j {c}
-I CNI-HOSTPORT-DNAT 1 -p tcp -m comment --comment \"dnat name: \\\"net1\\\" id: \\\"cid1\\\"\" -m multiport --dports 8080,9090 ! -s 10.9.0.0/16 -j {c}
COMMIT
"
        );
        assert_eq!(b, expected);
    }

    #[test]
    fn masq_all_external_chain_and_many_ports() {
        let mut f = fam();
        f.conditions.clear();
        f.mappings = (1..=16)
            .map(|p| Mapping {
                host_port: p,
                container_port: p,
                proto: Proto::Tcp,
                host_ip: None,
                other_family: false,
            })
            .collect();
        let o = Options {
            snat: true,
            masq_all: true,
            mark_bit: 13,
            external_mark_chain: Some("KUBE-MARK-MASQ".into()),
        };
        let b = render_add(&owner(), &o, &f, &NatState::default());
        assert!(
            !b.contains("SETMARK") && !b.contains("CNI-HOSTPORT-MASQ"),
            "{b}"
        );
        assert!(
            b.contains("-s 0.0.0.0/0 -p tcp -m tcp --dport 1 -j KUBE-MARK-MASQ"),
            "{b}"
        );
        assert!(!b.contains("127.0.0.1"), "{b}");
        assert!(
            b.contains("--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 "),
            "{b}"
        );
        assert!(b.contains("--dports 16 "), "{b}");
    }

    #[test]
    fn readd_unhooks_old_jumps_and_skips_existing_skeleton() {
        let c = dnat_chain(&owner());
        let save = format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:CNI-HOSTPORT-DNAT - [0:0]\n:{c} - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"net1\\\" id: \\\"cid1\\\"\" -m multiport --dports 80 -j {c}\nCOMMIT\n"
        );
        let st = NatState::parse(&save);
        let o = Options {
            snat: false,
            ..opts()
        };
        let b = render_add(&owner(), &o, &fam(), &st);
        assert!(!b.contains(":CNI-HOSTPORT-DNAT"), "{b}");
        assert!(!b.contains("-A PREROUTING"), "{b}");
        assert!(b.contains("-A OUTPUT"), "{b}");
        assert!(b.contains(&format!("-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"net1\\\" id: \\\"cid1\\\"\" -m multiport --dports 80 -j {c}\n")), "{b}");
        assert_eq!(
            parse_comment(&st.rules[1]),
            Some(("net1".into(), "cid1".into()))
        );
    }

    #[test]
    fn v6_has_no_localhost_rule() {
        let f = FamilySpec {
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
        };
        let r = chain_rules(&opts(), &f);
        assert_eq!(r.len(), 2);
        assert_eq!(
            line(&r[1].args()),
            "-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80"
        );
    }
}

/// The netlink path against the exec path on the real kernel: the same
/// attachments leave the same nat tables (as iptables-save prints them), and
/// each path removes what the other made.
#[cfg(test)]
mod netlink_equivalence {
    use super::super::{Mapping, Proto};
    use super::*;
    use crate::testns::Ns;

    fn owner(cid: &str) -> Owner {
        Owner {
            network: "net1".into(),
            container_id: cid.into(),
        }
    }

    fn fam(ip: &str, prefix: u8) -> FamilySpec {
        let host = if ip.contains(':') {
            "fd00::1"
        } else {
            "192.168.1.1"
        };
        FamilySpec {
            container: Addr {
                ip: ip.parse().expect("ip"),
                prefix,
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
                    host_port: 5353,
                    container_port: 53,
                    proto: Proto::Udp,
                    host_ip: Some(host.parse().expect("ip")),
                    other_family: false,
                },
                Mapping {
                    host_port: 9090,
                    container_port: 90,
                    proto: Proto::Tcp,
                    host_ip: None,
                    other_family: false,
                },
            ],
            conditions: vec![],
        }
    }

    fn opts(masq_all: bool) -> Options {
        Options {
            snat: true,
            masq_all,
            mark_bit: 13,
            external_mark_chain: None,
        }
    }

    #[test]
    fn netlink_and_iptables_restore_leave_the_same_tables() {
        let (nl_ns, ex_ns) = (Ns::new("pm-nl"), Ns::new("pm-ex"));
        for (v6, ip, prefix) in [(false, "10.0.0.2", 24), (true, "fd00::2", 64)] {
            for masq_all in [false, true] {
                let o = opts(masq_all);
                let f = fam(ip, prefix);
                let (first, second) = (
                    owner(&format!("a{masq_all}")),
                    owner(&format!("b{masq_all}")),
                );
                // The first ADD of a node builds the skeleton through iptables.
                let took = nl_ns.enter(|| {
                    exec_apply_family(&first, &o, &f, v6, later()).expect("exec add");
                    netlink_add(&second, &o, &f, v6).expect("netlink add")
                });
                assert!(took, "the netlink path took the ADD (v6 {v6})");
                ex_ns.enter(|| {
                    exec_apply_family(&first, &o, &f, v6, later()).expect("exec add");
                    exec_apply_family(&second, &o, &f, v6, later()).expect("exec add");
                });
                assert_eq!(
                    nl_ns.nat_rules(v6),
                    ex_ns.nat_rules(v6),
                    "v6 {v6} masqAll {masq_all}"
                );
                // A re-ADD of an existing attachment is not the netlink path's.
                let again = nl_ns.enter(|| netlink_add(&second, &o, &f, v6).expect("re-add"));
                assert!(!again);
                // Cross removal: netlink removes what iptables made, and back.
                nl_ns.enter(|| {
                    assert!(netlink_remove(&dnat_chain(&first), v6).expect("nl del"));
                    exec_remove_family(&dnat_chain(&second), v6).expect("exec del");
                    // a second DEL finds nothing and commits nothing
                    assert!(netlink_remove(&dnat_chain(&second), v6).expect("nl del"));
                });
                let left = nl_ns.nat_rules(v6);
                assert!(!left.iter().any(|l| l.contains("CNI-DN-")), "{left:#?}");
                ex_ns.enter(|| {
                    exec_remove_family(&dnat_chain(&first), v6).expect("exec del");
                    exec_remove_family(&dnat_chain(&second), v6).expect("exec del");
                });
                assert_eq!(left, ex_ns.nat_rules(v6));
            }
        }
    }

    fn later() -> std::time::Instant {
        std::time::Instant::now() + std::time::Duration::from_secs(60)
    }

    fn many(n: u16) -> FamilySpec {
        let mut f = fam("10.0.0.2", 24);
        f.mappings = (0..n)
            .map(|i| Mapping {
                host_port: 10_000 + i,
                container_port: 80,
                proto: Proto::Tcp,
                host_ip: None,
                other_family: false,
            })
            .collect();
        f
    }

    /// A batch longer than one piece lands whole, in pieces, on a fresh
    /// table and over an existing attachment (a re-ADD replaces, never
    /// duplicates); one whose deadline has passed starts no piece.
    #[test]
    fn long_batches_land_whole_in_pieces_and_stop_at_the_deadline() {
        let ns = Ns::new("pm-chunk");
        let (o, f) = (opts(false), many(3000));
        let count = |v: &[String]| v.iter().filter(|l| l.contains("--to-destination")).count();
        let jumps = |v: &[String]| v.iter().filter(|l| l.contains("-j CNI-DN-")).count();
        ns.enter(|| exec_apply_family(&owner("big"), &o, &f, false, later()).expect("add"));
        let first = ns.nat_rules(false);
        assert_eq!(count(&first), 3000);
        ns.enter(|| exec_apply_family(&owner("big"), &o, &f, false, later()).expect("re-add"));
        let again = ns.nat_rules(false);
        assert_eq!(count(&again), 3000);
        assert_eq!(jumps(&again), jumps(&first));
        // the same for a batch of one piece
        let small = many(3);
        for _ in 0..2 {
            ns.enter(|| {
                exec_apply_family(&owner("small"), &o, &small, false, later()).expect("add")
            });
        }
        let chain = dnat_chain(&owner("small"));
        let to_small = |v: &[String]| {
            v.iter()
                .filter(|l| l.ends_with(&format!("-j {chain}")))
                .count()
        };
        assert_eq!(to_small(&ns.nat_rules(false)), 1);
        ns.enter(|| exec_remove_family(&chain, false).expect("del"));
        let past = std::time::Instant::now();
        let r = ns.enter(|| exec_apply_family(&owner("late"), &o, &f, false, past));
        assert!(matches!(r, Err(KernelError::Timeout(_))), "{r:?}");
        assert_eq!(count(&ns.nat_rules(false)), 3000);
        ns.enter(|| exec_remove_family(&dnat_chain(&owner("big")), false).expect("del"));
        assert_eq!(count(&ns.nat_rules(false)), 0);
    }

    #[test]
    fn shapes_outside_the_vocabulary_take_the_exec_path() {
        let ready = |rules: Vec<xt::Rule>| rules.iter().all(xt::Rule::netlink_ready);
        let mut f = fam("10.0.0.2", 24);
        assert!(ready(chain_rules(&opts(false), &f)));
        assert!(ready(entry_rules(&owner("x"), &f, "C")));
        f.conditions = vec!["-s".into(), "10.9.0.0/16".into()];
        assert!(!ready(entry_rules(&owner("x"), &f, "C")));
        f.conditions.clear();
        f.mappings[0].proto = Proto::Sctp;
        assert!(!ready(chain_rules(&opts(false), &f)));
    }
}
