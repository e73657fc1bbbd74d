//! A recording in-memory kernel for unprivileged tests.
//!
//! Namespaces are registered by path. Every namespace has `lo` (index 1, down,
//! no addresses), like a fresh kernel netns. Behaviour mirrors the real kernel
//! where callers can observe it (checked against `netlink` by its root tests):
//! * bringing `lo` up adds 127.0.0.1/8 (when it has no IPv4 address) and ::1/128;
//! * taking a link down drops its IPv6 addresses and the routes through it;
//! * an up link with addresses has the kernel's connected routes in `routes()`;
//! * errors carry the kernel's errno: adding an existing address is
//!   `Os { op: "add address", errno: EEXIST }`, and so on.
//!
//! Not modelled: IPv6 link-local addresses and their routes, carrier, host-bit
//! checks on route destinations, the kernel's route order (`routes()` lists
//! connected routes first, then added ones, IPv4 before IPv6).
//!
//! Every mutating call is logged (whether or not it succeeds) as
//! `ns=<path> <op> <args>`; read the log with [`FakeKernel::calls`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;

use super::{
    Addr, Dad, KResult, Kernel, KernelError, LinkDetails, LinkInfo, NetnsOps, PortFlags, PortVlan,
    RouteInfo, VethSpec,
};

const RT_TABLE_MAIN: u32 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
/// Kernel default metric for IPv6 routes added without one.
const IP6_RT_PRIO_USER: u32 = 1024;
/// Metric of IPv6 connected (prefix) routes.
const IP6_RT_PRIO_ADDRCONF: u32 = 256;

/// A link in a fake namespace, with everything the kernel keeps about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLink {
    pub info: LinkInfo,
    /// In insertion order (the real kernel lists IPv4 first, then IPv6).
    pub addresses: Vec<Addr>,
    /// Routes added through this link (connected routes are not stored).
    pub routes: Vec<RouteInfo>,
    /// `bridge`, `veth` or empty
    pub kind: String,
    pub master: Option<u32>,
    /// veth peer: namespace path and ifindex
    pub peer: Option<(String, u32)>,
    pub promisc: bool,
    pub port: PortFlags,
    pub vlans: Vec<PortVlan>,
}

#[derive(Debug, Default)]
struct FakeNetns {
    links: Vec<FakeLink>,
    next_index: u32,
    sysctls: BTreeMap<String, String>,
    /// link → how many more `unsettled_addresses` reads report its IPv6
    /// addresses as tentative (`u32::MAX`: failed DAD, for good)
    dad_polls: BTreeMap<String, u32>,
}

impl FakeNetns {
    fn new_link(&mut self, name: &str, kind: &str, mtu: u32) -> KResult<&mut FakeLink> {
        if self.links.iter().any(|l| l.info.name == name) {
            return Err(failed("add link", Errno::EEXIST));
        }
        let index = self.next_index;
        self.next_index += 1;
        let [_, _, hi, lo] = index.to_be_bytes();
        self.links.push(FakeLink {
            info: LinkInfo {
                name: name.to_string(),
                index,
                mac: format!("02:00:00:00:{hi:02x}:{lo:02x}"),
                mtu,
                up: false,
            },
            addresses: Vec::new(),
            routes: Vec::new(),
            kind: kind.to_string(),
            master: None,
            peer: None,
            promisc: false,
            port: PortFlags::default(),
            vlans: Vec::new(),
        });
        let last = self.links.len() - 1;
        Ok(&mut self.links[last])
    }
}

fn details(l: &FakeLink) -> LinkDetails {
    LinkDetails {
        info: l.info.clone(),
        kind: l.kind.clone(),
        master: l.master,
        peer: l.peer.as_ref().map(|p| p.1),
        promisc: l.promisc,
        oper_up: l.info.up,
    }
}

#[derive(Debug, Default)]
struct FakeState {
    namespaces: BTreeMap<String, FakeNetns>,
    calls: Vec<String>,
    fail_next: Option<KernelError>,
}

/// A recording fake kernel; clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeKernel {
    state: Arc<Mutex<FakeState>>,
}

fn failed(op: &str, errno: Errno) -> KernelError {
    KernelError::os(op, errno)
}

fn fmt_addr(a: Addr) -> String {
    format!("{}/{}", a.ip, a.prefix)
}

fn fmt_route(r: &RouteInfo) -> String {
    let mut s = fmt_addr(r.dst);
    if let Some(gw) = r.gw {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(p) = r.priority {
        s.push_str(&format!(" metric {p}"));
    }
    if let Some(m) = r.mtu {
        s.push_str(&format!(" mtu {m}"));
    }
    if let Some(t) = r.table {
        s.push_str(&format!(" table {t}"));
    }
    if let Some(sc) = r.scope {
        s.push_str(&format!(" scope {sc}"));
    }
    s
}

impl FakeLink {
    /// The kernel's connected routes for this link's addresses (up, not lo).
    fn connected_routes(&self) -> Vec<RouteInfo> {
        if !self.info.up || self.info.name == "lo" {
            return Vec::new();
        }
        self.addresses
            .iter()
            .filter(|a| a.prefix < a.host_prefix())
            .map(|a| RouteInfo {
                dst: a.network(),
                gw: None,
                mtu: None,
                priority: if a.ip.is_ipv4() {
                    None
                } else {
                    Some(IP6_RT_PRIO_ADDRCONF)
                },
                table: Some(RT_TABLE_MAIN),
                scope: Some(if a.ip.is_ipv4() {
                    RT_SCOPE_LINK
                } else {
                    RT_SCOPE_UNIVERSE
                }),
                src: None,
            })
            .collect()
    }

    fn all_routes(&self) -> Vec<RouteInfo> {
        let mut all = self.connected_routes();
        all.extend(self.routes.iter().cloned());
        all
    }
}

impl FakeKernel {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock must not hide the state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a namespace at `path` with a down `lo`; no-op if it exists.
    pub fn add_netns(&self, path: &str) {
        let mut st = self.lock();
        st.namespaces
            .entry(path.to_string())
            .or_insert_with(|| FakeNetns {
                links: vec![FakeLink {
                    info: LinkInfo {
                        name: "lo".to_string(),
                        index: 1,
                        mac: "00:00:00:00:00:00".to_string(),
                        mtu: 65536,
                        up: false,
                    },
                    addresses: Vec::new(),
                    routes: Vec::new(),
                    kind: String::new(),
                    master: None,
                    peer: None,
                    promisc: false,
                    port: PortFlags::default(),
                    vlans: Vec::new(),
                }],
                next_index: 2,
                sysctls: BTreeMap::new(),
                dad_polls: BTreeMap::new(),
            });
    }

    /// Removes a namespace (the container went away); open handles then see
    /// `NetnsGone`.
    pub fn remove_netns(&self, path: &str) {
        self.lock().namespaces.remove(path);
    }

    /// Adds an ethernet-like link (mtu 1500, mac `02:00:00:00:00:<index>`)
    /// and returns its index. Not logged: this is test setup.
    pub fn add_link(&self, path: &str, name: &str, up: bool) -> KResult<u32> {
        let mut st = self.lock();
        let ns = st
            .namespaces
            .get_mut(path)
            .ok_or_else(|| KernelError::NetnsGone(path.to_string()))?;
        let link = ns.new_link(name, "", 1500)?;
        link.info.up = up;
        Ok(link.info.index)
    }

    /// A sysctl value as set through `NetnsOps::sysctl`.
    pub fn sysctl(&self, path: &str, key: &str) -> Option<String> {
        self.lock().namespaces.get(path)?.sysctls.get(key).cloned()
    }

    /// Names of the links in a namespace.
    pub fn links(&self, path: &str) -> Vec<String> {
        self.lock()
            .namespaces
            .get(path)
            .map(|ns| ns.links.iter().map(|l| l.info.name.clone()).collect())
            .unwrap_or_default()
    }

    /// A snapshot of a link, or `None` if the namespace or link is missing.
    pub fn link(&self, path: &str, name: &str) -> Option<FakeLink> {
        let st = self.lock();
        st.namespaces
            .get(path)?
            .links
            .iter()
            .find(|l| l.info.name == name)
            .cloned()
    }

    /// Makes the next `polls` reads of `link`'s unsettled addresses report
    /// its IPv6 addresses as tentative (DAD under way); `u32::MAX`: as
    /// failed DAD. Not logged.
    pub fn set_dad_polls(&self, path: &str, link: &str, polls: u32) {
        if let Some(ns) = self.lock().namespaces.get_mut(path) {
            ns.dad_polls.insert(link.to_string(), polls);
        }
    }

    /// Every mutating call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Makes the next mutating `NetnsOps` call (on any namespace) fail with `err`.
    pub fn fail_next(&self, err: KernelError) {
        self.lock().fail_next = Some(err);
    }
}

impl Kernel for FakeKernel {
    fn open_netns(&self, path: &str) -> KResult<Box<dyn NetnsOps>> {
        if !self.lock().namespaces.contains_key(path) {
            return Err(KernelError::NetnsGone(path.to_string()));
        }
        Ok(Box::new(FakeNs {
            kernel: self.clone(),
            path: path.to_string(),
        }))
    }
}

/// A handle on one fake namespace.
struct FakeNs {
    kernel: FakeKernel,
    path: String,
}

impl FakeNs {
    /// Runs `f` on every namespace (for cross-namespace veth work); logs
    /// `log` first when given and honours `fail_next` for mutations.
    fn with_all<T>(
        &self,
        log: Option<String>,
        f: impl FnOnce(&mut BTreeMap<String, FakeNetns>, &str) -> KResult<T>,
    ) -> KResult<T> {
        let mut st = self.kernel.lock();
        if let Some(line) = log {
            st.calls.push(format!("ns={} {line}", self.path));
            if let Some(err) = st.fail_next.take() {
                return Err(err);
            }
        }
        if !st.namespaces.contains_key(&self.path) {
            return Err(KernelError::NetnsGone(self.path.clone()));
        }
        f(&mut st.namespaces, &self.path)
    }

    /// Runs `f` on the named link; logs `log` first when given.
    fn with_link<T>(
        &self,
        log: Option<String>,
        name: &str,
        f: impl FnOnce(&mut FakeLink) -> KResult<T>,
    ) -> KResult<T> {
        let mut st = self.kernel.lock();
        // Injected failures hit the next mutating call: reads stay honest.
        if let Some(line) = log {
            st.calls.push(format!("ns={} {line}", self.path));
            if let Some(err) = st.fail_next.take() {
                return Err(err);
            }
        }
        let ns = st
            .namespaces
            .get_mut(&self.path)
            .ok_or_else(|| KernelError::NetnsGone(self.path.clone()))?;
        let link = ns
            .links
            .iter_mut()
            .find(|l| l.info.name == name)
            .ok_or_else(|| KernelError::NoSuchLink(name.to_string()))?;
        f(link)
    }
}

impl NetnsOps for FakeNs {
    fn link(&mut self, name: &str) -> KResult<Option<LinkInfo>> {
        match self.with_link(None, name, |l| Ok(l.info.clone())) {
            Ok(info) => Ok(Some(info)),
            Err(KernelError::NoSuchLink(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_link_up(&mut self, name: &str, up: bool) -> KResult<()> {
        self.with_link(Some(format!("set-link-up {name} {up}")), name, |l| {
            if l.info.up == up {
                return Ok(());
            }
            l.info.up = up;
            if up {
                if l.info.name == "lo" {
                    if !l.addresses.iter().any(|a| a.ip.is_ipv4()) {
                        l.addresses.insert(
                            0,
                            Addr {
                                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                                prefix: 8,
                            },
                        );
                    }
                    let v6 = Addr {
                        ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                        prefix: 128,
                    };
                    if !l.addresses.contains(&v6) {
                        l.addresses.push(v6);
                    }
                }
            } else {
                // keep_addr_on_down=0: IPv6 addresses go; routes go with the link.
                l.addresses.retain(|a| a.ip.is_ipv4());
                l.routes.clear();
            }
            Ok(())
        })
    }

    fn addresses(&mut self, link: &str) -> KResult<Vec<Addr>> {
        self.with_link(None, link, |l| {
            let (mut v4, v6): (Vec<Addr>, Vec<Addr>) =
                l.addresses.iter().partition(|a| a.ip.is_ipv4());
            v4.extend(v6);
            Ok(v4)
        })
    }

    fn unsettled_addresses(&mut self, link: &str) -> KResult<Vec<(Addr, Dad)>> {
        let v6: Vec<Addr> = self
            .addresses(link)?
            .into_iter()
            .filter(|a| a.ip.is_ipv6())
            .collect();
        let mut st = self.kernel.lock();
        let Some(ns) = st.namespaces.get_mut(&self.path) else {
            return Err(KernelError::NetnsGone(self.path.clone()));
        };
        let state = match ns.dad_polls.get_mut(link) {
            Some(n) if *n == u32::MAX => Dad::Failed,
            Some(n) if *n > 0 => {
                *n -= 1;
                Dad::Tentative
            }
            _ => return Ok(Vec::new()),
        };
        Ok(v6.into_iter().map(|a| (a, state)).collect())
    }

    fn add_address(&mut self, link: &str, addr: Addr) -> KResult<()> {
        let log = format!("add-address {link} {}", fmt_addr(addr));
        self.with_link(Some(log), link, |l| {
            if addr.prefix > addr.host_prefix() {
                return Err(failed("add address", Errno::EINVAL));
            }
            // IPv4: same address and prefix; IPv6: same address.
            let exists = l
                .addresses
                .iter()
                .any(|a| a.ip == addr.ip && (addr.ip.is_ipv6() || a.prefix == addr.prefix));
            if exists {
                return Err(failed("add address", Errno::EEXIST));
            }
            l.addresses.push(addr);
            Ok(())
        })
    }

    fn del_address(&mut self, link: &str, addr: Addr) -> KResult<()> {
        let log = format!("del-address {link} {}", fmt_addr(addr));
        self.with_link(Some(log), link, |l| {
            let before = l.addresses.len();
            l.addresses.retain(|a| *a != addr);
            if l.addresses.len() == before {
                return Err(failed("del address", Errno::EADDRNOTAVAIL));
            }
            Ok(())
        })
    }

    fn routes(&mut self, link: &str) -> KResult<Vec<RouteInfo>> {
        self.with_link(None, link, |l| {
            let (mut v4, v6): (Vec<RouteInfo>, Vec<RouteInfo>) = l
                .all_routes()
                .into_iter()
                .filter(|r| r.table == Some(RT_TABLE_MAIN))
                .partition(|r| r.dst.ip.is_ipv4());
            v4.extend(v6);
            Ok(v4)
        })
    }

    fn add_route(&mut self, link: &str, route: &RouteInfo, exclusive: bool) -> KResult<()> {
        let log = format!("add-route {link} {}", fmt_route(route));
        self.with_link(Some(log), link, |l| {
            let op = "add route";
            let v4 = route.dst.ip.is_ipv4();
            if route.dst.prefix > route.dst.host_prefix()
                || route.gw.is_some_and(|gw| gw.is_ipv4() != v4)
            {
                return Err(failed(op, Errno::EINVAL));
            }
            if !l.info.up {
                return Err(failed(op, Errno::ENETDOWN));
            }
            if let Some(gw) = route.gw {
                let onlink = l
                    .all_routes()
                    .iter()
                    .any(|r| r.gw.is_none() && r.dst.contains(gw));
                let link_local =
                    matches!(gw, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !onlink && !link_local {
                    return Err(failed(
                        op,
                        if v4 {
                            Errno::ENETUNREACH
                        } else {
                            Errno::EHOSTUNREACH
                        },
                    ));
                }
            }
            // What the kernel reports back for this route.
            let stored = RouteInfo {
                dst: route.dst,
                gw: route.gw,
                mtu: route.mtu,
                priority: match (v4, route.priority) {
                    (true, Some(0)) | (true, None) => None,
                    (true, p) => p,
                    (false, Some(0)) | (false, None) => Some(IP6_RT_PRIO_USER),
                    (false, p) => p,
                },
                table: Some(route.table.unwrap_or(RT_TABLE_MAIN)),
                scope: Some(if !v4 {
                    RT_SCOPE_UNIVERSE
                } else {
                    match (route.scope, route.gw) {
                        (Some(s), _) => s,
                        (None, Some(_)) => RT_SCOPE_UNIVERSE,
                        (None, None) => RT_SCOPE_LINK,
                    }
                }),
                src: None,
            };
            let clash = l.all_routes().iter().any(|r| {
                r.dst == stored.dst
                    && r.priority == stored.priority
                    && r.table == stored.table
                    && (exclusive || r.gw == stored.gw)
            });
            if clash {
                return Err(failed(op, Errno::EEXIST));
            }
            l.routes.push(stored);
            Ok(())
        })
    }

    fn del_route(&mut self, link: &str, route: &RouteInfo) -> KResult<()> {
        let log = format!("del-route {link} {}", fmt_route(route));
        self.with_link(Some(log), link, |l| {
            let before = l.routes.len();
            l.routes
                .retain(|r| !(r.dst == route.dst && (route.gw.is_none() || r.gw == route.gw)));
            if l.routes.len() == before {
                // A connected route: the fake drops it by remembering nothing; the
                // kernel would delete it. Model: refuse only when nothing matches.
                let connected = l.connected_routes().iter().any(|r| r.dst == route.dst);
                if !connected {
                    return Err(failed("del route", Errno::ESRCH));
                }
            }
            Ok(())
        })
    }

    fn link_details(&mut self, name: &str) -> KResult<Option<LinkDetails>> {
        match self.with_link(None, name, |l| Ok(details(l))) {
            Ok(d) => Ok(Some(d)),
            Err(KernelError::NoSuchLink(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn link_by_index(&mut self, index: u32) -> KResult<Option<LinkDetails>> {
        self.with_all(None, |all, path| {
            Ok(all
                .get(path)
                .and_then(|ns| ns.links.iter().find(|l| l.info.index == index))
                .map(details))
        })
    }

    fn add_bridge(&mut self, name: &str, mtu: Option<u32>, vlan_filtering: bool) -> KResult<()> {
        let log = format!("add-bridge {name} mtu={mtu:?} vlan_filtering={vlan_filtering}");
        self.with_all(Some(log), |all, path| {
            let ns = all
                .get_mut(path)
                .ok_or_else(|| KernelError::NetnsGone(path.to_string()))?;
            ns.new_link(name, "bridge", mtu.unwrap_or(1500))
                .map_err(|_| failed("add bridge", Errno::EEXIST))?;
            Ok(())
        })
    }

    fn set_bridge_vlan_filtering(&mut self, name: &str, on: bool) -> KResult<()> {
        self.with_link(
            Some(format!("set-vlan-filtering {name} {on}")),
            name,
            |_| Ok(()),
        )
    }

    fn add_veth(&mut self, spec: &VethSpec) -> KResult<()> {
        let log = format!(
            "add-veth {} peer {} in {} mtu={:?}",
            spec.name,
            spec.peer_name,
            spec.peer_netns.as_deref().unwrap_or("self"),
            spec.mtu
        );
        self.with_all(Some(log), |all, path| {
            let peer_path = spec.peer_netns.clone().unwrap_or_else(|| path.to_string());
            if !all.contains_key(&peer_path) {
                return Err(KernelError::NetnsGone(peer_path));
            }
            let taken = |all: &BTreeMap<String, FakeNetns>, p: &str, n: &str| {
                all.get(p)
                    .is_some_and(|ns| ns.links.iter().any(|l| l.info.name == n))
            };
            if taken(all, path, &spec.name)
                || taken(all, &peer_path, &spec.peer_name)
                || (peer_path == path && spec.name == spec.peer_name)
            {
                return Err(failed("add veth", Errno::EEXIST));
            }
            let mtu = spec.mtu.unwrap_or(1500);
            let ns = all
                .get_mut(path)
                .ok_or_else(|| KernelError::NetnsGone(path.to_string()))?;
            let index = ns.new_link(&spec.name, "veth", mtu)?.info.index;
            let peer_ns = all
                .get_mut(&peer_path)
                .ok_or_else(|| KernelError::NetnsGone(peer_path.clone()))?;
            let peer = peer_ns.new_link(&spec.peer_name, "veth", mtu)?;
            if let Some(mac) = spec.peer_mac {
                peer.info.mac = mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
            }
            peer.peer = Some((path.to_string(), index));
            let peer_index = peer.info.index;
            if let Some(l) = all
                .get_mut(path)
                .and_then(|ns| ns.links.iter_mut().find(|l| l.info.index == index))
            {
                l.peer = Some((peer_path, peer_index));
            }
            Ok(())
        })
    }

    fn move_link(&mut self, name: &str, netns: &str) -> KResult<()> {
        self.with_all(Some(format!("move-link {name} to {netns}")), |all, path| {
            if !all.contains_key(netns) {
                return Err(KernelError::NetnsGone(netns.to_string()));
            }
            let ns = all
                .get_mut(path)
                .ok_or_else(|| KernelError::NetnsGone(path.to_string()))?;
            let pos = ns
                .links
                .iter()
                .position(|l| l.info.name == name)
                .ok_or_else(|| KernelError::NoSuchLink(name.to_string()))?;
            let link = ns.links.remove(pos);
            let target = all
                .get_mut(netns)
                .ok_or_else(|| KernelError::NetnsGone(netns.to_string()))?;
            let moved = target.new_link(name, &link.kind, link.info.mtu)?;
            moved.peer = link.peer.clone();
            let new_index = moved.info.index;
            if let Some((pp, pi)) = link.peer {
                if let Some(p) = all
                    .get_mut(&pp)
                    .and_then(|ns| ns.links.iter_mut().find(|l| l.info.index == pi))
                {
                    p.peer = Some((netns.to_string(), new_index));
                }
            }
            Ok(())
        })
    }

    fn del_link(&mut self, name: &str) -> KResult<()> {
        self.with_all(Some(format!("del-link {name}")), |all, path| {
            let ns = all
                .get_mut(path)
                .ok_or_else(|| KernelError::NetnsGone(path.to_string()))?;
            let pos = ns
                .links
                .iter()
                .position(|l| l.info.name == name)
                .ok_or_else(|| KernelError::NoSuchLink(name.to_string()))?;
            let link = ns.links.remove(pos);
            // Ports of a deleted bridge are released; a veth takes its peer along.
            for l in ns.links.iter_mut() {
                if l.master == Some(link.info.index) {
                    l.master = None;
                }
            }
            if let Some((pp, pi)) = link.peer {
                if let Some(pns) = all.get_mut(&pp) {
                    pns.links.retain(|l| l.info.index != pi);
                }
            }
            Ok(())
        })
    }

    fn set_master(&mut self, name: &str, master: Option<&str>) -> KResult<()> {
        self.with_all(
            Some(format!("set-master {name} {}", master.unwrap_or("none"))),
            |all, path| {
                let ns = all
                    .get_mut(path)
                    .ok_or_else(|| KernelError::NetnsGone(path.to_string()))?;
                let m = match master {
                    Some(m) => Some(
                        ns.links
                            .iter()
                            .find(|l| l.info.name == m)
                            .map(|l| l.info.index)
                            .ok_or_else(|| KernelError::NoSuchLink(m.to_string()))?,
                    ),
                    None => None,
                };
                let l = ns
                    .links
                    .iter_mut()
                    .find(|l| l.info.name == name)
                    .ok_or_else(|| KernelError::NoSuchLink(name.to_string()))?;
                l.master = m;
                Ok(())
            },
        )
    }

    fn set_promisc(&mut self, name: &str, on: bool) -> KResult<()> {
        self.with_link(Some(format!("set-promisc {name} {on}")), name, |l| {
            l.promisc = on;
            Ok(())
        })
    }

    fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> KResult<()> {
        let m = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        self.with_link(Some(format!("set-mac {name} {m}")), name, |l| {
            l.info.mac = m;
            Ok(())
        })
    }

    fn set_bridge_port(&mut self, name: &str, flags: PortFlags) -> KResult<()> {
        let log = format!(
            "set-bridge-port {name} hairpin={} isolated={}",
            flags.hairpin, flags.isolated
        );
        self.with_link(Some(log), name, |l| {
            if l.master.is_none() {
                return Err(failed("set bridge port", Errno::EOPNOTSUPP));
            }
            l.port = flags;
            Ok(())
        })
    }

    fn port_vlans(&mut self, name: &str) -> KResult<Vec<PortVlan>> {
        self.with_link(None, name, |l| Ok(l.vlans.clone()))
    }

    fn add_port_vlan(&mut self, name: &str, vlan: PortVlan) -> KResult<()> {
        let log = format!(
            "add-vlan {name} {} pvid={} untagged={}",
            vlan.vid, vlan.pvid, vlan.untagged
        );
        self.with_link(Some(log), name, |l| {
            if vlan.pvid {
                l.vlans.iter_mut().for_each(|v| v.pvid = false);
            }
            l.vlans.retain(|v| v.vid != vlan.vid);
            l.vlans.push(vlan);
            Ok(())
        })
    }

    fn del_port_vlan(&mut self, name: &str, vid: u16) -> KResult<()> {
        self.with_link(Some(format!("del-vlan {name} {vid}")), name, |l| {
            l.vlans.retain(|v| v.vid != vid);
            Ok(())
        })
    }

    fn sysctl(&mut self, key: &str, value: Option<&str>) -> KResult<String> {
        let log = value.map(|v| format!("sysctl {key}={v}"));
        self.with_all(log, |all, path| {
            let ns = all
                .get_mut(path)
                .ok_or_else(|| KernelError::NetnsGone(path.to_string()))?;
            let old = ns
                .sysctls
                .get(key)
                .cloned()
                .unwrap_or_else(|| "0".to_string());
            if let Some(v) = value {
                ns.sysctls.insert(key.to_string(), v.to_string());
            }
            Ok(old)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const NS: &str = "/run/netns/test";

    fn a(s: &str) -> Addr {
        crate::cidr(s)
    }

    fn route(dst: &str, gw: Option<&str>) -> RouteInfo {
        RouteInfo {
            dst: a(dst),
            gw: gw.map(|g| g.parse().unwrap()),
            mtu: None,
            priority: None,
            table: None,
            scope: None,
            src: None,
        }
    }

    fn setup() -> (FakeKernel, Box<dyn NetnsOps>) {
        let k = FakeKernel::new();
        k.add_netns(NS);
        let ops = k.open_netns(NS).unwrap();
        (k, ops)
    }

    #[test]
    fn unknown_namespace_is_gone() {
        let k = FakeKernel::new();
        assert!(matches!(
            k.open_netns("/nope"),
            Err(KernelError::NetnsGone(p)) if p == "/nope"
        ));
        assert_eq!(
            k.add_link("/nope", "eth0", false),
            Err(KernelError::NetnsGone("/nope".into()))
        );
        assert!(k.link("/nope", "lo").is_none());
    }

    #[test]
    fn removed_namespace_is_gone_for_open_handles() {
        let (k, mut ops) = setup();
        k.remove_netns(NS);
        assert_eq!(ops.link("lo"), Err(KernelError::NetnsGone(NS.into())));
    }

    #[test]
    fn fresh_netns_has_down_lo() {
        let (_k, mut ops) = setup();
        assert_eq!(
            ops.link("lo").unwrap(),
            Some(LinkInfo {
                name: "lo".into(),
                index: 1,
                mac: "00:00:00:00:00:00".into(),
                mtu: 65536,
                up: false,
            })
        );
        assert!(ops.addresses("lo").unwrap().is_empty());
        assert!(ops.routes("lo").unwrap().is_empty());
        assert_eq!(ops.link("eth0").unwrap(), None);
    }

    #[test]
    fn lo_up_gets_loopback_addresses_and_down_drops_ipv6() {
        let (k, mut ops) = setup();
        ops.set_link_up("lo", true).unwrap();
        assert!(ops.link("lo").unwrap().unwrap().up);
        assert_eq!(
            ops.addresses("lo").unwrap(),
            vec![a("127.0.0.1/8"), a("::1/128")]
        );
        // Again: no duplicates.
        ops.set_link_up("lo", true).unwrap();
        assert_eq!(ops.addresses("lo").unwrap().len(), 2);
        ops.set_link_up("lo", false).unwrap();
        assert!(!k.link(NS, "lo").unwrap().info.up);
        assert_eq!(ops.addresses("lo").unwrap(), vec![a("127.0.0.1/8")]);
        ops.set_link_up("lo", true).unwrap();
        assert_eq!(
            ops.addresses("lo").unwrap(),
            vec![a("127.0.0.1/8"), a("::1/128")]
        );
        assert_eq!(
            k.calls(),
            vec![
                "ns=/run/netns/test set-link-up lo true",
                "ns=/run/netns/test set-link-up lo true",
                "ns=/run/netns/test set-link-up lo false",
                "ns=/run/netns/test set-link-up lo true",
            ]
        );
    }

    #[test]
    fn lo_with_ipv4_address_gets_no_127() {
        let (_k, mut ops) = setup();
        ops.add_address("lo", a("10.123.0.1/32")).unwrap();
        ops.set_link_up("lo", true).unwrap();
        assert_eq!(
            ops.addresses("lo").unwrap(),
            vec![a("10.123.0.1/32"), a("::1/128")]
        );
    }

    #[test]
    fn add_and_del_addresses() {
        let (k, mut ops) = setup();
        ops.set_link_up("lo", true).unwrap();
        ops.add_address("lo", a("fd00::1/128")).unwrap();
        ops.add_address("lo", a("10.123.0.1/32")).unwrap();
        assert_eq!(
            ops.addresses("lo").unwrap(),
            vec![
                a("127.0.0.1/8"),
                a("10.123.0.1/32"),
                a("::1/128"),
                a("fd00::1/128")
            ]
        );
        let exists = Err(KernelError::os("add address", Errno::EEXIST));
        assert_eq!(ops.add_address("lo", a("10.123.0.1/32")), exists);
        assert_eq!(ops.add_address("lo", a("fd00::1/64")), exists);
        // IPv4: same address in another prefix is a different address.
        ops.add_address("lo", a("10.123.0.1/24")).unwrap();

        ops.del_address("lo", a("10.123.0.1/32")).unwrap();
        ops.del_address("lo", a("fd00::1/128")).unwrap();
        assert_eq!(
            ops.del_address("lo", a("10.123.0.1/32")),
            Err(KernelError::os("del address", Errno::EADDRNOTAVAIL))
        );
        assert_eq!(
            ops.addresses("lo").unwrap(),
            vec![a("127.0.0.1/8"), a("10.123.0.1/24"), a("::1/128")]
        );
        assert_eq!(
            ops.add_address("eth9", a("10.0.0.1/24")),
            Err(KernelError::NoSuchLink("eth9".into()))
        );
        let calls = k.calls();
        assert_eq!(calls[1], "ns=/run/netns/test add-address lo fd00::1/128");
        assert_eq!(
            calls.last().unwrap(),
            "ns=/run/netns/test add-address eth9 10.0.0.1/24"
        );
    }

    #[test]
    fn missing_link_errors() {
        let (_k, mut ops) = setup();
        let gone = KernelError::NoSuchLink("eth0".into());
        assert_eq!(ops.set_link_up("eth0", true), Err(gone.clone()));
        assert_eq!(ops.addresses("eth0"), Err(gone.clone()));
        assert_eq!(ops.routes("eth0"), Err(gone.clone()));
        assert_eq!(
            ops.add_route("eth0", &route("10.0.0.0/8", None), true),
            Err(gone)
        );
    }

    #[test]
    fn links_and_routes() {
        let (k, mut ops) = setup();
        assert_eq!(k.add_link(NS, "eth0", false), Ok(2));
        assert_eq!(
            k.add_link(NS, "eth0", false),
            Err(KernelError::os("add link", Errno::EEXIST))
        );
        let eth0 = ops.link("eth0").unwrap().unwrap();
        assert_eq!(eth0.mac, "02:00:00:00:00:02");
        assert_eq!(eth0.mtu, 1500);
        assert!(!eth0.up);

        ops.add_address("eth0", a("10.124.0.2/24")).unwrap();
        ops.add_address("eth0", a("fd00:124::2/64")).unwrap();
        assert_eq!(
            ops.add_route("eth0", &route("10.126.0.0/16", None), true),
            Err(KernelError::os("add route", Errno::ENETDOWN))
        );
        // No connected routes while down.
        assert!(ops.routes("eth0").unwrap().is_empty());
        ops.set_link_up("eth0", true).unwrap();

        let mut via = route("10.125.0.0/16", Some("10.124.0.1"));
        via.priority = Some(50);
        via.mtu = Some(1400);
        ops.add_route("eth0", &via, true).unwrap();
        ops.add_route("eth0", &route("10.126.0.0/16", None), true)
            .unwrap();
        ops.add_route("eth0", &route("fd00:125::/64", Some("fd00:124::1")), true)
            .unwrap();
        ops.add_route("eth0", &route("0.0.0.0/0", Some("10.126.3.4")), true)
            .unwrap();
        ops.add_route("eth0", &route("::/0", Some("fe80::1")), true)
            .unwrap();
        assert_eq!(
            ops.add_route("eth0", &via, true),
            Err(KernelError::os("add route", Errno::EEXIST))
        );
        assert_eq!(
            ops.add_route("eth0", &route("10.124.0.0/24", None), true),
            Err(KernelError::os("add route", Errno::EEXIST))
        );
        assert_eq!(
            ops.add_route("eth0", &route("10.127.0.0/16", Some("10.200.0.1")), true),
            Err(KernelError::os("add route", Errno::ENETUNREACH))
        );
        assert_eq!(
            ops.add_route("eth0", &route("fd00:127::/64", Some("fd00:200::1")), true),
            Err(KernelError::os("add route", Errno::EHOSTUNREACH))
        );
        assert_eq!(
            ops.add_route("eth0", &route("10.128.0.0/16", Some("fd00::1")), true),
            Err(KernelError::os("add route", Errno::EINVAL))
        );

        let routes = ops.routes("eth0").unwrap();
        let r = |dst: &str, gw: Option<&str>, prio: Option<u32>, scope: u8, mtu: Option<u32>| {
            RouteInfo {
                dst: a(dst),
                gw: gw.map(|g| g.parse().unwrap()),
                mtu,
                priority: prio,
                table: Some(254),
                scope: Some(scope),
                src: None,
            }
        };
        assert_eq!(
            routes,
            vec![
                r("10.124.0.0/24", None, None, 253, None),
                r("10.125.0.0/16", Some("10.124.0.1"), Some(50), 0, Some(1400)),
                r("10.126.0.0/16", None, None, 253, None),
                r("0.0.0.0/0", Some("10.126.3.4"), None, 0, None),
                r("fd00:124::/64", None, Some(256), 0, None),
                r("fd00:125::/64", Some("fd00:124::1"), Some(1024), 0, None),
                r("::/0", Some("fe80::1"), Some(1024), 0, None),
            ]
        );
        assert!(k.calls().contains(
            &"ns=/run/netns/test add-route eth0 10.125.0.0/16 via 10.124.0.1 metric 50 mtu 1400"
                .to_string()
        ));

        ops.set_link_up("eth0", false).unwrap();
        assert!(ops.routes("eth0").unwrap().is_empty());
        let snap = k.link(NS, "eth0").unwrap();
        assert_eq!(snap.addresses, vec![a("10.124.0.2/24")]);
        assert!(snap.routes.is_empty());
    }

    #[test]
    fn fail_next_injects_one_error() {
        let (k, mut ops) = setup();
        k.fail_next(KernelError::Timeout("set link".into()));
        assert_eq!(
            ops.set_link_up("lo", true),
            Err(KernelError::Timeout("set link".into()))
        );
        ops.set_link_up("lo", true).unwrap();
        assert_eq!(k.calls().len(), 2);
    }

    #[test]
    fn clones_share_state() {
        let k = FakeKernel::new();
        let k2 = k.clone();
        k.add_netns(NS);
        let mut ops = k2.open_netns(NS).unwrap();
        ops.set_link_up("lo", true).unwrap();
        assert!(k.link(NS, "lo").unwrap().info.up);
        assert_eq!(k.calls(), k2.calls());
    }
}
