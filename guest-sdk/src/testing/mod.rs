//! A fake host so module logic runs under plain `cargo test`, off-node.
//!
//! `FakeHost` keeps links, addresses and routes in memory, answers IPAM
//! delegation from a queue you fill, gives IPAM modules a private temporary
//! state directory, and records every call and log line for assertions.

mod host_net;
mod nat;
mod tc;

pub use host_net::{FakeHostLinkState, FakeHostNet, FakeScope};
pub use nat::FakeNat;
pub use tc::{FakeTc, FakeTcAttachment};

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::types::*;
use crate::{BandwidthHost, InterfaceHost, IpamCommand, IpamHost, Link, Netns, PortmapHost};

#[derive(Debug, Default)]
struct NsState {
    links: BTreeMap<String, (Link, Vec<IpNet>, Vec<Route>)>,
    calls: Vec<String>,
    gone: bool,
}

/// An in-memory network namespace. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeNetns {
    path: String,
    state: Rc<RefCell<NsState>>,
}

impl FakeNetns {
    /// Adds a link, as if the kernel had it already.
    pub fn add_link(&self, name: &str, up: bool) {
        let mut s = self.state.borrow_mut();
        let index = s.links.len() as u32 + 1;
        let link = Link {
            name: name.into(),
            index,
            mac: "00:00:00:00:00:00".into(),
            mtu: 65536,
            up,
        };
        s.links.insert(name.into(), (link, Vec::new(), Vec::new()));
    }

    /// The current state of a link.
    pub fn link_state(&self, name: &str) -> Option<Link> {
        self.state.borrow().links.get(name).map(|l| l.0.clone())
    }

    pub fn link_addresses(&self, name: &str) -> Vec<IpNet> {
        self.state
            .borrow()
            .links
            .get(name)
            .map(|l| l.1.clone())
            .unwrap_or_default()
    }

    /// Makes `container_netns` fail as if the namespace were deleted.
    pub fn remove(&self) {
        self.state.borrow_mut().gone = true;
    }

    /// Removes a link, as the kernel does with the other end of a deleted veth.
    pub fn remove_link(&self, name: &str) {
        self.state.borrow_mut().links.remove(name);
    }

    /// Drops the routes to `dst` through `link` (connected ones included).
    pub fn remove_route(&self, link: &str, dst: IpNet) {
        if let Some(l) = self.state.borrow_mut().links.get_mut(link) {
            l.2.retain(|r| r.dst != dst);
        }
    }

    /// Every mutating call made, e.g. `set-link-up lo true`.
    pub fn calls(&self) -> Vec<String> {
        self.state.borrow().calls.clone()
    }

    fn with_link<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut (Link, Vec<IpNet>, Vec<Route>)) -> T,
    ) -> CniResultOf<T> {
        let mut s = self.state.borrow_mut();
        s.links
            .get_mut(name)
            .map(f)
            .ok_or_else(|| CniError::internal(format!("link {name:?} not found")))
    }

    fn record(&self, call: String) {
        self.state.borrow_mut().calls.push(call);
    }
}

impl Netns for FakeNetns {
    fn path(&self) -> String {
        self.path.clone()
    }

    fn link(&self, name: &str) -> CniResultOf<Option<Link>> {
        Ok(self.link_state(name))
    }

    fn set_link_up(&self, name: &str, up: bool) -> CniResultOf<()> {
        self.record(format!("set-link-up {name} {up}"));
        self.with_link(name, |l| {
            l.0.up = up;
            // The kernel gives lo its loopback addresses when it comes up.
            if name == "lo" && up && l.1.is_empty() {
                l.1.push(IpNet {
                    addr: [127, 0, 0, 1].into(),
                    prefix: 8,
                });
                l.1.push(IpNet {
                    addr: std::net::Ipv6Addr::LOCALHOST.into(),
                    prefix: 128,
                });
            }
        })
    }

    fn addresses(&self, link: &str) -> CniResultOf<Vec<IpNet>> {
        self.with_link(link, |l| l.1.clone())
    }

    fn add_address(&self, link: &str, addr: IpNet) -> CniResultOf<()> {
        self.record(format!("add-address {link} {addr}"));
        self.with_link(link, |l| {
            if l.1.contains(&addr) {
                Err(CniError::internal(format!(
                    "address {addr} already on {link}"
                )))
            } else {
                l.1.push(addr);
                Ok(())
            }
        })?
    }

    fn del_address(&self, link: &str, addr: IpNet) -> CniResultOf<()> {
        self.record(format!("del-address {link} {addr}"));
        self.with_link(link, |l| l.1.retain(|a| *a != addr))
    }

    fn routes(&self, link: &str) -> CniResultOf<Vec<Route>> {
        self.with_link(link, |l| l.2.clone())
    }

    fn add_route(&self, link: &str, route: &Route) -> CniResultOf<()> {
        self.record(format!("add-route {link} {}", route.dst));
        self.with_link(link, |l| l.2.push(route.clone()))
    }

    fn add_route_from(&self, link: &str, route: &Route, src: std::net::IpAddr) -> CniResultOf<()> {
        self.record(format!("add-route {link} {} src {src}", route.dst));
        self.with_link(link, |l| {
            // As the host: the source must be the link's own.
            if !l.1.iter().any(|a| a.addr == src) {
                return Err(CniError::config(format!(
                    "route source {src} is not an address of {link}"
                )));
            }
            l.2.push(route.clone());
            Ok(())
        })?
    }
}

/// A fake host for both interface and IPAM modules.
pub struct FakeHost {
    pub netns: FakeNetns,
    /// Answers for IPAM delegation, consumed in order; empty means success
    /// with an empty result.
    pub ipam_answers: VecDeque<CniResultOf<Option<CniResult>>>,
    /// IPAM commands delegated so far.
    pub ipam_calls: Vec<IpamCommand>,
    pub logs: RefCell<Vec<(Level, String)>>,
    /// The bridge/ptp modules' `host-net` capability.
    pub host_net: host_net::FakeHostNet,
    /// The bandwidth module's `tc` capability.
    pub tc: tc::FakeTc,
    /// The portmap module's `nat` capability.
    pub nat: nat::FakeNat,
    /// What `IpamHost::resolv_conf` answers (the host reads `ipam.resolvConf`).
    pub resolv_conf: CniResultOf<Option<String>>,
    state_dir: PathBuf,
}

impl FakeHost {
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state_dir =
            std::env::temp_dir().join(format!("wasm-cni-fake-{}-{n}", std::process::id()));
        FakeHost {
            netns: FakeNetns {
                path: "/var/run/netns/fake".into(),
                state: Rc::default(),
            },
            ipam_answers: VecDeque::new(),
            ipam_calls: Vec::new(),
            logs: RefCell::new(Vec::new()),
            host_net: Default::default(),
            tc: Default::default(),
            nat: Default::default(),
            resolv_conf: Ok(None),
            state_dir,
        }
    }

    /// Uses `dir` as the IPAM state directory (created if missing).
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        if self.state_dir.starts_with(std::env::temp_dir()) {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

impl InterfaceHost for FakeHost {
    type Netns = FakeNetns;

    fn container_netns(&mut self) -> CniResultOf<FakeNetns> {
        if self.netns.state.borrow().gone {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                "network namespace is gone",
            ));
        }
        Ok(self.netns.clone())
    }

    fn ipam(&mut self, command: IpamCommand) -> CniResultOf<Option<CniResult>> {
        self.ipam_calls.push(command);
        let answer = self
            .ipam_answers
            .pop_front()
            .unwrap_or_else(|| Ok((command == IpamCommand::Add).then(CniResult::default)));
        // As the host: what IPAM issued is what the node's network may take.
        if let (IpamCommand::Add, Ok(Some(r))) = (command, &answer) {
            self.host_net.record_ipam(r);
        }
        answer
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

impl IpamHost for FakeHost {
    fn resolv_conf(&self) -> CniResultOf<Option<String>> {
        self.resolv_conf.clone()
    }

    fn state_dir(&self) -> &Path {
        let _ = std::fs::create_dir_all(&self.state_dir);
        &self.state_dir
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

impl PortmapHost for FakeHost {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

impl BandwidthHost for FakeHost {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}
