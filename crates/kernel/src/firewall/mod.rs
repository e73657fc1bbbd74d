//! Packet filtering and NAT (iptables / nftables) for the portmap capability.
//! Real implementation: `System`; recording fake: `Fake`. The renderers
//! (`iptables`, `nft`) are pure functions of a typed spec plus the names
//! derived from the attachment, so everything a module can reach is decided
//! here, not by the module. Every write is one batch (one transaction) and
//! every exec is bounded in time.

pub mod iptables;
pub mod nft;

use std::net::IpAddr;
#[cfg(any(test, feature = "fake"))]
use std::sync::Mutex;

use super::{Addr, KResult, KernelError};

/// Which firewall the rules live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One hostPort mapping. `host_ip` is a specified address (unspecified ones
/// are normalised to None by the capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
    /// The mapping named a host address of the other family: it still counts
    /// in the iptables entry rule's port list (as in the reference) but gets
    /// no DNAT rule for this address.
    pub other_family: bool,
}

/// The mappings of one container address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilySpec {
    pub container: Addr,
    pub mappings: Vec<Mapping>,
    /// Validated match tokens for this attachment's entry rule.
    pub conditions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub snat: bool,
    pub masq_all: bool,
    pub mark_bit: u8,
    pub external_mark_chain: Option<String>,
}

/// What one attachment maps, backend-independent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortmapSpec {
    pub backend: Backend,
    pub options: Options,
    pub families: Vec<FamilySpec>,
}

/// The attachment that owns the rules; every name derives from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub network: String,
    pub container_id: String,
}

/// The most rule lines one firewall transaction carries: a long batch (a
/// raised `maxObjects` allows tens of thousands of mappings, which took
/// 17 s in one piece) goes in pieces, and the deadline is checked before
/// each one. 1024 lines take ~0.15 s here with either backend.
pub const CHUNK_LINES: usize = 1024;

/// Splits a batch into transactions of at most `CHUNK_LINES` body lines.
/// `head` lines (an iptables-restore table and chain declarations, which
/// must come once: a repeated declaration flushes the chain) open the first
/// piece only; every piece is wrapped by `open` and `close` (`*nat` and
/// `COMMIT`, or nothing for nft, whose every line stands alone). Order is
/// kept, so each piece finds what earlier ones created.
pub fn chunks(head: &[&str], body: &[&str], open: &str, close: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pieces = body.chunks(CHUNK_LINES).peekable();
    let mut first = true;
    while first || pieces.peek().is_some() {
        let mut b = String::from(open);
        if first {
            for h in head {
                b.push_str(h);
                b.push('\n');
            }
        }
        for l in pieces.next().unwrap_or_default() {
            b.push_str(l);
            b.push('\n');
        }
        b.push_str(close);
        out.push(b);
        first = false;
    }
    out
}

/// Runs the pieces of a batch in order, each only while the call's
/// deadline has not passed: past it, what was applied stays for the undo
/// (the caller journals its removal first) and the call ends in a timeout.
pub fn apply_pieces(
    pieces: &[String],
    until: std::time::Instant,
    mut apply: impl FnMut(&str) -> KResult<()>,
) -> KResult<()> {
    for (i, p) in pieces.iter().enumerate() {
        if std::time::Instant::now() >= until {
            return Err(KernelError::Timeout(format!(
                "the call's deadline passed after {i} of {} firewall transactions",
                pieces.len()
            )));
        }
        apply(p)?;
    }
    Ok(())
}

/// Firewall operations, each scoped to one attachment.
pub trait Firewall: Send + Sync {
    /// Installs the attachment's rules (replacing its previous ones), in
    /// transactions of at most `CHUNK_LINES`, none started after `until`.
    fn portmap_apply(
        &self,
        owner: &Owner,
        spec: &PortmapSpec,
        until: std::time::Instant,
    ) -> KResult<()>;
    /// Removes every rule of the attachment in `backend`, both families.
    fn portmap_remove(&self, owner: &Owner, backend: Backend) -> KResult<()>;
    /// `Err(NotInPlace(what is missing))` unless every rule of `spec` is present.
    fn portmap_check(&self, owner: &Owner, spec: &PortmapSpec) -> KResult<()>;
    /// Removes the rules of `network`'s attachments not in `valid`.
    fn portmap_gc(&self, network: &str, valid: &[String], backend: Backend) -> KResult<()>;
    /// Deletes conntrack entries of UDP flows to `port`.
    fn flush_udp_conntrack(&self, port: u16, ipv6: bool) -> KResult<()>;
    /// Sets route_localnet=1 on the interface routing to `ip`; returns its name.
    fn enable_route_localnet(&self, ip: IpAddr) -> KResult<String>;
}

/// The real firewall of the calling process's network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Firewall for System {
    fn portmap_apply(
        &self,
        owner: &Owner,
        spec: &PortmapSpec,
        until: std::time::Instant,
    ) -> KResult<()> {
        match spec.backend {
            Backend::Iptables => iptables::apply(owner, spec, until),
            Backend::Nftables => nft::apply(owner, spec, until),
        }
    }

    fn portmap_remove(&self, owner: &Owner, backend: Backend) -> KResult<()> {
        match backend {
            Backend::Iptables => iptables::remove(owner),
            Backend::Nftables => nft::remove(owner),
        }
    }

    fn portmap_check(&self, owner: &Owner, spec: &PortmapSpec) -> KResult<()> {
        match spec.backend {
            Backend::Iptables => iptables::check(owner, spec),
            Backend::Nftables => nft::check(owner, spec),
        }
    }

    fn portmap_gc(&self, network: &str, valid: &[String], backend: Backend) -> KResult<()> {
        match backend {
            Backend::Iptables => iptables::gc(network, valid),
            Backend::Nftables => nft::gc(network, valid),
        }
    }

    fn flush_udp_conntrack(&self, port: u16, ipv6: bool) -> KResult<()> {
        let port = port.to_string();
        let family = if ipv6 { "ipv6" } else { "ipv4" };
        // conntrack exits 1 when nothing matched; only a failure to run counts.
        match crate::exec::run(
            "conntrack",
            &["-D", "-p", "udp", "--orig-port-dst", &port, "-f", family],
            "",
        ) {
            Ok(_) => Ok(()),
            Err(e) if crate::exec::tool_failed(&e, crate::exec::ToolFailure::Missing) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn enable_route_localnet(&self, ip: IpAddr) -> KResult<String> {
        let dev = crate::netlink::route_dev(ip)?;
        // Never on lo (local address) or a name that could walk the path.
        if dev == "lo" || dev.contains('/') || dev.starts_with('.') {
            return Err(KernelError::Failed(format!(
                "{ip} is routed through {dev:?}, not a container link"
            )));
        }
        let path = format!("/proc/sys/net/ipv4/conf/{dev}/route_localnet");
        std::fs::write(&path, "1")
            .map_err(|e| KernelError::Failed(format!("writing {path}: {e}")))?;
        Ok(dev)
    }
}

/// A recording fake for unprivileged tests: every call and the batches the
/// real renderers would produce.
#[derive(Debug, Default)]
#[cfg(any(test, feature = "fake"))]
pub struct Fake {
    calls: Mutex<Vec<String>>,
}

#[cfg(any(test, feature = "fake"))]
impl Fake {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, s: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(s);
        }
    }
}

#[cfg(any(test, feature = "fake"))]
impl Firewall for Fake {
    fn portmap_apply(
        &self,
        owner: &Owner,
        spec: &PortmapSpec,
        _until: std::time::Instant,
    ) -> KResult<()> {
        let batch = match spec.backend {
            Backend::Iptables => spec
                .families
                .iter()
                .map(|f| {
                    iptables::render_add(owner, &spec.options, f, &iptables::NatState::default())
                })
                .collect::<Vec<_>>()
                .join(""),
            Backend::Nftables => nft::render_add(owner, spec),
        };
        self.record(format!(
            "apply {}/{}\n{batch}",
            owner.network, owner.container_id
        ));
        Ok(())
    }

    fn portmap_remove(&self, owner: &Owner, backend: Backend) -> KResult<()> {
        self.record(format!(
            "remove {}/{} {backend:?}",
            owner.network, owner.container_id
        ));
        Ok(())
    }

    fn portmap_check(&self, owner: &Owner, _spec: &PortmapSpec) -> KResult<()> {
        self.record(format!("check {}/{}", owner.network, owner.container_id));
        Ok(())
    }

    fn portmap_gc(&self, network: &str, valid: &[String], backend: Backend) -> KResult<()> {
        self.record(format!("gc {network} {backend:?} {}", valid.join(",")));
        Ok(())
    }

    fn flush_udp_conntrack(&self, port: u16, ipv6: bool) -> KResult<()> {
        self.record(format!("conntrack udp {port} v6={ipv6}"));
        Ok(())
    }

    fn enable_route_localnet(&self, ip: IpAddr) -> KResult<String> {
        self.record(format!("route_localnet {ip}"));
        Ok("fake0".into())
    }
}

/// The reference's per-attachment chain: `CNI-DN-` + sha512(network +
/// container id) in hex, cut to 28 characters (21 hex digits).
pub fn dnat_chain(owner: &Owner) -> String {
    hashed_name("CNI-DN-", owner)
}

fn hashed_name(prefix: &str, owner: &Owner) -> String {
    use sha2::{Digest, Sha512};
    let digest = Sha512::digest(format!("{}{}", owner.network, owner.container_id).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("CNI-{prefix}", prefix = prefix.trim_start_matches("CNI-"));
    name.push_str(&hex);
    name.truncate(28);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_batches_go_in_pieces_with_the_head_once() {
        let body: Vec<String> = (0..2500).map(|i| format!("-A C{i}")).collect();
        let body: Vec<&str> = body.iter().map(String::as_str).collect();
        let pieces = chunks(&[":CHAIN - [0:0]"], &body, "*nat\n", "COMMIT\n");
        assert_eq!(pieces.len(), 3);
        for (i, p) in pieces.iter().enumerate() {
            assert!(p.starts_with("*nat\n") && p.ends_with("COMMIT\n"));
            assert_eq!(p.contains(":CHAIN"), i == 0, "{i}");
        }
        let all: Vec<&str> = pieces
            .iter()
            .flat_map(|p| p.lines())
            .filter(|l| l.starts_with("-A"))
            .collect();
        assert_eq!(all, body);
        // an empty body is still one transaction (the head alone)
        assert_eq!(chunks(&["add table x"], &[], "", "").len(), 1);
    }

    #[test]
    fn no_piece_starts_after_the_deadline() {
        let pieces = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let mut ran = Vec::new();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        let r = apply_pieces(&pieces, until, |p| {
            ran.push(p.to_string());
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(())
        });
        assert!(
            matches!(r, Err(KernelError::Timeout(ref m)) if m.contains("2 of 3")),
            "{r:?}"
        );
        assert_eq!(ran, ["a", "b"]);
    }

    #[test]
    fn chain_name_matches_the_reference_length_and_prefix() {
        let o = Owner {
            network: "net".into(),
            container_id: "cid".into(),
        };
        let n = dnat_chain(&o);
        assert_eq!(n.len(), 28);
        assert!(n.starts_with("CNI-DN-"));
        // sha512("netcid") starts with these hex digits.
        use sha2::{Digest, Sha512};
        let hex: String = Sha512::digest(b"netcid")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&n[7..], &hex[..21]);
    }
}
