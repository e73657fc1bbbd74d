//! ptp: a point-to-point veth between host and container, routed rather
//! than bridged, as the reference `ptp` plugin does: the gateway lives on the
//! host end as a /32 (/128), the host routes the container address to its
//! veth, and the container reaches its subnet only through the gateway.

use serde::Deserialize;
use wasm_cni_guest::host_net::util::{
    check_container, configure_iface, dns_of, gateway_of, gc_masquerade_and_ipam, ipam_type,
    network_of, random_veth_name, sysctl_best_effort,
};
use wasm_cni_guest::host_net::{HostScope, MasqBackend, Side, VethConfig};
use wasm_cni_guest::prelude::*;

pub struct Ptp;

/// Index of the container interface in the result (host veth, container).
const CONTAINER_IF: u32 = 1;

/// Route scopes (rtnetlink's `rt_scope_t`).
const RT_SCOPE_LINK: u32 = 253;
const RT_SCOPE_HOST: u32 = 254;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct NetConf {
    ip_masq: bool,
    ip_masq_backend: Option<String>,
    mtu: i64,
}

const KEYS: &[&str] = &["ipMasq", "ipMasqBackend", "mtu"];

struct Conf {
    n: NetConf,
    mtu: Option<u32>,
    /// `ipMasqBackend`; None: chosen on the node as upstream does.
    masq_backend: Option<MasqBackend>,
}

fn load(inv: &Invocation) -> CniResultOf<Conf> {
    let mut v = inv.config.clone();
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| KEYS.iter().any(|n| n.eq_ignore_ascii_case(k)));
    }
    normalize_keys(&mut v, KEYS);
    let n: NetConf = decode("ptp", &v)?;
    let masq_backend = MasqBackend::configured(n.ip_masq_backend.as_deref())?;
    if ipam_type(&inv.config).is_empty() {
        return Err(CniError::config("ptp requires an IPAM plugin")
            .with_details("set ipam.type, e.g. host-local"));
    }
    let mtu = match n.mtu {
        0 => None,
        m => Some(u32::try_from(m).map_err(|_| {
            CniError::config(format!("invalid mtu {m}"))
                .with_details("mtu must be a positive number")
        })?),
    };
    Ok(Conf {
        n,
        mtu,
        masq_backend,
    })
}

fn ctx(what: String) -> impl Fn(CniError) -> CniError {
    move |e| CniError {
        code: e.code,
        msg: format!("{what}: {}", e.msg),
        details: e.details,
    }
}

fn host_prefix(ip: &IpNet) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

impl<H: InterfaceHost> Plugin<H> for Ptp {
    const KIND: PluginKind = PluginKind::Interface;

    fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
        let c = load(inv)?;
        let ns = host.container_netns()?;
        if ns.link(&inv.ifname)?.is_some() {
            return Err(CniError::internal(format!(
                "container veth name provided ({}) already exists",
                inv.ifname
            ))
            .with_details("choose another CNI_IFNAME or remove the interface"));
        }
        // IPAM first, as the reference does; the host releases it if ADD fails.
        let mut result = host
            .ipam(IpamCommand::Add)?
            .ok_or_else(|| CniError::internal("IPAM plugin returned no result"))?;
        if result.ips.is_empty() {
            return Err(CniError::internal("IPAM plugin returned missing IP config"));
        }
        for ip in result.ips.iter_mut() {
            ip.interface = Some(CONTAINER_IF);
            if ip.gateway.is_none() {
                ip.gateway = Some(gateway_of(&ip.address));
            }
        }
        let scope = host.host_net()?;
        if result.ips.iter().any(|i| i.address.is_ipv4()) {
            scope
                .set_sysctl(Side::Host, "net/ipv4/ip_forward", "1")
                .map_err(ctx("failed to enable forwarding".into()))?;
        }
        if result.ips.iter().any(|i| !i.address.is_ipv4()) {
            scope
                .set_sysctl(Side::Host, "net/ipv6/conf/all/forwarding", "1")
                .map_err(ctx("failed to enable forwarding".into()))?;
        }

        let mut hv = None;
        let mut last = None;
        for _ in 0..10 {
            match scope.create_veth(&VethConfig {
                host_name: random_veth_name(),
                mtu: c.mtu,
                container_mac: None,
            }) {
                Ok(l) => {
                    hv = Some(l);
                    break;
                }
                Err(e) if e.msg.contains("exists") && ns.link(&inv.ifname)?.is_none() => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        let hv =
            hv.ok_or_else(|| last.unwrap_or_else(|| CniError::internal("failed to create veth")))?;
        let ifn = &inv.ifname;
        sysctl_best_effort(
            &scope,
            Side::Host,
            &format!("net/ipv6/conf/{}/accept_ra", hv.name),
            "0",
        );
        // Host-side /128 gateways must answer neighbour solicitations at once.
        sysctl_best_effort(
            &scope,
            Side::Host,
            &format!("net/ipv6/conf/{}/accept_dad", hv.name),
            "0",
        );
        sysctl_best_effort(
            &scope,
            Side::Container,
            &format!("net/ipv6/conf/{ifn}/accept_dad"),
            "0",
        );
        scope.set_link_up(&hv.name, true)?;

        // Container: addresses and IPAM routes, then swap the connected
        // subnet route for `gw/32 scope link` + `subnet via gw`.
        configure_iface(&ns, &scope, ifn, &result, CONTAINER_IF)?;
        for ip in &result.ips {
            let Some(gw) = ip.gateway else { continue };
            let subnet = network_of(&ip.address);
            if ip.address.prefix < host_prefix(&ip.address) {
                scope
                    .del_container_route(&Route::new(subnet, None))
                    .map_err(ctx(format!("failed to delete route {subnet}")))?;
            }
            let gw_net = IpNet {
                addr: gw,
                prefix: host_prefix(&ip.address),
            };
            // As upstream: both routes name the pod's address as their
            // source (`src`).
            let src = ip.address.addr;
            let mut on_link = Route::new(gw_net, None);
            on_link.scope = Some(RT_SCOPE_LINK);
            ns.add_route_from(ifn, &on_link, src)
                .map_err(ctx(format!("failed to add route {gw_net}")))?;
            if ip.address.prefix < host_prefix(&ip.address) {
                ns.add_route_from(ifn, &Route::new(subnet, Some(gw)), src)
                    .map_err(ctx(format!("failed to add route {subnet} via {gw}")))?;
            }
        }

        // Host: each gateway as a host address on the veth and a route back
        // to the container address.
        for ip in &result.ips {
            let Some(gw) = ip.gateway else { continue };
            let gw_net = IpNet {
                addr: gw,
                prefix: host_prefix(&ip.address),
            };
            scope.add_address(&hv.name, gw_net).map_err(ctx(format!(
                "failed to add gateway address {gw_net} to {}",
                hv.name
            )))?;
            let dst = IpNet {
                addr: ip.address.addr,
                prefix: host_prefix(&ip.address),
            };
            // Scope host, as upstream's `ip.AddHostRoute`.
            let mut r = Route::new(dst, None);
            r.scope = Some(RT_SCOPE_HOST);
            scope.add_route(&hv.name, &r).map_err(ctx(format!(
                "failed to add host route {dst} dev {}",
                hv.name
            )))?;
        }

        if c.n.ip_masq {
            let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
            let backend = host.masquerade_backend(c.masq_backend);
            host.masquerade_add_in(backend, &addrs)?;
        }
        let cl = ns
            .link(ifn)?
            .ok_or_else(|| CniError::internal(format!("container interface {ifn} vanished")))?;
        let hv_now = scope.link(&hv.name)?.unwrap_or(hv);
        result.interfaces = vec![
            Interface {
                name: hv_now.name,
                mac: hv_now.mac,
                ..Default::default()
            },
            Interface {
                name: ifn.clone(),
                mac: cl.mac,
                sandbox: ns.path(),
                ..Default::default()
            },
        ];
        if let Some(d) = dns_of(&inv.config) {
            result.dns = d;
        }
        Ok(result)
    }

    fn del(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let c = load(inv)?;
        host.ipam(IpamCommand::Del)?;
        if !inv.netns.is_empty() {
            host.host_net()?.delete_container_link()?;
        }
        if c.n.ip_masq {
            host.masquerade_del()?;
        }
        Ok(())
    }

    fn check(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let c = load(inv)?;
        host.ipam(IpamCommand::Check)?;
        let prev = inv.prev_result.as_ref().ok_or_else(|| {
            CniError::config("Required prevResult missing")
                .with_details("CHECK needs the ADD result as prevResult")
        })?;
        let scope = host.host_net()?;
        let peer = scope.container_peer()?.ok_or_else(|| {
            CniError::internal(format!("{} has no host veth peer", inv.ifname))
                .with_details("the veth pair is broken; run DEL and ADD again")
        })?;
        if let Some(i) = prev.interfaces.iter().find(|i| i.sandbox.is_empty()) {
            if i.name != peer.name {
                return Err(CniError::internal(format!(
                    "host veth {} does not match prevResult {}",
                    peer.name, i.name
                )));
            }
        }
        let ns = host.container_netns()?;
        let index = prev
            .interfaces
            .iter()
            .position(|i| i.name == inv.ifname && !i.sandbox.is_empty())
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(CONTAINER_IF);
        check_container(&ns, &inv.ifname, prev, index)?;
        if c.n.ip_masq {
            let addrs: Vec<IpNet> = prev.ips.iter().map(|i| i.address).collect();
            let backend = host.masquerade_backend(c.masq_backend);
            if !host.masquerade_check_in(backend, &addrs)? {
                return Err(CniError::internal("masquerade rules are missing")
                    .with_details("run ADD again"));
            }
        }
        Ok(())
    }

    /// The host removes the masquerade rules of unlisted attachments, the
    /// IPAM plugin their addresses (under its network's lock).
    fn gc(host: &mut H, _inv: &Invocation, _valid: &[Attachment]) -> CniResultOf<()> {
        gc_masquerade_and_ipam(host, "ptp")
    }

    /// Fails only for what fails every ADD: an invalid configuration, an
    /// unusable masquerade backend, or the IPAM plugin's own STATUS.
    fn status(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let c = load(inv)?;
        if c.n.ip_masq {
            let backend = host.masquerade_backend(c.masq_backend);
            host.masquerade_status(backend)?;
        }
        host.ipam(IpamCommand::Status).map(drop)
    }
}

wasm_cni_guest::export_plugin!(Ptp);

#[cfg(test)]
mod tests;
