//! `nat`: see wit/nat.wit. The module says what to map; this adapter checks
//! that every value stays inside the attachment (container addresses from
//! prevResult, names derived from network + container id, condition tokens
//! that cannot jump or issue commands) and hands a typed spec to the
//! firewall layer, which renders and applies it as one batch.

use std::net::IpAddr;

use super::bindings::cni::plugin::nat::{AttachmentNat, Backend, Host, Protocol};
use super::bindings::wit::CniError;
use super::undo::Undo;
use super::CapsView;
use super::{cap_error, kernel_error, CallContext};
use crate::kernel::firewall::{self, FamilySpec, Mapping, Options, Owner, PortmapSpec, Proto};
use crate::kernel::{Addr, KernelError};
use crate::protocol::env::is_valid_identifier;
use crate::protocol::error::code;

fn bad(msg: impl Into<String>, fix: impl Into<String>) -> CniError {
    cap_error(code::INVALID_NETWORK_CONFIG, msg, fix)
}

pub fn backend(b: Backend) -> firewall::Backend {
    match b {
        Backend::Iptables => firewall::Backend::Iptables,
        Backend::Nftables => firewall::Backend::Nftables,
    }
}

/// The attachment that owns everything this call touches. Both names end up
/// in rule comments and nft strings, so they must be plain identifiers.
pub fn owner(c: &CallContext, need_container: bool) -> Result<Owner, CniError> {
    let inv = &c.invocation;
    if !is_valid_identifier(&inv.network_name) {
        return Err(bad(
            format!("invalid network name {:?}", inv.network_name),
            "a network name may only hold letters, digits, '_', '.' and '-'",
        ));
    }
    if need_container && !is_valid_identifier(&inv.container_id) {
        return Err(cap_error(
            code::INVALID_ENVIRONMENT,
            format!("invalid container id {:?}", inv.container_id),
            "CNI_CONTAINERID must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$",
        ));
    }
    Ok(Owner {
        network: inv.network_name.clone(),
        container_id: inv.container_id.clone(),
    })
}

/// The IPs of this attachment (prevResult), the only DNAT targets allowed.
fn attachment_ips(c: &CallContext) -> Vec<IpAddr> {
    let Some(prev) = &c.invocation.prev_result else {
        return Vec::new();
    };
    prev.ips
        .iter()
        .filter_map(|ip| ip.address.split('/').next().and_then(|a| a.parse().ok()))
        .collect()
}

fn parse_cidr(s: &str) -> Result<Addr, CniError> {
    super::netns::parse_cidr(s).map_err(|_| {
        bad(
            format!("invalid container address {s:?}"),
            "pass the prevResult address in CIDR notation, e.g. 10.1.2.3/24",
        )
    })
}

/// iptables options that are commands, tables or targets: a condition must
/// only match, never act (getopt accepts unambiguous abbreviations of long
/// options, so any prefix counts).
const IPT_LONG_FORBIDDEN: [&str; 17] = [
    "append",
    "check",
    "delete",
    "insert",
    "replace",
    "list",
    "list-rules",
    "flush",
    "zero",
    "new-chain",
    "delete-chain",
    "policy",
    "rename-chain",
    "table",
    "jump",
    "goto",
    "wait",
];

fn check_iptables_token(t: &str) -> Result<(), String> {
    if let Some(long) = t.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or("");
        if !name.is_empty() && IPT_LONG_FORBIDDEN.iter().any(|f| f.starts_with(name)) {
            return Err(format!("{t:?} is a command, table or jump option"));
        }
    } else if let Some(short) = t.strip_prefix('-') {
        if short.starts_with([
            'A', 'C', 'D', 'I', 'R', 'L', 'S', 'F', 'Z', 'N', 'X', 'P', 'E', 'j', 'g', 't', 'w',
            'W',
        ]) {
            return Err(format!("{t:?} is a command, table or jump option"));
        }
    }
    Ok(())
}

/// nft keywords that end a match and act on the packet.
/// Words that make an nft expression a statement, a verdict or a set or
/// map update: a condition must only match. Checked against every word of a
/// token split at anything but letters, digits and `_` (nft's tokenizer
/// needs no spaces around braces or colons).
const NFT_FORBIDDEN: [&str; 31] = [
    "accept",
    "drop",
    "reject",
    "queue",
    "continue",
    "return",
    "jump",
    "goto",
    "dnat",
    "snat",
    "masquerade",
    "redirect",
    "set",
    "notrack",
    "dup",
    "fwd",
    "tproxy",
    "synproxy",
    "counter",
    "log",
    "add",
    "update",
    "delete",
    "reset",
    "limit",
    "quota",
    "meter",
    "flow",
    "map",
    "vmap",
    "define",
];

fn check_conditions(tokens: &[String], b: firewall::Backend) -> Result<(), CniError> {
    for t in tokens {
        let why = if t.is_empty() || t.len() > 256 || t.chars().any(|c| c.is_control()) {
            Err(format!(
                "{t:?} is empty, too long or holds control characters"
            ))
        } else if b == firewall::Backend::Iptables {
            check_iptables_token(t)
        } else if t.contains([';', '#', '"', '\\', '@', '$'])
            || t.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|w| NFT_FORBIDDEN.contains(&w.to_ascii_lowercase().as_str()))
        {
            Err(format!("{t:?} is a statement or verdict, not a match"))
        } else {
            Ok(())
        };
        why.map_err(|w| bad(format!("invalid condition: {w}"), "conditionsV4/conditionsV6 may only hold match expressions (e.g. \"!\", \"-s\", \"10.0.0.0/8\")"))?;
    }
    Ok(())
}

/// An existing chain to jump to for the masquerade mark; never one of the
/// built-in hooks nor a portmap chain, so it cannot loop or hijack.
fn check_external_chain(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 28
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && ![
            "PREROUTING",
            "INPUT",
            "OUTPUT",
            "POSTROUTING",
            "FORWARD",
            "ACCEPT",
            "DROP",
            "RETURN",
            "QUEUE",
            "DNAT",
            "SNAT",
            "MASQUERADE",
            "REDIRECT",
            "MARK",
        ]
        .contains(&name)
        && !name.starts_with("CNI-DN-")
        && !name.starts_with("CNI-SN-")
        && !name.starts_with("CNI-HOSTPORT-");
    if ok {
        Ok(())
    } else {
        Err(bad(
            format!("invalid externalSetMarkChain {name:?}"),
            "name an existing nat chain that sets the masquerade mark, such as KUBE-MARK-MASQ",
        ))
    }
}

/// Validates the module's description against this attachment.
pub fn spec_from_wit(c: &CallContext, s: &AttachmentNat) -> Result<PortmapSpec, CniError> {
    let b = backend(s.options.backend);
    let o = &s.options;
    if o.mark_masq_bit > 31 {
        return Err(bad(
            format!("markMasqBit {} is out of range", o.mark_masq_bit),
            "markMasqBit must be 0-31",
        ));
    }
    if let Some(ext) = &o.external_set_mark_chain {
        if b == firewall::Backend::Nftables {
            return Err(bad(
                "externalSetMarkChain is an iptables option",
                "drop it or use the iptables backend",
            ));
        }
        check_external_chain(ext)?;
    }
    if s.families.len() > 2 {
        return Err(bad(
            "more than two container addresses",
            "pass at most one IPv4 and one IPv6 address",
        ));
    }
    let ips = attachment_ips(c);
    let mut families = Vec::new();
    for f in &s.families {
        let container = parse_cidr(&f.container_ip)?;
        if !ips.contains(&container.ip) {
            return Err(bad(
                format!("{} is not an address of this attachment", container.ip),
                "DNAT targets must be addresses from prevResult",
            ));
        }
        if families
            .iter()
            .any(|x: &FamilySpec| x.container.ip.is_ipv4() == container.ip.is_ipv4())
        {
            return Err(bad(
                "two container addresses of the same family",
                "pass at most one IPv4 and one IPv6 address",
            ));
        }
        check_conditions(&f.conditions, b)?;
        let mut mappings = Vec::new();
        for m in &f.mappings {
            if m.host_port == 0 || m.container_port == 0 {
                return Err(bad(
                    format!("invalid port mapping {}->{}", m.host_port, m.container_port),
                    "hostPort and containerPort must be 1-65535",
                ));
            }
            let host_ip = match m.host_ip.as_deref().filter(|h| !h.is_empty()) {
                None => None,
                Some(h) => Some(h.parse::<IpAddr>().map_err(|_| {
                    bad(
                        format!("invalid hostIP {h:?}"),
                        "hostIP must be an IP address or empty",
                    )
                })?),
            };
            let other_family = host_ip.is_some_and(|h| h.is_ipv4() != container.ip.is_ipv4());
            mappings.push(Mapping {
                host_port: m.host_port,
                container_port: m.container_port,
                proto: match m.protocol {
                    Protocol::Tcp => Proto::Tcp,
                    Protocol::Udp => Proto::Udp,
                    Protocol::Sctp => Proto::Sctp,
                },
                host_ip: host_ip.filter(|h| !h.is_unspecified()),
                other_family,
            });
        }
        families.push(FamilySpec {
            container,
            mappings,
            conditions: f.conditions.clone(),
        });
    }
    Ok(PortmapSpec {
        backend: b,
        options: Options {
            snat: o.snat,
            masq_all: o.masq_all,
            mark_bit: o.mark_masq_bit,
            external_mark_chain: o.external_set_mark_chain.clone(),
        },
        families,
    })
}

impl Host for CapsView<'_> {
    fn apply(&mut self, spec: AttachmentNat) -> wasmtime::Result<Result<(), CniError>> {
        let r = (|| {
            let c = &*self.call;
            let owner = owner(c, true)?;
            let spec = spec_from_wit(c, &spec)?;
            let rules: usize = spec.families.iter().map(|f| f.mappings.len()).sum();
            c.charge(rules, "installing port mappings")?;
            // Journaled first: a batch cut by the deadline or failing half-way
            // leaves pieces that are still this attachment's to remove.
            c.journal(Undo::NatRemove {
                backend: spec.backend,
            });
            c.kernels
                .firewall
                .portmap_apply(&owner, &spec, c.deadline.at())
                .map_err(|e| kernel_error("installing port mappings", e))
        })();
        Ok(r)
    }

    fn remove(&mut self, b: Backend) -> wasmtime::Result<Result<(), CniError>> {
        let r = (|| {
            let c = &*self.call;
            let owner = owner(c, true)?;
            c.kernels
                .firewall
                .portmap_remove(&owner, backend(b))
                .map_err(|e| kernel_error("removing port mappings", e))
        })();
        Ok(r)
    }

    fn check(&mut self, spec: AttachmentNat) -> wasmtime::Result<Result<(), CniError>> {
        let r = (|| {
            let c = &*self.call;
            let owner = owner(c, true)?;
            let spec = spec_from_wit(c, &spec)?;
            c.kernels
                .firewall
                .portmap_check(&owner, &spec)
                .map_err(|e| match e {
                    KernelError::NotInPlace(m) => {
                        cap_error(code::INTERNAL, "port mappings are not in place", m)
                    }
                    e => kernel_error("checking port mappings", e),
                })
        })();
        Ok(r)
    }

    fn gc(&mut self, b: Backend, valid: Vec<String>) -> wasmtime::Result<Result<(), CniError>> {
        let r = (|| {
            let c = &*self.call;
            let owner = owner(c, false)?;
            c.kernels
                .firewall
                .portmap_gc(&owner.network, &valid, backend(b))
                .map_err(|e| kernel_error("collecting stale port mappings", e))
        })();
        Ok(r)
    }

    fn flush_udp_conntrack(
        &mut self,
        port: u16,
        ipv6: bool,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let r = (|| {
            let c = &*self.call;
            if port == 0 {
                return Err(bad("port 0", "pass a mapped hostPort"));
            }
            c.kernels
                .firewall
                .flush_udp_conntrack(port, ipv6)
                .map_err(|e| kernel_error("flushing UDP conntrack entries", e))
        })();
        Ok(r)
    }

    fn backend_supported(&mut self, b: Backend) -> wasmtime::Result<bool> {
        let c = self.call.clone();
        Ok(c.kernels
            .hostfw
            .backend_supported(matches!(b, Backend::Nftables)))
    }

    fn enable_route_localnet(
        &mut self,
        container_ip: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let r = (|| {
            let c = &*self.call;
            let ip: IpAddr = container_ip
                .split('/')
                .next()
                .unwrap_or("")
                .parse()
                .map_err(|_| {
                    bad(
                        format!("invalid address {container_ip:?}"),
                        "pass the container's IPv4 address",
                    )
                })?;
            // Only the link that leads to this attachment may accept 127/8.
            if !ip.is_ipv4() || !attachment_ips(c).contains(&ip) {
                return Err(bad(
                    format!("{ip} is not an IPv4 address of this attachment"),
                    "route_localnet is only set toward the container's own IPv4 address",
                ));
            }
            let dev = c
                .kernels
                .firewall
                .enable_route_localnet(ip)
                .map_err(|e| kernel_error("enabling route_localnet", e))?;
            tracing::info!(container_id = %c.invocation.container_id, dev, "route_localnet=1 for localhost hostPorts");
            Ok(())
        })();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nft(tokens: &[&str]) -> Result<(), CniError> {
        let t: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
        check_conditions(&t, firewall::Backend::Nftables)
    }

    #[test]
    fn nft_conditions_may_only_match() {
        assert!(nft(&["ip saddr != 10.9.0.0/16"]).is_ok());
        assert!(nft(&["ip", "saddr", "{ 10.1.0.0/16, 10.2.0.0/16 }"]).is_ok());
        assert!(nft(&["iifname", "eth0", "fib daddr type local"]).is_ok());
        for bad in [
            "ip saddr{drop}",
            "tcp dport 22 accept",
            "add @wasm_hostports { tcp . 22 : 10.0.0.9 . 22 }",
            "meta mark set 1",
            "ip saddr 10.0.0.1; flush ruleset",
            "ip saddr vmap { 10.0.0.1 : jump x }",
            "ip saddr $evil",
            "ip saddr 10.0.0.1\nflush ruleset",
            "ip daddr 10.0.0.1 LOG",
        ] {
            assert!(nft(&[bad]).is_err(), "{bad:?} was accepted");
        }
    }
}
