//! Finding a network's masquerade chains on the node (GC) and probing
//! whether a masquerade backend can be used at all (STATUS).
//!
//! The reference bridge/ptp name an attachment's iptables chain
//! `CNI-<sha512(network + container id)[..24]>` and comment each of its
//! rules and POSTROUTING jumps `name: "<net>" id: "<cid>"` (Go's `%q`). A
//! chain is taken as this network's only when a rule in it or jumping to it
//! carries that comment *and* the chain's name is the hash of the network
//! and the container id read from the comment: a chain of another network,
//! of another plugin, or whose comment was cut short is never returned.

use std::collections::BTreeSet;

use super::exec::run;
use super::masq::{chain_name, go_quote};
use super::{KResult, KernelError};

/// `CNI-` + 24 lowercase hex digits.
pub fn is_masq_chain(name: &str) -> bool {
    name.strip_prefix("CNI-").is_some_and(|h| {
        h.len() == 24
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The comment of an `iptables-save` rule line, unquoted as iptables-save
/// quotes it (`"…"` with `\"` and `\\` escaped).
pub fn comment_of(line: &str) -> Option<String> {
    let rest = &line[line.find("--comment ")? + "--comment ".len()..];
    let Some(quoted) = rest.strip_prefix('"') else {
        return rest.split_whitespace().next().map(str::to_string);
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// The container id in the reference comment of `network`'s attachment,
/// when the comment is one (Go's `%q` undone for the plain escapes).
pub fn container_of(network: &str, comment: &str) -> Option<String> {
    let quoted = comment.strip_prefix(&format!("name: {} id: ", go_quote(network)))?;
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                // \xNN and the like: such an id is not worth guessing at.
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// `(chain, container id)` of `network`'s masquerade chains in one
/// `iptables-save -t nat` text.
pub fn chains_in(save: &str, network: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for line in save.lines().filter(|l| l.starts_with("-A ")) {
        let t: Vec<&str> = line.split_whitespace().collect();
        let target = t.windows(2).find(|w| w[0] == "-j").map(|w| w[1]);
        let chain = match (t.get(1), target) {
            (Some(c), _) if is_masq_chain(c) => *c,
            (Some(&"POSTROUTING"), Some(j)) if is_masq_chain(j) => j,
            _ => continue,
        };
        let Some(cid) = comment_of(line).and_then(|c| container_of(network, &c)) else {
            continue;
        };
        if chain_name(network, &cid) == chain {
            found.insert((chain.to_string(), cid));
        }
    }
    found
}

/// A failure to run the tool at all: nothing of that backend can be there.
pub fn cannot_run(e: &KernelError) -> bool {
    matches!(e, KernelError::ToolMissing { .. })
}

/// `network`'s masquerade chains in both families' nat tables. No
/// ip6tables (or no IPv6 nat table) means none there.
pub fn iptables_chains(network: &str) -> KResult<Vec<(String, String)>> {
    let mut found = chains_in(&run("iptables-save", &["-t", "nat"], "")?, network);
    match run("ip6tables-save", &["-t", "nat"], "") {
        Ok(v6) => found.extend(chains_in(&v6, network)),
        Err(e) => {
            tracing::debug!(error = %e, "ip6tables-save unavailable; no IPv6 chains to collect")
        }
    }
    Ok(found.into_iter().collect())
}

/// Whether masquerade rules can be written in the backend: the tools the
/// host runs for it exist and answer. The error says which one failed.
pub fn backend_usable(nftables: bool) -> KResult<()> {
    if nftables {
        return run("nft", &["list", "tables"], "").map(drop);
    }
    // Every path ends in iptables-restore (the netlink fast path hands a
    // re-ADD and any refused batch to it) and reads go through iptables-save.
    run("iptables-save", &["-t", "nat"], "")?;
    run("iptables-restore", &["--version"], "").map(drop)
}

/// Upstream's rule for choosing a firewall backend when none is configured
/// (containernetworking/plugins `pkg/utils/netfilter.go`, main 2026-04:
/// `SupportsIPTables` / `SupportsNFTables`, used by portmap's
/// `ensureBackend` and by `SetupIPMasqForNetworks`): nftables is taken only
/// when iptables is unusable and nftables works. This answers the two
/// probes; the modules decide.
///
/// * iptables: the `iptables` (IPv4) binary is found (PATH, then the sbin and
///   bin dirs) and `iptables -t filter -S INPUT 1` answers (exit 0, or 1 for
///   a missing chain), as go-iptables' `ChainExists`. For iptables-nft the
///   answer is whether nf_tables answers a netlink request (what that listing
///   needs), which saves an exec on every ADD.
/// * nftables: `nft` is found and `nft --check` accepts adding a table with a
///   comment (or without, on kernels lacking object comments), as
///   knftables' `New`.
pub fn supports(nftables: bool) -> bool {
    let found = |prog: &str| super::exec::locate(prog).is_file();
    if nftables {
        if !found("nft") {
            return false;
        }
        return [
            "add table ip supports_nftables_test { comment \"test\" ; }\n",
            "add table ip supports_nftables_test\n",
        ]
        .iter()
        .any(|script| run("nft", &["--check", "-f", "-"], script).is_ok());
    }
    if !found("iptables") {
        return false;
    }
    if super::xtnft::iptables_is_nft(false) {
        return super::nfnl::Nfnl::open()
            .and_then(|mut n| n.generation())
            .is_ok();
    }
    match run("iptables", &["-w", "-t", "filter", "-S", "INPUT", "1"], "") {
        Ok(_) => true,
        // it ran and listed nothing past the first rule
        Err(KernelError::Tool {
            status: Some(1), ..
        }) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_this_networks_only() {
        let net = "mynet";
        let mine = chain_name(net, "abc");
        let other_net = chain_name("othernet", "abc");
        let quoted = chain_name(net, "we\"ird");
        let save = format!(
            r#"*nat
:POSTROUTING ACCEPT [0:0]
:{mine} - [0:0]
-A POSTROUTING -s 10.0.0.2/32 -j {mine} -m comment --comment "name: \"mynet\" id: \"abc\""
-A {mine} -d 10.0.0.0/24 -j ACCEPT -m comment --comment "name: \"mynet\" id: \"abc\""
-A POSTROUTING -s 10.0.0.3/32 -j {other_net} -m comment --comment "name: \"othernet\" id: \"abc\""
-A POSTROUTING -s 10.0.0.4/32 -j CNI-000000000000000000000000 -m comment --comment "name: \"mynet\" id: \"forged\""
-A {quoted} ! -d 224.0.0.0/4 -j MASQUERADE -m comment --comment "name: \"mynet\" id: \"we\\\"ird\""
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-DN-0123456789abcdef01234 -p tcp -j DNAT --to-destination 10.0.0.2:80
COMMIT
"#
        );
        let found: Vec<(String, String)> = chains_in(&save, net).into_iter().collect();
        let mut expect = vec![(mine, "abc".to_string()), (quoted, "we\"ird".to_string())];
        expect.sort();
        assert_eq!(found, expect);
        assert!(chains_in(&save, "othernet")
            .iter()
            .all(|(c, _)| *c == other_net));
    }

    #[test]
    fn comments_and_names() {
        assert_eq!(
            comment_of(r#"-A X -j Y -m comment --comment "a \"b\" \\c" -x"#).as_deref(),
            Some(r#"a "b" \c"#)
        );
        assert_eq!(
            comment_of("-A X -m comment --comment plain -j Y").as_deref(),
            Some("plain")
        );
        assert_eq!(comment_of("-A X -j Y"), None);
        assert_eq!(
            container_of("n", r#"name: "n" id: "c1""#).as_deref(),
            Some("c1")
        );
        // cut short (no closing quote), another network, or an unknown escape
        assert_eq!(container_of("n", r#"name: "n" id: "c1"#), None);
        assert_eq!(container_of("n", r#"name: "m" id: "c1""#), None);
        assert_eq!(container_of("n", r#"name: "n" id: "c\x01""#), None);
        assert!(is_masq_chain("CNI-e88f49d94512ff752ebe6070"));
        assert!(!is_masq_chain("CNI-DN-e88f49d94512ff752ebe6"));
        assert!(!is_masq_chain("CNI-E88F49D94512FF752EBE6070"));
    }
}
