//! iptables rules as iptables-nft (1.8) writes them into nf_tables: the
//! expressions, their order and the xtables match/target payloads, for the
//! rule shapes portmap and masquerade use. Pure: a typed rule in, the
//! expression list out. `tests/` proves each shape against what the real
//! `iptables-restore` writes, so the nat tables stay shared with iptables and
//! the reference plugins: they list, check and delete these rules as theirs.
//!
//! Shapes outside this vocabulary (sctp, user conditions, …) are not
//! expressible here; their callers go through iptables-restore.

use std::net::IpAddr;

use super::nfnl::{
    Expr, NewRule, Nfnl, Op, Verdict, BASE_NETWORK, BASE_TRANSPORT, META_L4PROTO, META_MARK,
    NFPROTO_IPV4, NFPROTO_IPV6,
};
use super::{Addr, KResult};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

/// A match, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `-m comment --comment` (at most 255 bytes)
    Comment(String),
    /// `-m multiport --destination-ports` (at most 15 ports)
    MultiportDst(Vec<u16>),
    /// `-m addrtype --dst-type LOCAL`
    DstTypeLocal,
    /// `-m mark --mark value/mask`
    Mark { value: u32, mask: u32 },
    /// `--dport` of the implicit tcp/udp match
    Dport(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Jump(String),
    Accept,
    Masquerade,
    /// `-j DNAT --to-destination ip:port`
    Dnat(IpAddr, u16),
    /// `-j MARK --set-xmark value/mask`
    SetXmark {
        value: u32,
        mask: u32,
    },
}

/// One iptables rule: `[-p proto] [[!] -s addr] [[!] -d addr] matches -j target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub v6: bool,
    pub proto: Option<u8>,
    /// address (host bits are cleared when encoding) and whether inverted
    pub src: Option<(Addr, bool)>,
    pub dst: Option<(Addr, bool)>,
    pub matches: Vec<Match>,
    /// Matches as free iptables arguments, after `matches` (portmap's user
    /// `conditionsV4/V6`): text only, so a rule with any takes the exec
    /// path (`netlink_ready`).
    pub extra: Vec<String>,
    pub target: Target,
}

impl Rule {
    pub fn new(v6: bool, target: Target) -> Rule {
        Rule {
            v6,
            proto: None,
            src: None,
            dst: None,
            matches: Vec::new(),
            extra: Vec::new(),
            target,
        }
    }

    /// Whether the netlink path can write this rule: no free-form matches,
    /// and a protocol whose port match it encodes (not sctp).
    pub fn netlink_ready(&self) -> bool {
        self.extra.is_empty() && matches!(self.proto, None | Some(IPPROTO_TCP | IPPROTO_UDP))
    }

    /// The rule as iptables arguments after `-A <chain>`, in the order
    /// iptables-save prints them: what the exec path writes (and checks
    /// with `-C`), from the same value the netlink path encodes.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        for (flag, addr) in [("-s", self.src), ("-d", self.dst)] {
            if let Some((addr, inverted)) = addr {
                if inverted {
                    a.push("!".into());
                }
                a.push(flag.into());
                // As iptables-save prints it (and the kernel holds it).
                let net = addr.network();
                a.push(format!("{}/{}", net.ip, net.prefix));
            }
        }
        let proto = self.proto.map(proto_name);
        if let Some(p) = proto {
            a.extend(["-p".into(), p.to_string()]);
        }
        for m in &self.matches {
            let words: Vec<String> = match m {
                Match::Comment(c) => {
                    vec!["-m".into(), "comment".into(), "--comment".into(), c.clone()]
                }
                Match::MultiportDst(ports) => vec![
                    "-m".into(),
                    "multiport".into(),
                    "--dports".into(),
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ],
                Match::DstTypeLocal => {
                    vec![
                        "-m".into(),
                        "addrtype".into(),
                        "--dst-type".into(),
                        "LOCAL".into(),
                    ]
                }
                Match::Mark { value, mask } => {
                    vec![
                        "-m".into(),
                        "mark".into(),
                        "--mark".into(),
                        format!("{value:#x}/{mask:#x}"),
                    ]
                }
                Match::Dport(p) => vec![
                    "-m".into(),
                    proto.unwrap_or("tcp").into(),
                    "--dport".into(),
                    p.to_string(),
                ],
            };
            a.extend(words);
        }
        a.extend(self.extra.iter().cloned());
        a.push("-j".into());
        match &self.target {
            Target::Jump(c) => a.push(c.clone()),
            Target::Accept => a.push("ACCEPT".into()),
            Target::Masquerade => a.push("MASQUERADE".into()),
            Target::Dnat(ip, port) => a.extend([
                "DNAT".into(),
                "--to-destination".into(),
                match ip {
                    IpAddr::V4(v4) => format!("{v4}:{port}"),
                    IpAddr::V6(v6) => format!("[{v6}]:{port}"),
                },
            ]),
            Target::SetXmark { value, mask } => a.extend([
                "MARK".into(),
                "--set-xmark".into(),
                format!("{value:#x}/{mask:#x}"),
            ]),
        }
        a
    }

    pub fn family(&self) -> u8 {
        if self.v6 {
            NFPROTO_IPV6
        } else {
            NFPROTO_IPV4
        }
    }

    /// The expressions iptables-nft writes for this rule.
    pub fn exprs(&self) -> Vec<Expr> {
        let mut out = Vec::new();
        if let Some(p) = self.proto {
            out.push(Expr::Meta { key: META_L4PROTO });
            out.push(Expr::Cmp {
                neq: false,
                data: vec![p],
            });
        }
        let (src_off, dst_off) = if self.v6 { (8, 24) } else { (12, 16) };
        for (a, off) in [(self.src, src_off), (self.dst, dst_off)] {
            if let Some((a, inv)) = a {
                address(&mut out, a, inv, off);
            }
        }
        for m in &self.matches {
            match m {
                Match::Comment(c) => out.push(Expr::Match {
                    name: "comment".into(),
                    rev: 0,
                    info: comment_info(c),
                }),
                Match::MultiportDst(ports) => out.push(Expr::Match {
                    name: "multiport".into(),
                    rev: 1,
                    info: multiport_info(ports),
                }),
                Match::DstTypeLocal => out.push(Expr::Match {
                    name: "addrtype".into(),
                    rev: 1,
                    // xt_addrtype_info_v1 {source, dest: XT_ADDRTYPE_LOCAL, flags}
                    info: [0u16.to_ne_bytes(), 4u16.to_ne_bytes()]
                        .concat()
                        .into_iter()
                        .chain(0u32.to_ne_bytes())
                        .collect(),
                }),
                Match::Mark { value, mask } => {
                    out.push(Expr::Meta { key: META_MARK });
                    out.push(Expr::Bitwise {
                        mask: mask.to_ne_bytes().to_vec(),
                        xor: vec![0; 4],
                    });
                    out.push(Expr::Cmp {
                        neq: false,
                        data: value.to_ne_bytes().to_vec(),
                    });
                }
                Match::Dport(p) => {
                    out.push(Expr::Payload {
                        base: BASE_TRANSPORT,
                        offset: 2,
                        len: 2,
                    });
                    out.push(Expr::Cmp {
                        neq: false,
                        data: p.to_be_bytes().to_vec(),
                    });
                }
            }
        }
        out.push(Expr::Counter);
        out.push(match &self.target {
            Target::Jump(c) => Expr::Immediate(Verdict::Jump(c.clone())),
            Target::Accept => Expr::Immediate(Verdict::Accept),
            Target::Masquerade => Expr::Target {
                name: "MASQUERADE".into(),
                rev: 0,
                info: masquerade_info(self.v6),
            },
            Target::Dnat(ip, port) => Expr::Target {
                name: "DNAT".into(),
                rev: 2,
                info: dnat_info(*ip, *port),
            },
            Target::SetXmark { value, mask } => Expr::Target {
                name: "MARK".into(),
                rev: 2,
                // xt_mark_tginfo2 {mark, mask}
                info: [value.to_ne_bytes(), mask.to_ne_bytes()].concat(),
            },
        });
        out
    }

    /// The rule as a netlink operation on `chain`.
    pub fn to_new(&self, chain: &str, append: bool) -> NewRule {
        NewRule {
            chain: chain.to_string(),
            exprs: self.exprs(),
            compat_proto: self.proto,
            append,
        }
    }
}

/// iptables-nft's address match: the payload of the prefix's whole bytes
/// when the prefix is byte-aligned, else the whole address under a mask.
/// iptables' name of an IP protocol number.
fn proto_name(p: u8) -> &'static str {
    match p {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_SCTP => "sctp",
        _ => "all",
    }
}

fn address(out: &mut Vec<Expr>, a: Addr, inv: bool, offset: u32) {
    let (bytes, full): (Vec<u8>, u8) = match a.network().ip {
        IpAddr::V4(v) => (v.octets().to_vec(), 32),
        IpAddr::V6(v) => (v.octets().to_vec(), 128),
    };
    let prefix = a.prefix.min(full);
    if prefix == 0 && !inv {
        return; // iptables drops a match-all address
    }
    let aligned = prefix % 8 == 0;
    let len = if aligned {
        usize::from(prefix / 8)
    } else {
        bytes.len()
    };
    out.push(Expr::Payload {
        base: BASE_NETWORK,
        offset,
        len: len as u32,
    });
    if !aligned {
        let mask: Vec<u8> = (0..bytes.len())
            .map(|i| {
                let bits = (i32::from(prefix) - 8 * i as i32).clamp(0, 8);
                (0xffu16 << (8 - bits)) as u8
            })
            .collect();
        out.push(Expr::Bitwise {
            mask,
            xor: vec![0; bytes.len()],
        });
    }
    out.push(Expr::Cmp {
        neq: inv,
        data: bytes[..len].to_vec(),
    });
}

/// xt_comment_info: the text in a NUL-padded 256-byte buffer.
fn comment_info(c: &str) -> Vec<u8> {
    let mut b = c.as_bytes()[..c.len().min(255)].to_vec();
    b.resize(256, 0);
    b
}

/// xt_multiport_v1: flags (1 = destination), count, ports[15] (host
/// order), pflags[15], invert; 48 bytes.
fn multiport_info(ports: &[u16]) -> Vec<u8> {
    let ports = &ports[..ports.len().min(15)];
    let mut b = vec![1u8, ports.len() as u8];
    for i in 0..15 {
        b.extend(ports.get(i).copied().unwrap_or(0).to_ne_bytes());
    }
    b.resize(48, 0);
    b
}

/// MASQUERADE without options: IPv4 takes nf_nat_ipv4_multi_range_compat
/// (rangesize 1, one empty range; 20 bytes, 24 aligned), IPv6 an empty
/// nf_nat_range (40 bytes).
fn masquerade_info(v6: bool) -> Vec<u8> {
    if v6 {
        vec![0; 40]
    } else {
        let mut b = 1u32.to_ne_bytes().to_vec();
        b.resize(24, 0);
        b
    }
}

/// DNAT revision 2: nf_nat_range2 {flags MAP_IPS|PROTO_SPECIFIED, min and
/// max address, min and max port (network order), base port}; 44 bytes,
/// 48 aligned.
fn dnat_info(ip: IpAddr, port: u16) -> Vec<u8> {
    let mut addr = [0u8; 16];
    match ip {
        IpAddr::V4(v) => addr[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => addr.copy_from_slice(&v.octets()),
    }
    let mut b = 3u32.to_ne_bytes().to_vec();
    b.extend(addr);
    b.extend(addr);
    b.extend(port.to_be_bytes());
    b.extend(port.to_be_bytes());
    b.resize(48, 0);
    b
}

/// Whether nat chain `chain` holds a rule with exactly `rule`'s expressions.
/// The dump stops at the first match, on a socket of its own (a dump cut
/// short leaves its socket unusable).
pub fn nat_has(rule: &Rule, chain: &str) -> KResult<bool> {
    let want = rule.exprs();
    let mut nl = Nfnl::open()?;
    let seen = nl.rules(rule.family(), "nat", chain, |r| r.exprs == want)?;
    Ok(seen.last().is_some_and(|r| r.exprs == want))
}

/// The operations that unhook every jump from nat chain `from` to `chain`
/// and delete `chain` (flushed first, as `iptables -F; -X`). Empty when
/// there is neither a jump nor the chain: nothing to commit, and a
/// deleting commit costs an RCU grace period.
pub fn nat_remove_ops(nl: &mut Nfnl, family: u8, from: &str, chain: &str) -> KResult<Vec<Op>> {
    let mut ops: Vec<Op> = nl
        .rules(family, "nat", from, |_| false)?
        .into_iter()
        .filter(|r| r.jump_target() == Some(chain))
        .map(|r| Op::DelRule {
            chain: from.to_string(),
            handle: r.handle,
        })
        .collect();
    if nl.chain_exists(family, "nat", chain)? == Some(true) {
        ops.push(Op::FlushChain(chain.to_string()));
        ops.push(Op::DelChain(chain.to_string()));
    }
    Ok(ops)
}

/// Whether a comment fits xt_comment (iptables refuses longer ones; the
/// exec path then reports that error).
pub fn comment_fits(c: &str) -> bool {
    c.len() <= 255
}

/// Whether `iptables` (as the reference plugins would exec it) is the
/// nf_tables variant: only then do its rules live where netlink writes. A
/// legacy iptables keeps the exec path.
pub fn iptables_is_nft(v6: bool) -> bool {
    static CACHE: [std::sync::OnceLock<bool>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    *CACHE[usize::from(v6)].get_or_init(|| resolve_is_nft(v6))
}

fn resolve_is_nft(v6: bool) -> bool {
    let prog = super::exec::locate(if v6 { "ip6tables" } else { "iptables" });
    std::fs::canonicalize(prog)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n == "xtables-nft-multi")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Addr {
        crate::cidr(s)
    }

    #[test]
    fn byte_aligned_prefix_loads_only_its_bytes() {
        let mut r = Rule::new(false, Target::Accept);
        r.src = Some((a("10.0.0.2/24"), false));
        assert_eq!(
            &r.exprs()[..2],
            &[
                Expr::Payload {
                    base: BASE_NETWORK,
                    offset: 12,
                    len: 3
                },
                Expr::Cmp {
                    neq: false,
                    data: vec![10, 0, 0]
                }
            ]
        );
    }

    #[test]
    fn unaligned_prefix_is_masked_and_inversion_is_neq() {
        let mut r = Rule::new(false, Target::Masquerade);
        r.dst = Some((a("224.0.0.0/4"), true));
        let e = r.exprs();
        assert_eq!(
            e[1],
            Expr::Bitwise {
                mask: vec![0xf0, 0, 0, 0],
                xor: vec![0; 4]
            }
        );
        assert_eq!(
            e[2],
            Expr::Cmp {
                neq: true,
                data: vec![224, 0, 0, 0]
            }
        );
        let mut r6 = Rule::new(true, Target::Accept);
        r6.dst = Some((a("fd00::1/60"), false));
        let e = r6.exprs();
        assert_eq!(
            e[0],
            Expr::Payload {
                base: BASE_NETWORK,
                offset: 24,
                len: 16
            }
        );
        let Expr::Bitwise { mask, .. } = &e[1] else {
            panic!("{e:?}")
        };
        assert_eq!(
            &mask[..9],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0]
        );
    }

    #[test]
    fn match_all_address_is_dropped() {
        let mut r = Rule::new(false, Target::Accept);
        r.src = Some((a("0.0.0.0/0"), false));
        assert_eq!(r.exprs().len(), 2);
    }

    #[test]
    fn payload_sizes_are_the_kernel_structs_aligned() {
        assert_eq!(multiport_info(&[80, 443]).len(), 48);
        assert_eq!(multiport_info(&[80, 443])[1], 2);
        assert_eq!(comment_info("x").len(), 256);
        assert_eq!(masquerade_info(false).len(), 24);
        assert_eq!(masquerade_info(true).len(), 40);
        let d = dnat_info("10.0.0.2".parse().expect("ip"), 80);
        assert_eq!(d.len(), 48);
        assert_eq!(&d[4..8], &[10, 0, 0, 2]);
        assert_eq!(&d[36..40], &[0, 80, 0, 80]);
    }
}

/// The vocabulary against the real iptables-nft: what `iptables-restore`
/// writes decodes to exactly our expressions, and what we write over netlink
/// `iptables-save` prints as the same rule and `iptables -D` deletes.
#[cfg(test)]
mod against_iptables {
    use super::*;
    use crate::testns::Ns;

    fn a(s: &str) -> Addr {
        crate::cidr(s)
    }

    fn jump() -> Target {
        Target::Jump("T".into())
    }

    /// (iptables-restore rule text, our rule); each goes in its own chain.
    fn shapes() -> Vec<(&'static str, Rule)> {
        let c = "name: \"n\" id: \"c\"";
        let mut out = Vec::new();
        let mut r = Rule::new(false, jump());
        r.matches = vec![Match::DstTypeLocal];
        out.push(("-m addrtype --dst-type LOCAL -j T", r));
        let mut r = Rule::new(
            false,
            Target::SetXmark {
                value: 0x2000,
                mask: 0x2000,
            },
        );
        r.matches = vec![Match::Comment("CNI portfwd masquerade mark".into())];
        out.push((
            "-m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000",
            r,
        ));
        let mut r = Rule::new(false, Target::Masquerade);
        r.matches = vec![Match::Mark {
            value: 0x2000,
            mask: 0x2000,
        }];
        out.push(("-m mark --mark 0x2000/0x2000 -j MASQUERADE", r.clone()));
        r.v6 = true;
        out.push(("-m mark --mark 0x2000/0x2000 -j MASQUERADE", r));
        let mut r = Rule::new(false, jump());
        r.proto = Some(IPPROTO_TCP);
        r.matches = vec![Match::Dport(8080)];
        r.dst = Some((a("192.168.1.1/32"), false));
        r.src = Some((a("10.0.0.2/24"), false));
        out.push(("-p tcp --dport 8080 -d 192.168.1.1 -s 10.0.0.2/24 -j T", r));
        let mut r = Rule::new(false, jump());
        r.proto = Some(IPPROTO_TCP);
        r.matches = vec![Match::Dport(8080)];
        r.src = Some((a("0.0.0.0/0"), false));
        out.push(("-p tcp --dport 8080 -s 0.0.0.0/0 -j T", r));
        let mut r = Rule::new(false, Target::Dnat("10.0.0.2".parse().expect("ip"), 53));
        r.proto = Some(IPPROTO_UDP);
        r.matches = vec![Match::Dport(53)];
        out.push(("-p udp --dport 53 -j DNAT --to-destination 10.0.0.2:53", r));
        let mut r = Rule::new(false, jump());
        r.proto = Some(IPPROTO_TCP);
        r.matches = vec![
            Match::Comment("dnat name: \"net1\" id: \"cid1\"".into()),
            Match::MultiportDst(vec![8080, 9090]),
        ];
        out.push(("-m comment --comment \"dnat name: \\\"net1\\\" id: \\\"cid1\\\"\" -m multiport -p tcp --destination-ports 8080,9090 -j T", r));
        let mut r = Rule::new(false, Target::Accept);
        r.dst = Some((a("10.0.0.0/24"), false));
        r.matches = vec![Match::Comment(c.into())];
        out.push((
            "-d 10.0.0.0/24 -j ACCEPT -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\"",
            r,
        ));
        let mut r = Rule::new(false, Target::Masquerade);
        r.dst = Some((a("224.0.0.0/4"), true));
        r.matches = vec![Match::Comment(c.into())];
        out.push((
            "! -d 224.0.0.0/4 -j MASQUERADE -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\"",
            r,
        ));
        let mut r = Rule::new(false, jump());
        r.src = Some((a("10.0.0.2/32"), false));
        r.matches = vec![Match::Comment(c.into())];
        out.push((
            "-s 10.0.0.2 -j T -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\"",
            r,
        ));
        let mut r = Rule::new(true, jump());
        r.proto = Some(IPPROTO_TCP);
        r.matches = vec![Match::Dport(8080)];
        r.src = Some((a("fd00::2/64"), false));
        out.push(("-p tcp --dport 8080 -s fd00::2/64 -j T", r));
        let mut r = Rule::new(true, Target::Dnat("fd00::2".parse().expect("ip"), 80));
        r.proto = Some(IPPROTO_TCP);
        r.matches = vec![Match::Dport(8080)];
        r.dst = Some((a("fd00::1/128"), false));
        out.push((
            "-p tcp --dport 8080 -d fd00::1 -j DNAT --to-destination [fd00::2]:80",
            r,
        ));
        let mut r = Rule::new(true, Target::Masquerade);
        r.dst = Some((a("ff00::/8"), true));
        r.matches = vec![Match::Comment(c.into())];
        out.push((
            "! -d ff00::/8 -j MASQUERADE -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\"",
            r,
        ));
        let mut r = Rule::new(true, Target::Accept);
        r.dst = Some((a("fd00:0:0:10::/60"), false));
        out.push(("-d fd00:0:0:10::/60 -j ACCEPT", r));
        let mut r = Rule::new(true, jump());
        r.proto = Some(IPPROTO_UDP);
        r.matches = vec![
            Match::Comment("dnat name: \"net1\" id: \"cid1\"".into()),
            Match::MultiportDst(vec![53]),
        ];
        out.push(("-m comment --comment \"dnat name: \\\"net1\\\" id: \\\"cid1\\\"\" -m multiport -p udp --destination-ports 53 -j T", r));
        out
    }

    fn batch(rules: &[(String, &str)]) -> String {
        let mut b = String::from("*nat\n:T - [0:0]\n");
        for (chain, _) in rules {
            b.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for (chain, text) in rules {
            b.push_str(&format!("-A {chain} {text}\n"));
        }
        b + "COMMIT\n"
    }

    fn split(v6: bool) -> Vec<(String, &'static str, Rule)> {
        shapes()
            .into_iter()
            .filter(|(_, r)| r.v6 == v6)
            .enumerate()
            .map(|(i, (t, r))| (format!("R{i}"), t, r))
            .collect()
    }

    #[test]
    fn chain_lookup_tells_missing_table_from_missing_chain() {
        let ns = Ns::new("lookup");
        let before = ns.enter(|| {
            let mut nl = Nfnl::open().expect("socket");
            nl.chain_exists(NFPROTO_IPV4, "nat", "T").expect("lookup")
        });
        assert_eq!(before, None, "no nat table yet");
        ns.run(
            "iptables-restore",
            &["--noflush"],
            "*nat\n:T - [0:0]\nCOMMIT\n",
        );
        let (t, u) = ns.enter(|| {
            let mut nl = Nfnl::open().expect("socket");
            (
                nl.chain_exists(NFPROTO_IPV4, "nat", "T").expect("lookup"),
                nl.chain_exists(NFPROTO_IPV4, "nat", "U").expect("lookup"),
            )
        });
        assert_eq!((t, u), (Some(true), Some(false)));
    }

    #[test]
    fn a_commit_after_someone_elses_is_refused() {
        let ns = Ns::new("gen");
        ns.run(
            "iptables-restore",
            &["--noflush"],
            "*nat\n:T - [0:0]\nCOMMIT\n",
        );
        ns.enter(|| {
            let mut nl = Nfnl::open().expect("socket");
            let g = nl.generation().expect("generation");
            let ok = nl
                .commit_at(Some(g), NFPROTO_IPV4, "nat", &[Op::NewChain("A".into())])
                .expect("io");
            assert_eq!(ok, Ok(()), "at the current generation");
            // `g` is stale now: our own commit moved the ruleset on
            let err = nl
                .commit_at(Some(g), NFPROTO_IPV4, "nat", &[Op::NewChain("B".into())])
                .expect("io")
                .expect_err("stale");
            assert_eq!(err.errno, nix::errno::Errno::ERESTART);
            assert_eq!(
                nl.chain_exists(NFPROTO_IPV4, "nat", "B").expect("lookup"),
                Some(false)
            );
            assert!(nl.generation().expect("generation") != g);
        });
    }

    #[test]
    fn iptables_writes_our_expressions() {
        let ns = Ns::new("read");
        for v6 in [false, true] {
            let rules = split(v6);
            let restore = if v6 {
                "ip6tables-restore"
            } else {
                "iptables-restore"
            };
            let text: Vec<(String, &str)> = rules.iter().map(|(c, t, _)| (c.clone(), *t)).collect();
            ns.run(restore, &["--noflush"], &batch(&text));
            let dumped: Vec<Vec<Expr>> = ns.enter(|| {
                let mut nl = Nfnl::open().expect("socket");
                rules
                    .iter()
                    .map(|(c, _, r)| {
                        let got = nl.rules(r.family(), "nat", c, |_| false).expect("dump");
                        assert_eq!(got.len(), 1, "{c}");
                        got[0].exprs.clone()
                    })
                    .collect()
            });
            for ((c, t, r), got) in rules.iter().zip(dumped) {
                assert_eq!(got, r.exprs(), "{c}: `{t}` (v6 {v6})");
            }
        }
    }

    #[test]
    fn iptables_reads_and_deletes_what_we_write() {
        let ns = Ns::new("write");
        for v6 in [false, true] {
            let rules = split(v6);
            let fam = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
            // the nat table exists once iptables has touched it
            let restore = if v6 {
                "ip6tables-restore"
            } else {
                "iptables-restore"
            };
            ns.run(restore, &["--noflush"], "*nat\n:T - [0:0]\nCOMMIT\n");
            ns.enter(|| {
                let mut nl = Nfnl::open().expect("socket");
                let mut ops = Vec::new();
                for (c, _, r) in &rules {
                    ops.push(Op::NewChain(c.clone()));
                    ops.push(Op::NewRule(r.to_new(c, true)));
                }
                nl.commit(fam, "nat", &ops).expect("io").expect("commit");
                // a second create of the same chain fails, naming it
                let err = nl
                    .commit(fam, "nat", &[Op::NewChain(rules[0].0.clone())])
                    .expect("io")
                    .expect_err("exists");
                assert_eq!(err.errno, nix::errno::Errno::EEXIST);
                // a failure anywhere aborts the whole transaction, and names
                // the operation that failed
                let err = nl
                    .commit(
                        fam,
                        "nat",
                        &[
                            Op::NewChain("A".into()),
                            Op::NewChain(rules[0].0.clone()),
                            Op::NewChain("B".into()),
                        ],
                    )
                    .expect("io")
                    .expect_err("exists");
                assert_eq!(err.op, format!("create chain {}", rules[0].0));
                for c in ["A", "B"] {
                    assert_eq!(nl.chain_exists(fam, "nat", c).expect("lookup"), Some(false));
                }
            });
            let save = if v6 {
                "ip6tables-save"
            } else {
                "iptables-save"
            };
            let saved = ns.run(save, &["-t", "nat"], "");
            // what iptables-restore writes for the same text, saved the same way
            let ns2 = Ns::new(if v6 { "ref6" } else { "ref4" });
            let text: Vec<(String, &str)> = rules.iter().map(|(c, t, _)| (c.clone(), *t)).collect();
            ns2.run(restore, &["--noflush"], &batch(&text));
            let reference = ns2.run(save, &["-t", "nat"], "");
            let lines = |s: &str| -> Vec<String> {
                s.lines()
                    .filter(|l| l.starts_with("-A "))
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(lines(&saved), lines(&reference), "v6 {v6}");
            // iptables deletes each of our rules by its spec
            let tool = if v6 { "ip6tables" } else { "iptables" };
            let mut del = String::from("*nat\n");
            for (c, t, _) in &rules {
                del.push_str(&format!("-D {c} {t}\n"));
            }
            del.push_str("COMMIT\n");
            ns.run(restore, &["--noflush"], &del);
            let after = ns.run(tool, &["-t", "nat", "-S"], "");
            assert!(!after.contains("-A R"), "{after}");
        }
    }
}
