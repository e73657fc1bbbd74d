//! The undo journal: a failed ADD undoes what its module did through its
//! capabilities, in reverse order, so nothing is left behind even when the
//! module itself does not clean up (or trapped half-way).

use crate::kernel::Addr;
use crate::protocol::env::Command;

use super::CallContext;

/// The time the undo of a failed ADD may take, whatever was left of the
/// call's own deadline (which may be what ran out): a rollback cut short
/// would leave the very state it exists to remove.
pub const UNDO_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// A link as the journal knows it: by its kernel identity (the ifindex in
/// its namespace), not by the name the module asked for, so an undo never
/// acts on another link that took the name meanwhile. The name is for the
/// log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRef {
    pub netns: String,
    pub name: String,
    pub index: u32,
}

/// The journal's reference to link `name` of the namespace `ops` is in
/// (at `netns`); None when it is gone (nothing of it to undo then).
pub fn link_ref(ops: &mut dyn crate::kernel::NetnsOps, netns: &str, name: &str) -> Option<LinkRef> {
    let l = ops.link(name).ok().flatten()?;
    Some(LinkRef {
        netns: netns.to_string(),
        name: name.to_string(),
        index: l.index,
    })
}

/// The inverse of one successful capability call.
#[derive(Debug, Clone)]
pub enum Undo {
    SetLinkUp {
        link: LinkRef,
        up: bool,
    },
    DelAddress {
        link: LinkRef,
        addr: Addr,
    },
    AddAddress {
        link: LinkRef,
        addr: Addr,
    },
    /// A route this call added (host side; the container's go with its link).
    DelRoute {
        link: LinkRef,
        route: crate::kernel::RouteInfo,
    },
    /// A MAC address this call changed: the one before.
    SetMac {
        link: LinkRef,
        mac: [u8; 6],
    },
    /// A sysctl this call changed: its value before. A per-link key
    /// carries its link, and is restored only while that link holds the name.
    Sysctl {
        netns: String,
        key: String,
        value: String,
        link: Option<LinkRef>,
    },
    /// The delegated IPAM allocated: release it.
    IpamDel,
    /// Port mappings were installed for this attachment: remove them.
    NatRemove {
        backend: crate::kernel::firewall::Backend,
    },
    /// An ifb the tc capability created (host netns).
    DelIfb {
        name: String,
        index: u32,
    },
    /// A qdisc the tc capability added on host link `index` under `parent`.
    DelQdisc {
        index: u32,
        parent: u32,
    },
    /// A host link this call created (a veth: its container end goes too).
    DelHostLink {
        link: LinkRef,
    },
    /// Masquerade rules of this attachment (chain derived by the host).
    Unmasquerade {
        chain: String,
    },
    /// nftables masquerade rules of this attachment (names derived by the host).
    UnmasqueradeNft,
    /// The MAC spoof check of this attachment (names derived by the host).
    SpoofcheckDel,
}

impl Undo {
    /// The name of the host link this step removes, if it removes one
    /// the call created.
    pub fn created_link(&self) -> Option<String> {
        match self {
            Undo::DelIfb { name, .. } => Some(name.clone()),
            Undo::DelHostLink { link } => Some(link.name.clone()),
            _ => None,
        }
    }
}

impl CallContext {
    /// Records an inverse, only while running ADD.
    pub fn journal(&self, undo: Undo) {
        if self.command == Command::Add {
            if let Ok(mut j) = self.undo.lock() {
                j.push(undo);
            }
        }
    }

    /// Runs one undo step on the namespace at `netns`.
    fn in_netns(
        &self,
        netns: &str,
        step: impl FnOnce(&mut dyn crate::kernel::NetnsOps) -> crate::kernel::KResult<()>,
    ) -> Result<(), String> {
        self.kernels
            .netns
            .open_netns(netns)
            .and_then(|mut ns| step(ns.as_mut()))
            .map_err(|e| e.to_string())
    }

    /// Runs one undo step on the link `link` names, under its current
    /// name; a link that is gone took the state to undo with it.
    fn on_link(
        &self,
        link: &LinkRef,
        step: impl FnOnce(&mut dyn crate::kernel::NetnsOps, &str) -> crate::kernel::KResult<()>,
    ) -> Result<(), String> {
        self.in_netns(&link.netns, |ns| match ns.link_by_index(link.index)? {
            Some(now) => step(ns, &now.info.name),
            None => Ok(()),
        })
    }

    /// Applies the journal in reverse. Best effort: every step is tried and
    /// failures are logged, since the ADD error is what the runtime needs.
    pub fn rollback(&self) {
        let steps: Vec<Undo> = match self.undo.lock() {
            Ok(mut j) => j.drain(..).rev().collect(),
            Err(_) => return,
        };
        for step in steps {
            let r = match &step {
                Undo::SetLinkUp { link, up } => self.on_link(link, |ns, l| ns.set_link_up(l, *up)),
                Undo::DelAddress { link, addr } => {
                    self.on_link(link, |ns, l| ns.del_address(l, *addr))
                }
                Undo::AddAddress { link, addr } => {
                    self.on_link(link, |ns, l| ns.add_address(l, *addr))
                }
                Undo::DelRoute { link, route } => {
                    self.on_link(link, |ns, l| ns.del_route(l, route))
                }
                Undo::SetMac { link, mac } => self.on_link(link, |ns, l| ns.set_mac(l, *mac)),
                Undo::Sysctl {
                    netns,
                    key,
                    value,
                    link,
                } => self.in_netns(netns, |ns| {
                    if let Some(l) = link {
                        match ns.link_by_index(l.index)? {
                            Some(now) if now.info.name == l.name => {}
                            _ => return Ok(()),
                        }
                    }
                    ns.sysctl(key, Some(value)).map(drop)
                }),
                Undo::IpamDel => super::ipam::delegate_until(
                    self,
                    Command::Del,
                    std::sync::Arc::new(super::Deadline::new(
                        std::time::Instant::now() + UNDO_BUDGET,
                    )),
                )
                .map(|_| ())
                .map_err(|e| format!("{}: {}", e.msg, e.details)),
                Undo::NatRemove { backend } => super::nat::owner(self, true)
                    .map_err(|e| e.msg)
                    .and_then(|o| {
                        self.kernels
                            .firewall
                            .portmap_remove(&o, *backend)
                            .map_err(|e| e.to_string())
                    }),
                Undo::DelIfb { name, index } => super::tc::undo_del_ifb(self, name, *index),
                Undo::DelQdisc { index, parent } => {
                    super::tc::undo_del_qdisc(self, *index, *parent)
                }
                Undo::DelHostLink { link } => self.on_link(link, |ns, l| match ns.del_link(l) {
                    Err(crate::kernel::KernelError::NoSuchLink(_)) => Ok(()),
                    r => r,
                }),
                Undo::Unmasquerade { chain } => {
                    self.kernels.masq.teardown(chain).map_err(|e| e.to_string())
                }
                Undo::UnmasqueradeNft => super::host_net::nft_unmasquerade(self)
                    .map_err(|e| format!("{}: {}", e.msg, e.details)),
                Undo::SpoofcheckDel => super::host_net::spoofcheck_del(self)
                    .map_err(|e| format!("{}: {}", e.msg, e.details)),
            };
            match r {
                Ok(()) => {
                    tracing::info!(module = %self.module, container_id = %self.invocation.container_id, ?step, "undone after failed ADD")
                }
                Err(e) => {
                    tracing::warn!(module = %self.module, container_id = %self.invocation.container_id, ?step, error = %e, "could not undo after failed ADD")
                }
            }
        }
    }
}
