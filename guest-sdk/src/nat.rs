//! The `nat` capability (wit/nat.wit) as a trait, with the real
//! implementation on [`crate::__private::WasmHost`] and a fake on
//! `testing::FakeHost`.
//!
//! The module describes the attachment's mappings; the host derives every
//! chain/element name from the network name and container id, renders the
//! rules and applies one call as one batch.

use std::net::IpAddr;

use crate::types::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatBackend {
    Iptables,
    Nftables,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// None (or an unspecified address) maps every local address; a host
    /// address of the other family skips the mapping for this address.
    pub host_ip: Option<IpAddr>,
}

/// The mappings of one container address (from prevResult).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMappings {
    pub container: IpNet,
    pub mappings: Vec<PortMapping>,
    /// Match tokens for the attachment's entry rule.
    pub conditions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatOptions {
    pub backend: NatBackend,
    pub snat: bool,
    pub masq_all: bool,
    pub mark_masq_bit: u8,
    pub external_set_mark_chain: Option<String>,
}

/// Everything one attachment maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSpec {
    pub options: NatOptions,
    pub families: Vec<FamilyMappings>,
}

/// Operations of the `nat` capability, all scoped to this attachment.
pub trait NatCaps {
    /// Installs the mappings (replacing the attachment's previous ones).
    fn nat_apply(&mut self, spec: &NatSpec) -> CniResultOf<()>;
    /// Removes the attachment's rules in `backend`; nothing there is success.
    fn nat_remove(&mut self, backend: NatBackend) -> CniResultOf<()>;
    /// Fails unless every rule of `spec` is in place.
    fn nat_check(&mut self, spec: &NatSpec) -> CniResultOf<()>;
    /// Removes this network's attachments whose container id is not in `valid`.
    fn nat_gc(&mut self, backend: NatBackend, valid: &[String]) -> CniResultOf<()>;
    /// Deletes conntrack entries of UDP flows to `port`.
    fn flush_udp_conntrack(&mut self, port: u16, ipv6: bool) -> CniResultOf<()>;
    /// route_localnet=1 on the host link toward this attachment's IPv4 address.
    fn enable_route_localnet(&mut self, container_ip: IpAddr) -> CniResultOf<()>;
    /// Whether `backend` can be used on this node at all (upstream's probe,
    /// answered by the host).
    fn nat_backend_supported(&mut self, backend: NatBackend) -> bool;

    /// Upstream portmap's default when `backend` is unset (`ensureBackend`):
    /// iptables, unless it is unusable and nftables works.
    fn nat_default_backend(&mut self) -> NatBackend {
        if !self.nat_backend_supported(NatBackend::Iptables)
            && self.nat_backend_supported(NatBackend::Nftables)
        {
            NatBackend::Nftables
        } else {
            NatBackend::Iptables
        }
    }
}

mod real {
    use super::*;
    use crate::__private::bindings::cni::plugin::nat as w;
    use crate::__private::bindings::cni::plugin::types as wt;

    fn err(e: wt::CniError) -> CniError {
        CniError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }
    }

    fn backend(b: NatBackend) -> w::Backend {
        match b {
            NatBackend::Iptables => w::Backend::Iptables,
            NatBackend::Nftables => w::Backend::Nftables,
        }
    }

    fn spec(s: &NatSpec) -> w::AttachmentNat {
        w::AttachmentNat {
            options: w::Options {
                backend: backend(s.options.backend),
                snat: s.options.snat,
                masq_all: s.options.masq_all,
                mark_masq_bit: s.options.mark_masq_bit,
                external_set_mark_chain: s.options.external_set_mark_chain.clone(),
            },
            families: s
                .families
                .iter()
                .map(|f| w::FamilyMappings {
                    container_ip: f.container.to_string(),
                    mappings: f
                        .mappings
                        .iter()
                        .map(|m| w::PortMapping {
                            host_port: m.host_port,
                            container_port: m.container_port,
                            protocol: match m.protocol {
                                Protocol::Tcp => w::Protocol::Tcp,
                                Protocol::Udp => w::Protocol::Udp,
                                Protocol::Sctp => w::Protocol::Sctp,
                            },
                            host_ip: m.host_ip.map(|h| h.to_string()),
                        })
                        .collect(),
                    conditions: f.conditions.clone(),
                })
                .collect(),
        }
    }

    impl NatCaps for crate::wasm_host::WasmHost {
        fn nat_apply(&mut self, s: &NatSpec) -> CniResultOf<()> {
            w::apply(&spec(s)).map_err(err)
        }

        fn nat_remove(&mut self, b: NatBackend) -> CniResultOf<()> {
            w::remove(backend(b)).map_err(err)
        }

        fn nat_check(&mut self, s: &NatSpec) -> CniResultOf<()> {
            w::check(&spec(s)).map_err(err)
        }

        fn nat_gc(&mut self, b: NatBackend, valid: &[String]) -> CniResultOf<()> {
            w::gc(backend(b), valid).map_err(err)
        }

        fn flush_udp_conntrack(&mut self, port: u16, ipv6: bool) -> CniResultOf<()> {
            w::flush_udp_conntrack(port, ipv6).map_err(err)
        }

        fn enable_route_localnet(&mut self, ip: IpAddr) -> CniResultOf<()> {
            w::enable_route_localnet(&ip.to_string()).map_err(err)
        }

        fn nat_backend_supported(&mut self, b: NatBackend) -> bool {
            w::backend_supported(backend(b))
        }
    }
}
