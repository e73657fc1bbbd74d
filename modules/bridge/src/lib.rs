//! bridge: attaches the container to a Linux bridge on the host with a veth
//! pair, as the reference `bridge` plugin does (same config, same names,
//! same masquerade chain), through the host's scoped `host-net` capability.

use serde::Deserialize;
use serde_json::Value;
use wasm_cni_guest::host_net::util::{
    check_container, configure_iface, dns_of, gateway_of, gc_masquerade_and_ipam, ipam_type,
    random_veth_name, sysctl_best_effort,
};
use wasm_cni_guest::host_net::{
    BridgeConfig, HostScope, MasqBackend, PortConfig, Side, VethConfig, Vlan,
};
use wasm_cni_guest::prelude::*;

pub struct Bridge;

/// Index of the container interface in the result (bridge, host veth, container).
const CONTAINER_IF: u32 = 2;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VlanTrunk {
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
    id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct NetConf {
    #[serde(rename = "isGateway")]
    is_gw: bool,
    #[serde(rename = "isDefaultGateway")]
    is_default_gw: bool,
    force_address: bool,
    ip_masq: bool,
    ip_masq_backend: Option<String>,
    mtu: i64,
    hairpin_mode: bool,
    promisc_mode: bool,
    vlan: i64,
    vlan_trunk: Option<Vec<VlanTrunk>>,
    preserve_default_vlan: bool,
    #[serde(rename = "macspoofchk")]
    mac_spoof_chk: bool,
    #[serde(rename = "enabledad")]
    enable_dad: bool,
    disable_container_interface: bool,
    port_isolation: bool,
}

impl Default for NetConf {
    fn default() -> Self {
        NetConf {
            is_gw: false,
            is_default_gw: false,
            force_address: false,
            ip_masq: false,
            ip_masq_backend: None,
            mtu: 0,
            hairpin_mode: false,
            promisc_mode: false,
            vlan: 0,
            vlan_trunk: None,
            // The reference defaults this to true to keep its old behaviour.
            preserve_default_vlan: true,
            mac_spoof_chk: false,
            enable_dad: false,
            disable_container_interface: false,
            port_isolation: false,
        }
    }
}

const KEYS: &[&str] = &[
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "ipMasqBackend",
    "mtu",
    "hairpinMode",
    "promiscMode",
    "vlan",
    "vlanTrunk",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
    "minID",
    "maxID",
    "id",
];

/// The parsed configuration plus what is derived from it.
struct Conf {
    n: NetConf,
    mtu: Option<u32>,
    vlans: Vec<u16>,
    mac: Option<String>,
    ipam: String,
    /// `ipMasqBackend`; None: chosen on the node as upstream does.
    masq_backend: Option<MasqBackend>,
}

fn trunk_vlans(trunk: &Option<Vec<VlanTrunk>>) -> CniResultOf<Vec<u16>> {
    let Some(items) = trunk else {
        return Ok(Vec::new());
    };
    let valid = |v: i64| (1..=4094).contains(&v);
    let mut out = std::collections::BTreeSet::new();
    for t in items {
        match (t.min_id, t.max_id) {
            (Some(lo), Some(hi)) => {
                if !valid(lo) {
                    return Err(CniError::config("incorrect trunk minID parameter")
                        .with_details("minID must be 1-4094"));
                }
                if !valid(hi) {
                    return Err(CniError::config("incorrect trunk maxID parameter")
                        .with_details("maxID must be 1-4094"));
                }
                if hi < lo {
                    return Err(CniError::config(
                        "minID is greater than maxID in trunk parameter",
                    ));
                }
                out.extend((lo..=hi).filter_map(|v| u16::try_from(v).ok()));
            }
            (None, Some(_)) => {
                return Err(CniError::config(
                    "minID and maxID should be configured simultaneously, minID is missing",
                ))
            }
            (Some(_), None) => {
                return Err(CniError::config(
                    "minID and maxID should be configured simultaneously, maxID is missing",
                ))
            }
            (None, None) => {}
        }
        if let Some(id) = t.id {
            if !valid(id) {
                return Err(CniError::config("incorrect trunk id parameter")
                    .with_details("id must be 1-4094"));
            }
            out.extend(u16::try_from(id).ok());
        }
    }
    Ok(out.into_iter().collect())
}

/// The CNI_ARGS keys bridge reads; others need `IgnoreUnknown` (ADD and
/// CHECK, as upstream; DEL tears down whatever the args say).
const CNI_ARGS: &[&str] = &["MAC"];

/// MAC from CNI_ARGS `MAC`, then `args.cni.mac`, then `runtimeConfig.mac` (later wins).
fn requested_mac(inv: &Invocation) -> Option<String> {
    let mut mac = inv.arg("MAC").filter(|m| !m.is_empty()).map(String::from);
    if let Some(m) = get_ci(&inv.config, "args")
        .and_then(|a| get_ci(a, "cni"))
        .and_then(|c| get_ci(c, "mac"))
        .and_then(Value::as_str)
    {
        if !m.is_empty() {
            mac = Some(m.to_string());
        }
    }
    if let Some(m) = runtime_config(&inv.config, "mac").and_then(Value::as_str) {
        if !m.is_empty() {
            mac = Some(m.to_string());
        }
    }
    mac
}

fn load(inv: &Invocation) -> CniResultOf<Conf> {
    let mut v = inv.config.clone();
    if let Some(o) = v.as_object_mut() {
        // Only this plugin's own keys are decoded; the rest belongs to others.
        o.retain(|k, _| KEYS.iter().any(|n| n.eq_ignore_ascii_case(k)));
    }
    normalize_keys(&mut v, KEYS);
    let mut n: NetConf = decode("bridge", &v)?;
    if !(0..=4094).contains(&n.vlan) {
        return Err(CniError::config(format!(
            "invalid VLAN ID {} (must be between 0 and 4094)",
            n.vlan
        )));
    }
    let vlans = trunk_vlans(&n.vlan_trunk)?;
    if n.vlan > 0 && !vlans.is_empty() {
        return Err(CniError::config(
            "cannot set vlan and vlanTrunk at the same time",
        ));
    }
    if n.is_default_gw {
        n.is_gw = true;
    }
    if n.hairpin_mode && n.promisc_mode {
        return Err(CniError::config(
            "cannot set hairpin mode and promiscuous mode at the same time",
        ));
    }
    let ipam = ipam_type(&inv.config);
    if n.disable_container_interface && !ipam.is_empty() {
        return Err(
            CniError::config("cannot use IPAM when DisableContainerInterface flag is set")
                .with_details("remove ipam or disableContainerInterface"),
        );
    }
    let masq_backend = MasqBackend::configured(n.ip_masq_backend.as_deref())?;
    if n.vlan > 0 && n.is_gw {
        return Err(CniError::config("isGateway with vlan is not supported by this wasm-cni build")
            .with_details("the reference puts the gateway on a <bridge>.<vlan> veth pair in that vlan; this build does not implement it (it could not be tested: the test kernels lack bridge vlan filtering); drop isGateway or vlan"));
    }
    let mtu = match n.mtu {
        0 => None,
        m => Some(u32::try_from(m).map_err(|_| {
            CniError::config(format!("invalid mtu {m}"))
                .with_details("mtu must be a positive number")
        })?),
    };
    let vlan = n.vlan;
    Ok(Conf {
        n,
        mtu,
        vlans: if vlan > 0 { Vec::new() } else { vlans },
        mac: requested_mac(inv),
        ipam,
        masq_backend,
    })
}

fn net_err(what: &str) -> impl Fn(CniError) -> CniError + '_ {
    move |e| CniError {
        code: e.code,
        msg: format!("{what}: {}", e.msg),
        details: e.details,
    }
}

/// Puts `gw` on the bridge as the reference's ensureAddr does.
fn ensure_addr<S: HostScope>(scope: &S, br: &str, gw: IpNet, force: bool) -> CniResultOf<()> {
    for a in scope.addresses(br)? {
        if a.is_ipv4() != gw.is_ipv4() {
            continue;
        }
        if a == gw {
            return Ok(());
        }
        // IPv4: one address per bridge; IPv6: no overlapping subnets.
        if gw.is_ipv4() || a.contains(gw.addr) || gw.contains(a.addr) {
            if force {
                scope
                    .del_address(br, a)
                    .map_err(net_err(&format!("could not remove IP address from {br:?}")))?;
            } else {
                return Err(CniError::internal(format!(
                    "{br:?} already has an IP address different from {gw}"
                ))
                .with_details("set forceAddress to replace it, or use another subnet"));
            }
        }
    }
    match scope.add_address(br, gw) {
        Ok(()) => {}
        // A concurrent ADD on the same bridge added it first.
        Err(_) if scope.addresses(br)?.contains(&gw) => {}
        Err(e) => return Err(net_err(&format!("could not add IP address to {br:?}"))(e)),
    }
    // Pin the bridge MAC, or it follows the lowest port MAC as pods come and go.
    if let Some(l) = scope.link(br)? {
        scope
            .set_mac(br, &l.mac)
            .map_err(net_err("could not set bridge's mac"))?;
    }
    Ok(())
}

/// The default gateways and routes the reference's calcGateways derives.
fn calc_gateways(result: &mut CniResult, n: &NetConf) -> Vec<IpNet> {
    let mut gws = Vec::new();
    let mut default_found = [false, false];
    for ip in result.ips.iter_mut() {
        ip.interface = Some(CONTAINER_IF);
        if ip.gateway.is_none() && n.is_gw {
            ip.gateway = Some(gateway_of(&ip.address));
        }
        let fam = usize::from(!ip.address.is_ipv4());
        if n.is_default_gw && !default_found[fam] {
            let any = if ip.address.is_ipv4() {
                IpNet {
                    addr: [0, 0, 0, 0].into(),
                    prefix: 0,
                }
            } else {
                IpNet {
                    addr: std::net::Ipv6Addr::UNSPECIFIED.into(),
                    prefix: 0,
                }
            };
            if !result.routes.iter().any(|r| r.gw.is_some() && r.dst == any) {
                result.routes.push(Route::new(any, ip.gateway));
            }
            default_found[fam] = true;
        }
        if n.is_gw {
            if let Some(g) = ip.gateway {
                gws.push(IpNet {
                    addr: g,
                    prefix: ip.address.prefix,
                });
            }
        }
    }
    gws
}

/// Waits for the host veth to be operationally up (the reference's retries).
fn wait_port_up<S: HostScope>(scope: &S, name: &str) -> CniResultOf<HostLinkMac> {
    for (i, ms) in [0u64, 50, 500, 1000, 1000].iter().enumerate() {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
        let l = scope
            .link(name)?
            .ok_or_else(|| CniError::internal(format!("host veth {name} vanished")))?;
        if l.oper_up {
            return Ok(HostLinkMac(l.mac));
        }
        if i == 4 {
            return Err(CniError::internal("bridge port in error state")
                .with_details(format!("{name} did not come up")));
        }
    }
    Err(CniError::internal("bridge port in error state"))
}

struct HostLinkMac(String);

impl<H: InterfaceHost> Plugin<H> for Bridge {
    const KIND: PluginKind = PluginKind::Interface;

    fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
        let c = load(inv)?;
        // upstream (types.LoadArgs into MacEnvArgs): MAC, unless IgnoreUnknown
        inv.check_args(CNI_ARGS)?;
        let n = &c.n;
        let scope = host.host_net()?;
        let vlan_filtering = n.vlan != 0 || n.vlan_trunk.is_some();
        let br = scope
            .ensure_bridge(&BridgeConfig {
                mtu: c.mtu,
                promisc: n.promisc_mode,
                vlan_filtering,
            })
            .map_err(net_err(&format!(
                "failed to create bridge {:?}",
                scope.bridge_name()
            )))?;
        // We want to own the routes of the bridge.
        sysctl_best_effort(
            &scope,
            Side::Host,
            &format!("net/ipv6/conf/{}/accept_ra", br.name),
            "0",
        );

        let ns = host.container_netns()?;
        if ns.link(&inv.ifname)?.is_some() {
            return Err(CniError::internal(format!(
                "container veth name provided ({}) already exists",
                inv.ifname
            ))
            .with_details("choose another CNI_IFNAME or remove the interface"));
        }
        let mut hv = None;
        let mut last = None;
        for _ in 0..10 {
            let cfg = VethConfig {
                host_name: random_veth_name(),
                mtu: c.mtu,
                container_mac: c.mac.clone(),
            };
            match scope.create_veth(&cfg) {
                Ok(l) => {
                    hv = Some(l);
                    break;
                }
                // A host name collision: pick another, as the reference does.
                Err(e) if e.msg.contains("exists") && ns.link(&inv.ifname)?.is_none() => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        let hv =
            hv.ok_or_else(|| last.unwrap_or_else(|| CniError::internal("failed to create veth")))?;
        sysctl_best_effort(
            &scope,
            Side::Host,
            &format!("net/ipv6/conf/{}/accept_ra", hv.name),
            "0",
        );
        scope.set_link_up(&hv.name, true)?;
        scope.set_master(&hv.name).map_err(net_err(&format!(
            "failed to connect {:?} to bridge {}",
            hv.name, br.name
        )))?;
        scope
            .set_port(
                &hv.name,
                PortConfig {
                    hairpin: n.hairpin_mode,
                    isolated: n.port_isolation,
                },
            )
            .map_err(net_err(&format!(
                "failed to setup port flags for {}",
                hv.name
            )))?;
        if (n.vlan != 0 || !c.vlans.is_empty()) && !n.preserve_default_vlan {
            for v in scope.vlans(&hv.name)? {
                scope.del_vlan(&hv.name, v.vid).map_err(net_err(&format!(
                    "failed to remove default vlan on interface {:?}",
                    hv.name
                )))?;
            }
        }
        if n.vlan != 0 {
            let vid = u16::try_from(n.vlan).unwrap_or(0);
            scope
                .add_vlan(
                    &hv.name,
                    Vlan {
                        vid,
                        pvid: true,
                        untagged: true,
                    },
                )
                .map_err(net_err(&format!(
                    "failed to setup vlan tag on interface {:?}",
                    hv.name
                )))?;
        }
        for vid in &c.vlans {
            scope
                .add_vlan(
                    &hv.name,
                    Vlan {
                        vid: *vid,
                        pvid: false,
                        untagged: false,
                    },
                )
                .map_err(net_err(&format!(
                    "failed to setup vlan tag on interface {:?}",
                    hv.name
                )))?;
        }
        let cl = ns.link(&inv.ifname)?.ok_or_else(|| {
            CniError::internal(format!("container interface {} vanished", inv.ifname))
        })?;
        // As the reference: right after the veth, before IPAM. The host
        // derives the chains from container id + ifname, and takes the veth
        // and MAC from the kernel.
        if n.mac_spoof_chk {
            scope
                .spoofcheck_add()
                .map_err(net_err("failed to setup spoof-check"))?;
        }

        let mut result = CniResult {
            interfaces: vec![
                Interface {
                    name: br.name.clone(),
                    mac: br.mac.clone(),
                    ..Default::default()
                },
                Interface {
                    name: hv.name.clone(),
                    mac: hv.mac.clone(),
                    ..Default::default()
                },
                Interface {
                    name: inv.ifname.clone(),
                    mac: cl.mac.clone(),
                    sandbox: ns.path(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };

        if !c.ipam.is_empty() {
            let r = host
                .ipam(IpamCommand::Add)?
                .ok_or_else(|| CniError::internal("IPAM plugin returned no result"))?;
            result.ips = r.ips;
            result.routes = r.routes;
            result.dns = r.dns;
            if result.ips.is_empty() {
                return Err(CniError::internal("IPAM plugin returned missing IP config"));
            }
            let gws = calc_gateways(&mut result, n);
            let ifn = &inv.ifname;
            if n.enable_dad {
                sysctl_best_effort(
                    &scope,
                    Side::Container,
                    &format!("net/ipv6/conf/{ifn}/enhanced_dad"),
                    "1",
                );
                sysctl_best_effort(
                    &scope,
                    Side::Container,
                    &format!("net/ipv6/conf/{ifn}/accept_dad"),
                    "1",
                );
            } else {
                sysctl_best_effort(
                    &scope,
                    Side::Container,
                    &format!("net/ipv6/conf/{ifn}/accept_dad"),
                    "0",
                );
            }
            sysctl_best_effort(
                &scope,
                Side::Container,
                &format!("net/ipv4/conf/{ifn}/arp_notify"),
                "1",
            );
            configure_iface(&ns, &scope, ifn, &result, CONTAINER_IF)?;
            for gw in &gws {
                ensure_addr(&scope, &br.name, *gw, n.force_address)
                    .map_err(net_err("failed to set bridge addr"))?;
            }
            if gws.iter().any(|g| g.is_ipv4()) {
                scope
                    .set_sysctl(Side::Host, "net/ipv4/ip_forward", "1")
                    .map_err(net_err("failed to enable forwarding"))?;
            }
            if gws.iter().any(|g| !g.is_ipv4()) {
                scope
                    .set_sysctl(Side::Host, "net/ipv6/conf/all/forwarding", "1")
                    .map_err(net_err("failed to enable forwarding"))?;
            }
            if n.ip_masq {
                let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
                let backend = host.masquerade_backend(c.masq_backend);
                host.masquerade_add_in(backend, &addrs)?;
            }
        } else if !n.disable_container_interface {
            ns.set_link_up(&inv.ifname, true)
                .map_err(net_err(&format!("failed to set {:?} up", inv.ifname)))?;
        }

        // With the container side down the port cannot come up: nothing to wait for.
        if !n.disable_container_interface {
            result.interfaces[1].mac = wait_port_up(&scope, &hv.name)?.0;
        }
        if let Some(b) = scope.link(&br.name)? {
            result.interfaces[0].mac = b.mac;
        }
        if let Some(d) = dns_of(&inv.config) {
            result.dns = d;
        }
        Ok(result)
    }

    fn del(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let c = load(inv)?;
        let l3 = !c.ipam.is_empty();
        if !inv.netns.is_empty() {
            // Deleting the container end removes the host end too; a gone
            // netns or interface is fine (DEL is idempotent).
            let scope = host.host_net()?;
            scope.delete_container_link()?;
        }
        if l3 {
            host.ipam(IpamCommand::Del)?;
        }
        // Names derive from container id + ifname: works with the netns gone.
        if c.n.mac_spoof_chk {
            host.spoofcheck_del()?;
        }
        // The rules are named from network + container id (+ ifname): no
        // addresses needed, so this works with the netns gone and no
        // prevResult. Both backends go, as in the reference.
        if l3 && c.n.ip_masq {
            host.masquerade_del()?;
        }
        Ok(())
    }

    fn check(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let c = load(inv)?;
        inv.check_args(CNI_ARGS)?;
        if !c.ipam.is_empty() {
            host.ipam(IpamCommand::Check)?;
        }
        let prev = inv.prev_result.as_ref().ok_or_else(|| {
            CniError::config("Required prevResult missing")
                .with_details("CHECK needs the ADD result as prevResult")
        })?;
        let scope = host.host_net()?;
        let br_name = scope.bridge_name();
        let br_if = prev
            .interfaces
            .iter()
            .find(|i| i.name == br_name && i.sandbox.is_empty());
        let br = scope
            .link(&br_name)?
            .ok_or_else(|| CniError::internal(format!("bridge {br_name} not found")))?;
        if br.kind != "bridge" {
            return Err(CniError::internal(format!(
                "Interface {br_name} does not have link type of bridge"
            )));
        }
        if let Some(i) = br_if {
            if !i.mac.is_empty() && !i.mac.eq_ignore_ascii_case(&br.mac) {
                return Err(CniError::internal(format!(
                    "Bridge interface {br_name} Mac doesn't match: {}",
                    i.mac
                )));
            }
        }
        if br.promisc != c.n.promisc_mode {
            return Err(CniError::internal(format!("Bridge interface {br_name} configured Promisc Mode {} doesn't match current state: {}", c.n.promisc_mode, br.promisc)));
        }
        let peer = scope.container_peer()?.ok_or_else(|| {
            CniError::internal(format!("{} has no host veth peer", inv.ifname))
                .with_details("the veth pair is broken; run DEL and ADD again")
        })?;
        if peer.master != Some(br.index) {
            return Err(CniError::internal(format!(
                "host veth {} is not attached to bridge {br_name}",
                peer.name
            )));
        }
        if let Some(i) = prev
            .interfaces
            .iter()
            .find(|i| i.sandbox.is_empty() && i.name != br_name)
        {
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
        if c.n.mac_spoof_chk && !scope.spoofcheck_check()? {
            return Err(
                CniError::internal("MAC spoof check rules are missing").with_details(format!(
                    "the nftables chains of {} are gone or changed; run DEL and ADD again",
                    inv.ifname
                )),
            );
        }
        if c.n.ip_masq && !c.ipam.is_empty() {
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
    fn gc(host: &mut H, inv: &Invocation, _valid: &[Attachment]) -> CniResultOf<()> {
        if ipam_type(&inv.config).is_empty() {
            return Ok(());
        }
        gc_masquerade_and_ipam(host, "bridge")
    }

    /// Fails only for what fails every ADD: an invalid configuration, an
    /// unusable masquerade backend, or the IPAM plugin's own STATUS (never
    /// a full range: that is ADD's error).
    fn status(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let c = load(inv)?;
        if c.ipam.is_empty() {
            return Ok(());
        }
        if c.n.ip_masq {
            let backend = host.masquerade_backend(c.masq_backend);
            host.masquerade_status(backend)?;
        }
        host.ipam(IpamCommand::Status).map(drop)
    }
}

wasm_cni_guest::export_plugin!(Bridge);

#[cfg(test)]
mod tests;
