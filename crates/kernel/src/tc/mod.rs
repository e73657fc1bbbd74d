//! Traffic control over netlink (qdiscs, filters, ifb links) for the
//! bandwidth capability. Real implementation: `System` (host network
//! namespace of this process, plus read-only lookups in CNI_NETNS); fakes:
//! `Fake` (an empty host) and `FakeTc` (in-memory, recording).
//!
//! This layer knows tc and the kernel's encodings, not the bandwidth plugin's
//! policy: which link, which rate and which name are decided above it.

mod system;
pub mod tbf;

#[cfg(any(test, feature = "fake"))]
use {
    nix::errno::Errno,
    std::collections::BTreeMap,
    std::sync::{Arc, Mutex},
};

pub use system::System;

use super::KResult;
#[cfg(any(test, feature = "fake"))]
use super::KernelError;

/// `1:` — the handle the reference gives its root tbf.
pub const TBF_HANDLE: u32 = 0x0001_0000;
/// `TC_H_ROOT`
pub const ROOT: u32 = 0xFFFF_FFFF;
/// `ffff:` — the ingress qdisc's handle.
pub const INGRESS_HANDLE: u32 = 0xFFFF_0000;
/// `TC_H_INGRESS` (`ffff:fff1`), the ingress qdisc's parent.
pub const INGRESS_PARENT: u32 = 0xFFFF_FFF1;

/// A link as tc needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcLink {
    pub name: String,
    pub index: u32,
    /// `aa:bb:cc:dd:ee:ff`
    pub mac: String,
    pub mtu: u32,
    /// rtnetlink kind (`veth`, `ifb`, ...), empty when none
    pub kind: String,
    /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace)
    pub peer: Option<u32>,
    /// IFLA_IFALIAS, empty when unset
    pub alias: String,
}

/// A token bucket filter to install. Units are the reference plugin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// bytes per second (TCA_TBF_RATE64 is added when it needs more than 32 bits)
    pub rate: u64,
    /// bucket size, bytes (sent as a buffer time in scheduler ticks)
    pub burst: u32,
    /// queue limit, bytes
    pub limit: u32,
}

/// A tbf as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TbfState {
    pub rate: u64,
    pub limit: u32,
    /// the bucket in scheduler ticks
    pub buffer: u32,
}

/// One qdisc of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub kind: String,
    pub handle: u32,
    pub parent: u32,
    /// the parameters, for a tbf
    pub tbf: Option<TbfState>,
}

/// One filter under a link's ingress qdisc, reduced to what a redirect check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `u32`, `matchall`, ...
    pub kind: String,
    /// ETH_P_* in host order (3 = all)
    pub protocol: u16,
    /// the filter matches every packet (u32 with only zero-mask keys, or matchall)
    pub match_all: bool,
    /// ifindexes of its mirred egress-redirect actions
    pub redirects_to: Vec<u32>,
}

/// Traffic-control operations. Every call is bounded in time. Links are in
/// the host network namespace (this process's), except `container_link`.
pub trait TrafficControl: Send + Sync {
    /// A link inside the network namespace at `netns` (lookup only).
    fn container_link(&self, netns: &str, name: &str) -> KResult<Option<TcLink>>;
    /// A host link by name.
    fn link(&self, name: &str) -> KResult<Option<TcLink>>;
    /// Every host link.
    fn links(&self) -> KResult<Vec<TcLink>>;
    /// Creates an ifb (up, `mtu`, txqueuelen 0 as the reference) tagged with `alias`.
    fn add_ifb(&self, name: &str, mtu: u32, alias: &str) -> KResult<TcLink>;
    /// Deletes a host link by name.
    fn del_link(&self, name: &str) -> KResult<()>;
    /// Adds a root tbf with handle `1:` (fails when a root qdisc is there).
    fn add_tbf(&self, index: u32, tbf: &Tbf) -> KResult<()>;
    fn qdiscs(&self, index: u32) -> KResult<Vec<Qdisc>>;
    /// Deletes the qdisc under `parent` (ROOT or INGRESS_PARENT).
    fn del_qdisc(&self, index: u32, parent: u32) -> KResult<()>;
    /// Adds the ingress qdisc `ffff:` on `index` and a match-all u32 filter
    /// (prio 1, protocol all, flowid 1:1) redirecting to `to` with mirred.
    fn add_redirect(&self, index: u32, to: u32) -> KResult<()>;
    /// The filters under the ingress qdisc of `index`.
    fn ingress_filters(&self, index: u32) -> KResult<Vec<Filter>>;
    /// What `add_tbf` sends as the buffer for `burst` bytes at `rate` bytes/s.
    fn buffer_ticks(&self, rate: u64, burst: u32) -> KResult<u32>;
}

/// An empty host: no links, nothing can be created. The default fake for
/// tests that do not exercise tc.
#[derive(Debug, Default, Clone, Copy)]
#[cfg(any(test, feature = "fake"))]
pub struct Fake;

#[cfg(any(test, feature = "fake"))]
impl TrafficControl for Fake {
    fn container_link(&self, _netns: &str, _name: &str) -> KResult<Option<TcLink>> {
        Ok(None)
    }
    fn link(&self, _name: &str) -> KResult<Option<TcLink>> {
        Ok(None)
    }
    fn links(&self) -> KResult<Vec<TcLink>> {
        Ok(Vec::new())
    }
    fn add_ifb(&self, name: &str, _mtu: u32, _alias: &str) -> KResult<TcLink> {
        Err(KernelError::Failed(format!(
            "add ifb {name}: not supported by the empty fake"
        )))
    }
    fn del_link(&self, name: &str) -> KResult<()> {
        Err(KernelError::NoSuchLink(name.to_string()))
    }
    fn add_tbf(&self, index: u32, _tbf: &Tbf) -> KResult<()> {
        Err(KernelError::NoSuchLink(format!("ifindex {index}")))
    }
    fn qdiscs(&self, _index: u32) -> KResult<Vec<Qdisc>> {
        Ok(Vec::new())
    }
    fn del_qdisc(&self, index: u32, _parent: u32) -> KResult<()> {
        Err(KernelError::NoSuchLink(format!("ifindex {index}")))
    }
    fn add_redirect(&self, index: u32, _to: u32) -> KResult<()> {
        Err(KernelError::NoSuchLink(format!("ifindex {index}")))
    }
    fn ingress_filters(&self, _index: u32) -> KResult<Vec<Filter>> {
        Ok(Vec::new())
    }
    fn buffer_ticks(&self, rate: u64, burst: u32) -> KResult<u32> {
        Ok(tbf::buffer_ticks(rate, burst, tbf::DEFAULT_TICK_IN_USEC))
    }
}

#[derive(Debug, Default)]
#[cfg(any(test, feature = "fake"))]
struct FakeState {
    /// host links by name
    links: BTreeMap<String, TcLink>,
    /// links inside other namespaces, by (netns, name)
    container: BTreeMap<(String, String), TcLink>,
    qdiscs: Vec<(u32, Qdisc)>,
    filters: Vec<(u32, Filter)>,
    next_index: u32,
    calls: Vec<String>,
}

/// An in-memory host for unprivileged tests; records every mutating call.
/// Clones share state.
#[derive(Debug, Clone, Default)]
#[cfg(any(test, feature = "fake"))]
pub struct FakeTc(Arc<Mutex<FakeState>>);

#[cfg(any(test, feature = "fake"))]
impl FakeTc {
    pub fn new() -> FakeTc {
        FakeTc::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Creates a veth pair: `host` in the host, `peer` inside `netns`.
    pub fn add_veth(&self, host: &str, netns: &str, peer: &str) {
        self.with(|s| {
            s.next_index += 2;
            let (hi, pi) = (s.next_index + 10, s.next_index + 11);
            let mk = |name: &str, index, peer| TcLink {
                name: name.into(),
                index,
                mac: "0a:00:00:00:00:01".into(),
                mtu: 1500,
                kind: "veth".into(),
                peer: Some(peer),
                alias: String::new(),
            };
            s.links.insert(host.into(), mk(host, hi, pi));
            s.container
                .insert((netns.into(), peer.into()), mk(peer, pi, hi));
        })
    }

    /// Removes a namespace's links, as if it had been deleted.
    pub fn remove_netns(&self, netns: &str) {
        self.with(|s| s.container.retain(|(ns, _), _| ns != netns))
    }

    pub fn host_link(&self, name: &str) -> Option<TcLink> {
        self.with(|s| s.links.get(name).cloned())
    }

    pub fn qdisc_list(&self, index: u32) -> Vec<Qdisc> {
        self.with(|s| {
            s.qdiscs
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, q)| q.clone())
                .collect()
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }

    fn index_exists(s: &FakeState, index: u32) -> KResult<()> {
        if s.links.values().any(|l| l.index == index) {
            Ok(())
        } else {
            Err(KernelError::NoSuchLink(format!("ifindex {index}")))
        }
    }
}

#[cfg(any(test, feature = "fake"))]
impl TrafficControl for FakeTc {
    fn container_link(&self, netns: &str, name: &str) -> KResult<Option<TcLink>> {
        self.with(|s| {
            if !s.container.keys().any(|(ns, _)| ns == netns) {
                return Err(KernelError::NetnsGone(netns.to_string()));
            }
            Ok(s.container
                .get(&(netns.to_string(), name.to_string()))
                .cloned())
        })
    }

    fn link(&self, name: &str) -> KResult<Option<TcLink>> {
        Ok(self.host_link(name))
    }

    fn links(&self) -> KResult<Vec<TcLink>> {
        Ok(self.with(|s| s.links.values().cloned().collect()))
    }

    fn add_ifb(&self, name: &str, mtu: u32, alias: &str) -> KResult<TcLink> {
        self.with(|s| {
            s.calls.push(format!("add-ifb {name} mtu {mtu}"));
            if s.links.contains_key(name) {
                return Err(KernelError::os("add ifb", Errno::EEXIST));
            }
            s.next_index += 1;
            let l = TcLink {
                name: name.into(),
                index: s.next_index + 10,
                mac: "0a:00:00:00:00:02".into(),
                mtu,
                kind: "ifb".into(),
                peer: None,
                alias: alias.into(),
            };
            s.links.insert(name.into(), l.clone());
            Ok(l)
        })
    }

    fn del_link(&self, name: &str) -> KResult<()> {
        self.with(|s| {
            s.calls.push(format!("del-link {name}"));
            match s.links.remove(name) {
                Some(l) => {
                    s.qdiscs.retain(|(i, _)| *i != l.index);
                    s.filters
                        .retain(|(i, f)| *i != l.index && !f.redirects_to.contains(&l.index));
                    Ok(())
                }
                None => Err(KernelError::NoSuchLink(name.to_string())),
            }
        })
    }

    fn add_tbf(&self, index: u32, t: &Tbf) -> KResult<()> {
        let buffer = self.buffer_ticks(t.rate, t.burst)?;
        self.with(|s| {
            s.calls.push(format!(
                "add-tbf {index} rate {} burst {} limit {}",
                t.rate, t.burst, t.limit
            ));
            Self::index_exists(s, index)?;
            if s.qdiscs
                .iter()
                .any(|(i, q)| *i == index && q.parent == ROOT)
            {
                return Err(KernelError::os("add tbf", Errno::EEXIST));
            }
            let q = Qdisc {
                kind: "tbf".into(),
                handle: TBF_HANDLE,
                parent: ROOT,
                tbf: Some(TbfState {
                    rate: t.rate,
                    limit: t.limit,
                    buffer,
                }),
            };
            s.qdiscs.push((index, q));
            Ok(())
        })
    }

    fn qdiscs(&self, index: u32) -> KResult<Vec<Qdisc>> {
        Ok(self.qdisc_list(index))
    }

    fn del_qdisc(&self, index: u32, parent: u32) -> KResult<()> {
        self.with(|s| {
            s.calls.push(format!("del-qdisc {index} {parent:x}"));
            Self::index_exists(s, index)?;
            let before = s.qdiscs.len();
            s.qdiscs
                .retain(|(i, q)| !(*i == index && q.parent == parent));
            if parent == INGRESS_PARENT {
                s.filters.retain(|(i, _)| *i != index);
            }
            if s.qdiscs.len() == before {
                return Err(KernelError::os("delete qdisc", Errno::ENOENT));
            }
            Ok(())
        })
    }

    fn add_redirect(&self, index: u32, to: u32) -> KResult<()> {
        self.with(|s| {
            s.calls.push(format!("add-redirect {index} -> {to}"));
            Self::index_exists(s, index)?;
            Self::index_exists(s, to)?;
            if s.qdiscs
                .iter()
                .any(|(i, q)| *i == index && q.parent == INGRESS_PARENT)
            {
                return Err(KernelError::os("add ingress qdisc", Errno::EEXIST));
            }
            s.qdiscs.push((
                index,
                Qdisc {
                    kind: "ingress".into(),
                    handle: INGRESS_HANDLE,
                    parent: INGRESS_PARENT,
                    tbf: None,
                },
            ));
            s.filters.push((
                index,
                Filter {
                    kind: "u32".into(),
                    protocol: 3,
                    match_all: true,
                    redirects_to: vec![to],
                },
            ));
            Ok(())
        })
    }

    fn ingress_filters(&self, index: u32) -> KResult<Vec<Filter>> {
        Ok(self.with(|s| {
            s.filters
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, f)| f.clone())
                .collect()
        }))
    }

    fn buffer_ticks(&self, rate: u64, burst: u32) -> KResult<u32> {
        Ok(tbf::buffer_ticks(rate, burst, tbf::DEFAULT_TICK_IN_USEC))
    }
}
