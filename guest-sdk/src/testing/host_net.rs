//! The fake host side of the `host-net` capability, for module unit tests:
//! it keeps links, addresses, routes and rules in memory and applies the
//! host's scope rules (`cni_model::scope`, link scope) to what a module asks.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::{FakeHost, FakeNetns};
use crate::host_net::*;
use crate::types::*;

/// A fake host link with what the fake keeps about it.
#[derive(Debug, Clone, Default)]
pub struct FakeHostLinkState {
    pub link: HostLink,
    pub addresses: Vec<IpNet>,
    pub routes: Vec<Route>,
    pub port: PortConfig,
    pub vlans: Vec<Vlan>,
    /// for a veth: the container interface it pairs with
    pub peer_of: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    bridge: String,
    ifname: String,
    links: BTreeMap<String, FakeHostLinkState>,
    created: BTreeSet<String>,
    sysctls: BTreeMap<(bool, String), String>,
    masq: BTreeSet<IpNet>,
    masq_nft: BTreeSet<IpNet>,
    /// (host veth, mac) of the installed spoof check
    spoofcheck: Option<(String, String)>,
    /// settle calls that still report tentative addresses
    dad_pending: u32,
    /// the address every settle call reports as failed DAD
    dad_failed: Option<String>,
    /// what the next `masquerade_gc` reports as removed
    masq_gc_answer: Vec<String>,
    /// this call's IPAM result: what the node's network may take
    /// (the host's rules, `cni_model::scope`)
    ipam: Vec<cni_model::scope::IpamIp>,
    /// backends (nftables?) whose `masquerade_status` fails, and why
    masq_unusable: BTreeMap<bool, String>,
    calls: Vec<String>,
    next_index: u32,
}

/// The fake host side. Scope checks mirror the real host's, so a module
/// that strays is caught by its unit tests. Clones share state.
#[derive(Debug, Clone)]
pub struct FakeHostNet {
    state: Rc<RefCell<State>>,
}

impl Default for FakeHostNet {
    fn default() -> Self {
        let s = State {
            bridge: "cni0".into(),
            ifname: "eth0".into(),
            next_index: 100,
            ..Default::default()
        };
        FakeHostNet {
            state: Rc::new(RefCell::new(s)),
        }
    }
}

impl FakeHostNet {
    /// The bridge the host would scope from the config (default cni0).
    pub fn set_bridge(&self, name: &str) {
        self.state.borrow_mut().bridge = name.into();
    }
    /// CNI_IFNAME as the host would see it (default eth0).
    pub fn set_ifname(&self, name: &str) {
        self.state.borrow_mut().ifname = name.into();
    }
    /// Adds a host link outside any scope (to test refusals).
    pub fn add_foreign_link(&self, name: &str, kind: &str) {
        let mut s = self.state.borrow_mut();
        s.next_index += 1;
        let link = HostLink {
            name: name.into(),
            index: s.next_index,
            kind: kind.into(),
            mtu: 1500,
            ..Default::default()
        };
        s.links.insert(
            name.into(),
            FakeHostLinkState {
                link,
                ..Default::default()
            },
        );
    }
    /// Puts `addr` on an existing host link as another call or the
    /// admin did before this one (outside any module's scope).
    pub fn put_address(&self, name: &str, addr: IpNet) {
        if let Some(l) = self.state.borrow_mut().links.get_mut(name) {
            l.addresses.push(addr);
        }
    }
    pub fn link_state(&self, name: &str) -> Option<FakeHostLinkState> {
        self.state.borrow().links.get(name).cloned()
    }
    pub fn link_names(&self) -> Vec<String> {
        self.state.borrow().links.keys().cloned().collect()
    }
    pub fn sysctl_value(&self, side: Side, key: &str) -> Option<String> {
        self.state
            .borrow()
            .sysctls
            .get(&(side == Side::Host, key.to_string()))
            .cloned()
    }
    pub fn masqueraded(&self) -> Vec<IpNet> {
        self.state.borrow().masq.iter().copied().collect()
    }
    /// Addresses masqueraded through nftables.
    pub fn masqueraded_nft(&self) -> Vec<IpNet> {
        self.state.borrow().masq_nft.iter().copied().collect()
    }
    /// The spoof check: (host veth, container MAC).
    pub fn spoofcheck(&self) -> Option<(String, String)> {
        self.state.borrow().spoofcheck.clone()
    }
    /// Removes the spoof check behind the module's back (as an admin flushing nftables).
    pub fn spoofcheck_del_for_test(&self) {
        self.state.borrow_mut().spoofcheck = None;
    }
    /// Makes the next `n` settle calls time out (DAD never finishes).
    pub fn set_dad_pending(&self, n: u32) {
        self.state.borrow_mut().dad_pending = n;
    }
    /// Makes every settle call fail as the host does when another node
    /// answered for `addr`, an IPv6 address of CNI_IFNAME.
    pub fn set_dad_failed(&self, addr: &str) {
        self.state.borrow_mut().dad_failed = Some(addr.to_string());
    }
    /// What the next `masquerade_gc` reports as removed (the host
    /// decides that from the kernel's rules and the valid list).
    pub fn set_masquerade_gc_answer(&self, removed: Vec<String>) {
        self.state.borrow_mut().masq_gc_answer = removed;
    }
    /// Makes `masquerade_status` of `backend` fail with `why` (code 50).
    pub fn set_masquerade_unusable(&self, backend: MasqBackend, why: &str) {
        self.state
            .borrow_mut()
            .masq_unusable
            .insert(backend == MasqBackend::Nftables, why.into());
    }
    /// Every mutating call, e.g. `create-veth veth1234 eth0`.
    pub fn calls(&self) -> Vec<String> {
        self.state.borrow().calls.clone()
    }
}

/// A scope on the fake host; clones share state.
#[derive(Debug, Clone)]
pub struct FakeScope {
    host: FakeHostNet,
    netns: FakeNetns,
}

fn cidr(n: IpNet) -> cni_model::scope::Cidr {
    cni_model::scope::Cidr {
        ip: n.addr,
        prefix: n.prefix,
    }
}

fn scope_error(r: cni_model::scope::Refusal) -> CniError {
    CniError::config(r.msg).with_details(r.details)
}

impl FakeHostNet {
    /// Records an IPAM result the module received (see `FakeHost::ipam`).
    pub fn record_ipam(&self, result: &CniResult) {
        self.state
            .borrow_mut()
            .ipam
            .extend(result.ips.iter().map(|ip| cni_model::scope::IpamIp {
                addr: cidr(ip.address),
                gateway: ip.gateway,
            }));
    }

    fn masquerade_allowed(&self, addresses: &[IpNet]) -> CniResultOf<()> {
        let s = self.state.borrow();
        for a in addresses {
            cni_model::scope::masquerade(&s.ipam, cidr(*a)).map_err(scope_error)?;
        }
        Ok(())
    }
}

fn refuse(name: &str, bridge: &str) -> CniError {
    CniError::config(format!("host link {name:?} is outside this invocation's scope"))
        .with_details(format!("a module may only touch the bridge {bridge:?}, the host veths it created in this call and, read-only, the peer of CNI_IFNAME"))
}

impl FakeScope {
    fn record(&self, c: String) {
        self.host.state.borrow_mut().calls.push(c);
    }
    fn mutable(&self, name: &str) -> CniResultOf<()> {
        let s = self.host.state.borrow();
        if name == s.bridge || s.created.contains(name) {
            Ok(())
        } else {
            Err(refuse(name, &s.bridge))
        }
    }
    fn readable(&self, name: &str) -> CniResultOf<()> {
        let s = self.host.state.borrow();
        let peer = s
            .links
            .get(name)
            .and_then(|l| l.peer_of.as_ref())
            .is_some_and(|p| *p == s.ifname && self.netns.link_state(p).is_some());
        drop(s);
        if peer {
            Ok(())
        } else {
            self.mutable(name)
        }
    }
    fn with<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut FakeHostLinkState) -> CniResultOf<T>,
    ) -> CniResultOf<T> {
        let mut s = self.host.state.borrow_mut();
        let l = s
            .links
            .get_mut(name)
            .ok_or_else(|| CniError::internal(format!("no such host link {name:?}")))?;
        f(l)
    }
}

impl HostScope for FakeScope {
    fn bridge_name(&self) -> String {
        self.host.state.borrow().bridge.clone()
    }

    fn ensure_bridge(&self, c: &BridgeConfig) -> CniResultOf<HostLink> {
        let br = self.bridge_name();
        self.record(format!(
            "ensure-bridge {br} promisc={} vlan_filtering={}",
            c.promisc, c.vlan_filtering
        ));
        let mut s = self.host.state.borrow_mut();
        s.next_index += 1;
        let index = s.next_index;
        let l = s
            .links
            .entry(br.clone())
            .or_insert_with(|| FakeHostLinkState {
                link: HostLink {
                    name: br.clone(),
                    index,
                    mac: "02:00:00:00:00:01".into(),
                    mtu: c.mtu.unwrap_or(1500),
                    kind: "bridge".into(),
                    ..Default::default()
                },
                ..Default::default()
            });
        if l.link.kind != "bridge" {
            return Err(CniError::config(format!(
                "{br:?} already exists but is not a bridge"
            )));
        }
        l.link.up = true;
        l.link.oper_up = true;
        l.link.promisc |= c.promisc;
        Ok(l.link.clone())
    }

    fn link(&self, name: &str) -> CniResultOf<Option<HostLink>> {
        self.readable(name)?;
        Ok(self
            .host
            .state
            .borrow()
            .links
            .get(name)
            .map(|l| l.link.clone()))
    }

    fn container_peer(&self) -> CniResultOf<Option<HostLink>> {
        let s = self.host.state.borrow();
        if self.netns.link_state(&s.ifname).is_none() {
            return Ok(None);
        }
        Ok(s.links
            .values()
            .find(|l| l.peer_of.as_deref() == Some(s.ifname.as_str()))
            .map(|l| l.link.clone()))
    }

    fn create_veth(&self, c: &VethConfig) -> CniResultOf<HostLink> {
        let ifname = self.host.state.borrow().ifname.clone();
        self.record(format!(
            "create-veth {} {ifname} mtu={:?} mac={:?}",
            c.host_name, c.mtu, c.container_mac
        ));
        if self.netns.link_state(&ifname).is_some()
            || self.host.state.borrow().links.contains_key(&c.host_name)
        {
            return Err(CniError::internal(format!(
                "cannot create veth {}/{ifname}: a link of that name exists",
                c.host_name
            )));
        }
        self.netns.add_link(&ifname, false);
        let mut s = self.host.state.borrow_mut();
        s.next_index += 1;
        let link = HostLink {
            name: c.host_name.clone(),
            index: s.next_index,
            mac: "02:00:00:00:00:aa".into(),
            mtu: c.mtu.unwrap_or(1500),
            kind: "veth".into(),
            ..Default::default()
        };
        s.links.insert(
            c.host_name.clone(),
            FakeHostLinkState {
                link: link.clone(),
                peer_of: Some(ifname),
                ..Default::default()
            },
        );
        s.created.insert(c.host_name.clone());
        Ok(link)
    }

    fn delete_container_link(&self) -> CniResultOf<Vec<IpNet>> {
        let ifname = self.host.state.borrow().ifname.clone();
        self.record(format!("delete-container-link {ifname}"));
        if self.netns.link_state(&ifname).is_none() {
            return Ok(Vec::new());
        }
        let addrs = self.netns.link_addresses(&ifname);
        self.netns.remove_link(&ifname);
        self.host
            .state
            .borrow_mut()
            .links
            .retain(|_, l| l.peer_of.as_deref() != Some(ifname.as_str()));
        Ok(addrs)
    }

    fn set_link_up(&self, name: &str, up: bool) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!("set-link-up {name} {up}"));
        self.with(name, |l| {
            l.link.up = up;
            l.link.oper_up = up;
            Ok(())
        })
    }

    fn set_master(&self, name: &str) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!("set-master {name}"));
        let br = self.bridge_name();
        let idx = self
            .host
            .state
            .borrow()
            .links
            .get(&br)
            .map(|l| l.link.index)
            .ok_or_else(|| CniError::internal(format!("bridge {br} does not exist")))?;
        self.with(name, |l| {
            l.link.master = Some(idx);
            Ok(())
        })
    }

    fn set_port(&self, name: &str, c: PortConfig) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!(
            "set-port {name} hairpin={} isolated={}",
            c.hairpin, c.isolated
        ));
        self.with(name, |l| {
            l.port = c;
            Ok(())
        })
    }

    fn set_promisc(&self, name: &str, on: bool) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!("set-promisc {name} {on}"));
        self.with(name, |l| {
            l.link.promisc = on;
            Ok(())
        })
    }

    fn set_mac(&self, name: &str, mac: &str) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!("set-mac {name} {mac}"));
        self.with(name, |l| {
            l.link.mac = mac.to_string();
            Ok(())
        })
    }

    fn vlans(&self, name: &str) -> CniResultOf<Vec<Vlan>> {
        self.readable(name)?;
        self.with(name, |l| Ok(l.vlans.clone()))
    }

    fn add_vlan(&self, name: &str, v: Vlan) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!(
            "add-vlan {name} {} pvid={} untagged={}",
            v.vid, v.pvid, v.untagged
        ));
        self.with(name, |l| {
            l.vlans.retain(|x| x.vid != v.vid);
            l.vlans.push(v);
            Ok(())
        })
    }

    fn del_vlan(&self, name: &str, vid: u16) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!("del-vlan {name} {vid}"));
        self.with(name, |l| {
            l.vlans.retain(|x| x.vid != vid);
            Ok(())
        })
    }

    fn addresses(&self, name: &str) -> CniResultOf<Vec<IpNet>> {
        self.readable(name)?;
        self.with(name, |l| Ok(l.addresses.clone()))
    }

    fn add_address(&self, name: &str, addr: IpNet) -> CniResultOf<()> {
        self.mutable(name)?;
        cni_model::scope::host_address(&self.host.state.borrow().ipam, cidr(addr))
            .map_err(scope_error)?;
        self.record(format!("add-address {name} {addr}"));
        self.with(name, |l| {
            if l.addresses.contains(&addr) {
                return Err(CniError::internal(format!(
                    "address {addr} already on {name}"
                )));
            }
            l.addresses.push(addr);
            Ok(())
        })
    }

    fn del_address(&self, name: &str, addr: IpNet) -> CniResultOf<()> {
        self.mutable(name)?;
        self.record(format!("del-address {name} {addr}"));
        self.with(name, |l| {
            l.addresses.retain(|a| *a != addr);
            Ok(())
        })
    }

    fn routes(&self, name: &str) -> CniResultOf<Vec<Route>> {
        self.readable(name)?;
        self.with(name, |l| Ok(l.routes.clone()))
    }

    fn add_route(&self, name: &str, route: &Route) -> CniResultOf<()> {
        self.mutable(name)?;
        let r = cni_model::scope::HostRoute {
            dst: cidr(route.dst),
            gw: route.gw,
            table: route.table,
        };
        cni_model::scope::host_route(&self.host.state.borrow().ipam, &r).map_err(scope_error)?;
        self.record(format!("add-route {name} {}", route.dst));
        self.with(name, |l| {
            l.routes.push(route.clone());
            Ok(())
        })
    }

    fn del_container_route(&self, route: &Route) -> CniResultOf<()> {
        let ifname = self.host.state.borrow().ifname.clone();
        self.record(format!("del-container-route {ifname} {}", route.dst));
        self.netns.remove_route(&ifname, route.dst);
        Ok(())
    }

    fn sysctl(&self, side: Side, key: &str) -> CniResultOf<String> {
        Ok(self
            .host
            .state
            .borrow()
            .sysctls
            .get(&(side == Side::Host, key.to_string()))
            .cloned()
            .unwrap_or_else(|| "0".into()))
    }

    fn settle_addresses(&self, timeout_ms: u32) -> CniResultOf<bool> {
        self.record(format!("settle-addresses {timeout_ms}"));
        let mut s = self.host.state.borrow_mut();
        if let Some(addr) = &s.dad_failed {
            return Err(CniError::internal(format!(
                "link {} has address {addr} in DADFAILED state",
                s.ifname
            )));
        }
        if s.dad_pending > 0 {
            s.dad_pending -= 1;
            return Ok(false);
        }
        Ok(true)
    }

    fn spoofcheck_add(&self) -> CniResultOf<()> {
        self.record("spoofcheck-add".into());
        let Some(peer) = self.container_peer()? else {
            return Err(CniError::config(
                "cannot set up the MAC spoof check: CNI_IFNAME or its host veth does not exist",
            ));
        };
        let ifname = self.host.state.borrow().ifname.clone();
        let mac = self
            .netns
            .link_state(&ifname)
            .map(|l| l.mac)
            .unwrap_or_default();
        self.host.state.borrow_mut().spoofcheck = Some((peer.name, mac));
        Ok(())
    }

    fn spoofcheck_check(&self) -> CniResultOf<bool> {
        let Some(peer) = self.container_peer()? else {
            return Ok(false);
        };
        let ifname = self.host.state.borrow().ifname.clone();
        let mac = self.netns.link_state(&ifname).map(|l| l.mac);
        let s = self.host.state.borrow();
        Ok(s.spoofcheck.as_ref().is_some_and(|(v, m)| {
            *v == peer.name && mac.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m))
        }))
    }

    fn set_sysctl(&self, side: Side, key: &str, value: &str) -> CniResultOf<String> {
        self.record(format!("sysctl {:?} {key}={value}", side));
        let old = self.sysctl(side, key)?;
        self.host
            .state
            .borrow_mut()
            .sysctls
            .insert((side == Side::Host, key.to_string()), value.to_string());
        Ok(old)
    }
}

impl HostNetCaps for FakeHost {
    type Scope = FakeScope;

    fn host_net(&mut self) -> CniResultOf<FakeScope> {
        // A fresh scope: veths created by an earlier call are no longer in it.
        self.host_net.state.borrow_mut().created.clear();
        Ok(FakeScope {
            host: self.host_net.clone(),
            netns: self.netns.clone(),
        })
    }

    fn masquerade_add(&mut self, addresses: &[IpNet]) -> CniResultOf<()> {
        self.host_net.masquerade_allowed(addresses)?;
        let mut s = self.host_net.state.borrow_mut();
        s.calls.push(format!(
            "masquerade-add {}",
            addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
        s.masq.extend(addresses.iter().copied());
        Ok(())
    }

    fn masquerade_del(&mut self) -> CniResultOf<()> {
        let mut s = self.host_net.state.borrow_mut();
        s.calls.push("masquerade-del".into());
        // Both backends, as the host does.
        s.masq.clear();
        s.masq_nft.clear();
        Ok(())
    }

    fn masquerade_check(&mut self, addresses: &[IpNet]) -> CniResultOf<bool> {
        let s = self.host_net.state.borrow();
        Ok(addresses.iter().all(|a| s.masq.contains(a)))
    }

    fn masquerade_add_in(&mut self, backend: MasqBackend, addresses: &[IpNet]) -> CniResultOf<()> {
        if backend == MasqBackend::Iptables {
            return self.masquerade_add(addresses);
        }
        self.host_net.masquerade_allowed(addresses)?;
        let mut s = self.host_net.state.borrow_mut();
        s.calls.push(format!(
            "masquerade-add-nft {}",
            addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
        s.masq_nft.extend(addresses.iter().copied());
        Ok(())
    }

    fn masquerade_check_in(
        &mut self,
        backend: MasqBackend,
        addresses: &[IpNet],
    ) -> CniResultOf<bool> {
        if backend == MasqBackend::Iptables {
            return self.masquerade_check(addresses);
        }
        let s = self.host_net.state.borrow();
        Ok(addresses.iter().all(|a| s.masq_nft.contains(a)))
    }

    fn spoofcheck_del(&mut self) -> CniResultOf<()> {
        let mut s = self.host_net.state.borrow_mut();
        s.calls.push("spoofcheck-del".into());
        s.spoofcheck = None;
        Ok(())
    }

    fn masquerade_gc(&mut self) -> CniResultOf<Vec<String>> {
        let mut s = self.host_net.state.borrow_mut();
        s.calls.push("masquerade-gc".into());
        Ok(std::mem::take(&mut s.masq_gc_answer))
    }

    fn masquerade_status(&mut self, backend: MasqBackend) -> CniResultOf<()> {
        let mut s = self.host_net.state.borrow_mut();
        s.calls.push(format!("masquerade-status {backend:?}"));
        match s.masq_unusable.get(&(backend == MasqBackend::Nftables)) {
            Some(m) => Err(CniError::new(code::NOT_AVAILABLE, m.clone())),
            None => Ok(()),
        }
    }

    /// A backend made unusable with `set_masquerade_unusable` is not
    /// supported either.
    fn backend_supported(&mut self, backend: MasqBackend) -> bool {
        let mut s = self.host_net.state.borrow_mut();
        s.calls.push(format!("backend-supported {backend:?}"));
        !s.masq_unusable
            .contains_key(&(backend == MasqBackend::Nftables))
    }
}
