//! The `host-net` capability (wit/host-net.wit) as a trait, with the real
//! implementation on [`crate::__private::WasmHost`] and a fake on
//! `testing::FakeHost`.
//!
//! The host scopes it to this invocation: the bridge named by the config's
//! `bridge` key (default `cni0`), host veth ends created through the scope
//! in this call, read-only the host peer of CNI_IFNAME, and CNI_IFNAME in
//! CNI_NETNS. Anything else is refused with a code-7 error.

use crate::types::*;

/// A host link as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLink {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub mtu: u32,
    /// administratively up
    pub up: bool,
    /// operationally up
    pub oper_up: bool,
    /// `bridge`, `veth`, ...
    pub kind: String,
    /// ifindex of the bridge this link is a port of
    pub master: Option<u32>,
    pub promisc: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeConfig {
    /// applied when the bridge is created
    pub mtu: Option<u32>,
    pub promisc: bool,
    pub vlan_filtering: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VethConfig {
    /// name of the host end; the container end is CNI_IFNAME
    pub host_name: String,
    pub mtu: Option<u32>,
    pub container_mac: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortConfig {
    pub hairpin: bool,
    pub isolated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vlan {
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
}

/// Where masquerade rules live (`ipMasqBackend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MasqBackend {
    /// The reference's default: a `CNI-<hash>` nat chain per attachment.
    #[default]
    Iptables,
    /// The reference's `inet cni_plugins_masquerade` table.
    Nftables,
}

impl MasqBackend {
    /// `ipMasqBackend` as Debian's 1.1.1 reference reads it: absent or empty
    /// is iptables; anything but `iptables`/`nftables` is a config error.
    pub fn from_config(v: Option<&str>) -> CniResultOf<MasqBackend> {
        Ok(Self::configured(v)?.unwrap_or_default())
    }

    /// `ipMasqBackend` as upstream (main) reads it: absent or empty is None,
    /// to be chosen on the node with [`HostNetCaps::masquerade_backend`].
    pub fn configured(v: Option<&str>) -> CniResultOf<Option<MasqBackend>> {
        match v {
            None | Some("") => Ok(None),
            Some("iptables") => Ok(Some(MasqBackend::Iptables)),
            Some("nftables") => Ok(Some(MasqBackend::Nftables)),
            Some(other) => Err(
                CniError::config(format!("unknown ipmasq backend {other:?}"))
                    .with_details("ipMasqBackend must be \"iptables\" or \"nftables\""),
            ),
        }
    }
}

/// Which namespace a sysctl lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    Container,
}

/// One invocation's host-side scope.
pub trait HostScope {
    /// The bridge this invocation may use.
    fn bridge_name(&self) -> String;
    /// Creates the bridge when absent; code 7 when the name is not a bridge.
    fn ensure_bridge(&self, config: &BridgeConfig) -> CniResultOf<HostLink>;
    fn link(&self, name: &str) -> CniResultOf<Option<HostLink>>;
    /// The host end of CNI_IFNAME's veth, None when gone.
    fn container_peer(&self) -> CniResultOf<Option<HostLink>>;
    /// Creates CNI_IFNAME in CNI_NETNS and its host end; returns the host end.
    fn create_veth(&self, config: &VethConfig) -> CniResultOf<HostLink>;
    /// Deletes CNI_IFNAME; returns its addresses (empty when netns or link is gone).
    fn delete_container_link(&self) -> CniResultOf<Vec<IpNet>>;
    fn set_link_up(&self, name: &str, up: bool) -> CniResultOf<()>;
    /// Enslaves a host veth to the bridge.
    fn set_master(&self, name: &str) -> CniResultOf<()>;
    fn set_port(&self, name: &str, config: PortConfig) -> CniResultOf<()>;
    fn set_promisc(&self, name: &str, on: bool) -> CniResultOf<()>;
    /// Setting the bridge's own MAC pins it (it no longer follows its ports).
    fn set_mac(&self, name: &str, mac: &str) -> CniResultOf<()>;
    fn vlans(&self, name: &str) -> CniResultOf<Vec<Vlan>>;
    fn add_vlan(&self, name: &str, vlan: Vlan) -> CniResultOf<()>;
    fn del_vlan(&self, name: &str, vid: u16) -> CniResultOf<()>;
    fn addresses(&self, name: &str) -> CniResultOf<Vec<IpNet>>;
    fn add_address(&self, name: &str, addr: IpNet) -> CniResultOf<()>;
    fn del_address(&self, name: &str, addr: IpNet) -> CniResultOf<()>;
    fn routes(&self, name: &str) -> CniResultOf<Vec<Route>>;
    fn add_route(&self, name: &str, route: &Route) -> CniResultOf<()>;
    /// Deletes a route through CNI_IFNAME in the container.
    fn del_container_route(&self, route: &Route) -> CniResultOf<()>;
    /// `key` relative to /proc/sys, e.g. `net/ipv4/ip_forward`.
    fn sysctl(&self, side: Side, key: &str) -> CniResultOf<String>;
    /// Writes a sysctl; returns the previous value.
    fn set_sysctl(&self, side: Side, key: &str, value: &str) -> CniResultOf<String>;
    /// Waits (bounded by the host) until no address of CNI_IFNAME is
    /// tentative; false when one still is at the end.
    fn settle_addresses(&self, timeout_ms: u32) -> CniResultOf<bool>;
    /// Installs the reference's MAC spoof check: frames from the host peer
    /// of CNI_IFNAME must carry CNI_IFNAME's MAC.
    fn spoofcheck_add(&self) -> CniResultOf<()>;
    /// Whether that spoof check is in place.
    fn spoofcheck_check(&self) -> CniResultOf<bool>;
}

/// Operations of the `host-net` capability.
pub trait HostNetCaps {
    type Scope: HostScope;

    /// This invocation's host-side scope.
    fn host_net(&mut self) -> CniResultOf<Self::Scope>;
    /// Masquerades each container address (with its subnet prefix) in the
    /// chain the host derives from network name and container id.
    fn masquerade_add(&mut self, addresses: &[IpNet]) -> CniResultOf<()>;
    /// Removes this attachment's masquerade rules; needs nothing else.
    fn masquerade_del(&mut self) -> CniResultOf<()>;
    fn masquerade_check(&mut self, addresses: &[IpNet]) -> CniResultOf<bool>;
    /// `masquerade_add` in the given backend.
    fn masquerade_add_in(&mut self, backend: MasqBackend, addresses: &[IpNet]) -> CniResultOf<()>;
    /// `masquerade_check` in the given backend.
    fn masquerade_check_in(
        &mut self,
        backend: MasqBackend,
        addresses: &[IpNet],
    ) -> CniResultOf<bool>;
    /// Removes this attachment's spoof check; needs nothing else.
    fn spoofcheck_del(&mut self) -> CniResultOf<()>;
    /// GC only: removes the masquerade rules (both backends) of this
    /// network's attachments missing from the runtime's valid list, which
    /// the host reads itself. Returns what was removed, for the log.
    fn masquerade_gc(&mut self) -> CniResultOf<Vec<String>>;
    /// STATUS: whether masquerade rules can be written in `backend` on this
    /// node; code 50 with what failed when not.
    fn masquerade_status(&mut self, backend: MasqBackend) -> CniResultOf<()>;
    /// Whether `backend` can be used on this node at all (upstream's probe,
    /// answered by the host).
    fn backend_supported(&mut self, backend: MasqBackend) -> bool;

    /// The backend to use: the configured one, else upstream's default
    /// (`SetupIPMasqForNetworks` with no backend): iptables, unless it is
    /// unusable and nftables works.
    fn masquerade_backend(&mut self, configured: Option<MasqBackend>) -> MasqBackend {
        configured.unwrap_or_else(|| {
            if !self.backend_supported(MasqBackend::Iptables)
                && self.backend_supported(MasqBackend::Nftables)
            {
                MasqBackend::Nftables
            } else {
                MasqBackend::Iptables
            }
        })
    }
}

/// Helpers shared by veth-based interface modules (bridge, ptp), following
/// the reference's `pkg/ip` and `pkg/ipam` behaviour.
pub mod util {
    use std::hash::{BuildHasher, Hasher};
    use std::net::IpAddr;

    use super::{HostScope, Side};
    use crate::types::*;
    use crate::Netns;

    /// How long `configure_iface` waits for IPv6 DAD: upstream's
    /// `dadSettleTimeout`.
    pub const DAD_SETTLE_MS: u32 = 5_000;

    /// `veth` + 8 random hex digits, as the reference names host ends.
    pub fn random_veth_name() -> String {
        // RandomState is seeded from the platform's randomness (WASI random
        // in a module), which is all a name needs.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        format!("veth{:08x}", h.finish() as u32)
    }

    /// The address after the network address: the reference's default gateway.
    pub fn gateway_of(net: &IpNet) -> IpAddr {
        match net.network() {
            IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add(1).into()),
            IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(1).into()),
        }
    }

    /// The network of `net` with its prefix (`10.1.2.0/24`).
    pub fn network_of(net: &IpNet) -> IpNet {
        IpNet {
            addr: net.network(),
            prefix: net.prefix,
        }
    }

    /// Configures CNI_IFNAME from a result as the reference's
    /// `ipam.ConfigureIface`: the addresses whose `interface` is `index`, IPv6
    /// enabled when needed, link up, then every route (gateway defaulting to
    /// the first gateway of its family).
    pub fn configure_iface<N: Netns, S: HostScope>(
        ns: &N,
        scope: &S,
        ifname: &str,
        result: &CniResult,
        index: u32,
    ) -> CniResultOf<()> {
        let ips: Vec<&IpConfig> = result
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(index))
            .collect();
        if ips.iter().any(|ip| !ip.address.is_ipv4()) {
            // Best effort, like the reference: some kernels boot with IPv6 off.
            for link in [ifname, "lo"] {
                let _ = scope.set_sysctl(
                    Side::Container,
                    &format!("net/ipv6/conf/{link}/disable_ipv6"),
                    "0",
                );
            }
            let _ = scope.set_sysctl(
                Side::Container,
                &format!("net/ipv6/conf/{ifname}/keep_addr_on_down"),
                "1",
            );
        }
        for ip in &ips {
            ns.add_address(ifname, ip.address).map_err(|e| {
                CniError::internal(format!(
                    "failed to add IP addr {} to {ifname:?}",
                    ip.address
                ))
                .with_details(e.to_string())
            })?;
        }
        ns.set_link_up(ifname, true).map_err(|e| {
            CniError::internal(format!("failed to set {ifname:?} UP")).with_details(e.to_string())
        })?;
        // As upstream (since v1.7.0): with an IPv6 gateway, wait for DAD to
        // finish, 5 s at most (cut by the host to fit the deadline); an
        // address still tentative then, or one that failed DAD, fails the
        // ADD. The reference 1.1.1 waited 10 s and ignored both.
        if ips.iter().any(|ip| ip.gateway.is_some_and(|g| g.is_ipv6())) {
            let settle_failed = |why: String| {
                CniError::internal(format!("failed to settle addresses for {ifname:?}: {why}"))
            };
            match scope.settle_addresses(DAD_SETTLE_MS) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(settle_failed(format!(
                        "link {ifname} still has tentative addresses after {} seconds",
                        DAD_SETTLE_MS / 1000
                    )))
                }
                Err(e) => return Err(settle_failed(e.msg.clone()).with_details(e.details)),
            }
        }
        let gw4 = ips
            .iter()
            .find(|ip| ip.address.is_ipv4())
            .and_then(|ip| ip.gateway);
        let gw6 = ips
            .iter()
            .find(|ip| !ip.address.is_ipv4())
            .and_then(|ip| ip.gateway);
        for r in &result.routes {
            let mut r = r.clone();
            if r.gw.is_none() {
                r.gw = if r.dst.is_ipv4() { gw4 } else { gw6 };
            }
            ns.add_route(ifname, &r).map_err(|e| {
                CniError::internal(format!("failed to add route {}", r.dst))
                    .with_details(e.to_string())
            })?;
        }
        Ok(())
    }

    /// CHECK of the container interface against prevResult: it exists, its
    /// MAC matches, every address pointing at `index` is on it and every
    /// route of the result is in its routes.
    pub fn check_container<N: Netns>(
        ns: &N,
        ifname: &str,
        prev: &CniResult,
        index: u32,
    ) -> CniResultOf<()> {
        let link = ns.link(ifname)?.ok_or_else(|| {
            CniError::internal(format!("container interface {ifname} not found"))
                .with_details("run ADD again")
        })?;
        if let Some(i) = prev.interfaces.get(index as usize) {
            if i.name != ifname {
                return Err(CniError::internal(format!(
                    "prevResult interface {index} is {:?}, not {ifname:?}",
                    i.name
                )));
            }
            if !i.mac.is_empty() && !i.mac.eq_ignore_ascii_case(&link.mac) {
                return Err(CniError::internal(format!(
                    "interface {ifname} MAC {} does not match prevResult {}",
                    link.mac, i.mac
                )));
            }
        }
        let have = ns.addresses(ifname)?;
        for ip in prev.ips.iter().filter(|ip| ip.interface == Some(index)) {
            if !have.contains(&ip.address) {
                return Err(CniError::internal(format!(
                    "address {} not found on {ifname}",
                    ip.address
                ))
                .with_details("the container interface lost an address; run ADD again"));
            }
        }
        let routes = ns.routes(ifname)?;
        for want in &prev.routes {
            let found = routes.iter().any(|r| {
                r.dst.network() == want.dst.network()
                    && r.dst.prefix == want.dst.prefix
                    && (want.gw.is_none() || r.gw == want.gw)
            });
            if !found {
                return Err(CniError::internal(format!(
                    "route {} not found on {ifname}",
                    want.dst
                ))
                .with_details("the container lost a route; run ADD again"));
            }
        }
        Ok(())
    }

    /// The `dns` section of a network config, when it sets anything.
    pub fn dns_of(config: &serde_json::Value) -> Option<Dns> {
        let d = crate::config::get_ci(config, "dns")?;
        let list = |k: &str| -> Vec<String> {
            crate::config::get_ci(d, k)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let dns = Dns {
            nameservers: list("nameservers"),
            domain: crate::config::get_ci(d, "domain")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            search: list("search"),
            options: list("options"),
        };
        (dns != Dns::default()).then_some(dns)
    }

    /// The `ipam.type` of a network config (empty: L2 only).
    /// GC of a veth plugin with an IPAM plugin (bridge, ptp): the host
    /// removes the masquerade rules of the network's attachments missing
    /// from the runtime's valid list (whatever `ipMasq` says now: an earlier
    /// configuration may have installed them), then the IPAM plugin gets the
    /// GC with that list. Both run; the first error is returned.
    pub fn gc_masquerade_and_ipam<H: crate::InterfaceHost>(
        host: &mut H,
        plugin: &str,
    ) -> CniResultOf<()> {
        let masq = host.masquerade_gc();
        if let Ok(removed) = &masq {
            if !removed.is_empty() {
                host.log(
                    Level::Info,
                    &format!("{plugin}: GC removed {}", removed.join(", ")),
                );
            }
        }
        let ipam = host.ipam(crate::IpamCommand::Gc);
        masq.map(drop).and(ipam.map(drop))
    }

    pub fn ipam_type(config: &serde_json::Value) -> String {
        crate::config::get_ci(config, "ipam")
            .and_then(|i| crate::config::get_ci(i, "type"))
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Best-effort sysctls: the reference ignores their errors too.
    pub fn sysctl_best_effort<S: HostScope>(scope: &S, side: Side, key: &str, value: &str) {
        let _ = scope.set_sysctl(side, key, value);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_and_gateways() {
            let n = random_veth_name();
            assert_eq!(n.len(), 12);
            assert!(n.starts_with("veth") && n[4..].chars().all(|c| c.is_ascii_hexdigit()));
            let a: IpNet = "10.22.3.7/16".parse().expect("net");
            assert_eq!(gateway_of(&a).to_string(), "10.22.0.1");
            assert_eq!(network_of(&a).to_string(), "10.22.0.0/16");
            let b: IpNet = "fd00:1::9/64".parse().expect("net");
            assert_eq!(gateway_of(&b).to_string(), "fd00:1::1");
        }
    }
}

mod real {
    use super::*;
    use crate::__private::bindings::cni::plugin::host_net as wit;
    use crate::__private::bindings::cni::plugin::types as witt;

    fn err(e: witt::CniError) -> CniError {
        CniError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }
    }

    fn bad(what: &str, v: &str, e: String) -> CniError {
        CniError::internal(format!("host returned an invalid {what} {v:?}")).with_details(e)
    }

    fn net(what: &str, s: &str) -> CniResultOf<IpNet> {
        s.parse().map_err(|e| bad(what, s, e))
    }

    fn link(l: wit::HostLink) -> HostLink {
        HostLink {
            name: l.name,
            index: l.index,
            mac: l.mac,
            mtu: l.mtu,
            up: l.up,
            oper_up: l.oper_up,
            kind: l.kind,
            master: l.master,
            promisc: l.promisc,
        }
    }

    fn side(s: Side) -> wit::Side {
        match s {
            Side::Host => wit::Side::Host,
            Side::Container => wit::Side::Container,
        }
    }

    fn route_to(r: &Route) -> witt::Route {
        witt::Route {
            dst: r.dst.to_string(),
            gw: r.gw.map(|g| g.to_string()),
            mtu: r.mtu,
            advmss: r.advmss,
            priority: r.priority,
            table: r.table,
            scope: r.scope,
        }
    }

    fn route_from(r: witt::Route) -> CniResultOf<Route> {
        Ok(Route {
            dst: net("route destination", &r.dst)?,
            gw: match r.gw {
                Some(g) => Some(
                    g.parse()
                        .map_err(|_| bad("route gateway", &g, "not an IP address".into()))?,
                ),
                None => None,
            },
            mtu: r.mtu,
            advmss: r.advmss,
            priority: r.priority,
            table: r.table,
            scope: r.scope,
        })
    }

    /// The host's `scope` resource.
    pub struct WasmScope(wit::Scope);

    impl HostScope for WasmScope {
        fn bridge_name(&self) -> String {
            self.0.bridge_name()
        }
        fn ensure_bridge(&self, c: &BridgeConfig) -> CniResultOf<HostLink> {
            self.0
                .ensure_bridge(wit::BridgeConfig {
                    mtu: c.mtu,
                    promisc: c.promisc,
                    vlan_filtering: c.vlan_filtering,
                })
                .map(link)
                .map_err(err)
        }
        fn link(&self, name: &str) -> CniResultOf<Option<HostLink>> {
            self.0.link(name).map(|l| l.map(link)).map_err(err)
        }
        fn container_peer(&self) -> CniResultOf<Option<HostLink>> {
            self.0.container_peer().map(|l| l.map(link)).map_err(err)
        }
        fn create_veth(&self, c: &VethConfig) -> CniResultOf<HostLink> {
            self.0
                .create_veth(&wit::VethConfig {
                    host_name: c.host_name.clone(),
                    mtu: c.mtu,
                    container_mac: c.container_mac.clone(),
                })
                .map(link)
                .map_err(err)
        }
        fn delete_container_link(&self) -> CniResultOf<Vec<IpNet>> {
            self.0
                .delete_container_link()
                .map_err(err)?
                .iter()
                .map(|a| net("address", a))
                .collect()
        }
        fn set_link_up(&self, name: &str, up: bool) -> CniResultOf<()> {
            self.0.set_link_up(name, up).map_err(err)
        }
        fn set_master(&self, name: &str) -> CniResultOf<()> {
            self.0.set_master(name).map_err(err)
        }
        fn set_port(&self, name: &str, c: PortConfig) -> CniResultOf<()> {
            self.0
                .set_port(
                    name,
                    wit::PortConfig {
                        hairpin: c.hairpin,
                        isolated: c.isolated,
                    },
                )
                .map_err(err)
        }
        fn set_promisc(&self, name: &str, on: bool) -> CniResultOf<()> {
            self.0.set_promisc(name, on).map_err(err)
        }
        fn set_mac(&self, name: &str, mac: &str) -> CniResultOf<()> {
            self.0.set_mac(name, mac).map_err(err)
        }
        fn vlans(&self, name: &str) -> CniResultOf<Vec<Vlan>> {
            Ok(self
                .0
                .vlans(name)
                .map_err(err)?
                .into_iter()
                .map(|v| Vlan {
                    vid: v.vid,
                    pvid: v.pvid,
                    untagged: v.untagged,
                })
                .collect())
        }
        fn add_vlan(&self, name: &str, v: Vlan) -> CniResultOf<()> {
            self.0
                .add_vlan(
                    name,
                    wit::Vlan {
                        vid: v.vid,
                        pvid: v.pvid,
                        untagged: v.untagged,
                    },
                )
                .map_err(err)
        }
        fn del_vlan(&self, name: &str, vid: u16) -> CniResultOf<()> {
            self.0.del_vlan(name, vid).map_err(err)
        }
        fn addresses(&self, name: &str) -> CniResultOf<Vec<IpNet>> {
            self.0
                .addresses(name)
                .map_err(err)?
                .iter()
                .map(|a| net("address", a))
                .collect()
        }
        fn add_address(&self, name: &str, addr: IpNet) -> CniResultOf<()> {
            self.0.add_address(name, &addr.to_string()).map_err(err)
        }
        fn del_address(&self, name: &str, addr: IpNet) -> CniResultOf<()> {
            self.0.del_address(name, &addr.to_string()).map_err(err)
        }
        fn routes(&self, name: &str) -> CniResultOf<Vec<Route>> {
            self.0
                .routes(name)
                .map_err(err)?
                .into_iter()
                .map(route_from)
                .collect()
        }
        fn add_route(&self, name: &str, route: &Route) -> CniResultOf<()> {
            self.0.add_route(name, &route_to(route)).map_err(err)
        }
        fn del_container_route(&self, route: &Route) -> CniResultOf<()> {
            self.0.del_container_route(&route_to(route)).map_err(err)
        }
        fn sysctl(&self, s: Side, key: &str) -> CniResultOf<String> {
            self.0.sysctl(side(s), key).map_err(err)
        }
        fn set_sysctl(&self, s: Side, key: &str, value: &str) -> CniResultOf<String> {
            self.0.set_sysctl(side(s), key, value).map_err(err)
        }
        fn settle_addresses(&self, timeout_ms: u32) -> CniResultOf<bool> {
            self.0.settle_addresses(timeout_ms).map_err(err)
        }
        fn spoofcheck_add(&self) -> CniResultOf<()> {
            self.0.spoofcheck_add().map_err(err)
        }
        fn spoofcheck_check(&self) -> CniResultOf<bool> {
            self.0.spoofcheck_check().map_err(err)
        }
    }

    fn backend(b: MasqBackend) -> wit::MasqBackend {
        match b {
            MasqBackend::Iptables => wit::MasqBackend::Iptables,
            MasqBackend::Nftables => wit::MasqBackend::Nftables,
        }
    }

    impl HostNetCaps for crate::wasm_host::WasmHost {
        type Scope = WasmScope;

        fn host_net(&mut self) -> CniResultOf<WasmScope> {
            wit::open().map(WasmScope).map_err(err)
        }
        fn masquerade_add(&mut self, addresses: &[IpNet]) -> CniResultOf<()> {
            let a: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
            wit::masquerade_add(&a).map_err(err)
        }
        fn masquerade_del(&mut self) -> CniResultOf<()> {
            wit::masquerade_del().map_err(err)
        }
        fn masquerade_check(&mut self, addresses: &[IpNet]) -> CniResultOf<bool> {
            let a: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
            wit::masquerade_check(&a).map_err(err)
        }
        fn masquerade_add_in(&mut self, b: MasqBackend, addresses: &[IpNet]) -> CniResultOf<()> {
            let a: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
            wit::masquerade_add_in(backend(b), &a).map_err(err)
        }
        fn masquerade_check_in(
            &mut self,
            b: MasqBackend,
            addresses: &[IpNet],
        ) -> CniResultOf<bool> {
            let a: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
            wit::masquerade_check_in(backend(b), &a).map_err(err)
        }
        fn spoofcheck_del(&mut self) -> CniResultOf<()> {
            wit::spoofcheck_del().map_err(err)
        }
        fn masquerade_gc(&mut self) -> CniResultOf<Vec<String>> {
            wit::masquerade_gc().map_err(err)
        }
        fn masquerade_status(&mut self, b: MasqBackend) -> CniResultOf<()> {
            wit::masquerade_status(backend(b)).map_err(err)
        }
        fn backend_supported(&mut self, b: MasqBackend) -> bool {
            wit::backend_supported(backend(b))
        }
    }
}

pub use real::WasmScope;
