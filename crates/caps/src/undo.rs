//! The undo journal: a failed ADD undoes what its module did through its
//! capabilities, in reverse order, so nothing is left behind even when the
//! module itself does not clean up (or trapped half-way). Each capability
//! records the inverse of what it did here; `rollback` carries them out.

use crate::kernel::Addr;
use crate::protocol::env::Command;

use super::CallContext;

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
}
