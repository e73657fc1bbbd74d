//! `host-net`: host-side networking for interface modules (see
//! wit/host-net.wit). The host decides the scope from the invocation alone —
//! CNI_NETNS, CNI_IFNAME, the config's `bridge` key, network name and
//! container id — and refuses everything outside it; how the links are
//! configured is the module's business.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use wasmtime::component::Resource;

use super::bindings::cni::plugin::host_net::{
    BridgeConfig, Host, HostLink, HostScope, MasqBackend, PortConfig, Side, VethConfig, Vlan,
};
use super::bindings::wit::{CniError, Route};
use super::host_scope;
use super::kernel_error;
use super::netns::{check_link_name, parse_cidr, route_from_wit, route_to_wit};
use super::resources::ScopeHandle;
use super::undo::{link_ref, LinkRef, Undo};
use super::CapsView;
use super::{cap_error, CallContext};
use crate::kernel::hostfw::Attachment;
use crate::kernel::masq::{self, MasqEntry};
use crate::kernel::{Dad, KernelError, LinkDetails, NetnsOps, PortFlags, PortVlan, VethSpec};
use crate::protocol::env::Command;
use crate::protocol::error::code;

/// The host network namespace: the calling thread's. Not `/proc/self`: that
/// is the main thread's, which may be inside a container netns for a moment
/// while a background teardown thread opens its socket. Every thread is
/// started from a thread in the host netns, so each one's own is the host's.
pub const HOST_NETNS: &str = crate::kernel::netlink::CURRENT_NETNS;
/// The reference bridge plugin's default bridge.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// `bridge` of the invocation's config (Go's decoder matches keys
/// case-insensitively), default cni0.
pub fn bridge_of(call: &CallContext) -> Result<String, CniError> {
    let config: serde_json::Value = serde_json::from_str(&call.invocation.config).map_err(|e| {
        cap_error(
            code::DECODING_FAILURE,
            "network configuration is not valid JSON",
            e.to_string(),
        )
    })?;
    let obj = config.as_object();
    let v = obj.and_then(|o| {
        o.get("bridge").or_else(|| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("bridge"))
                .map(|(_, v)| v)
        })
    });
    let name = match v {
        None | Some(serde_json::Value::Null) => DEFAULT_BRIDGE.to_string(),
        Some(serde_json::Value::String(s)) if s.is_empty() => DEFAULT_BRIDGE.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!("invalid bridge name {other}"),
                "`bridge` must be a link name string",
            ))
        }
    };
    check_link_name(&name)?;
    Ok(name)
}

fn out_of_scope(name: &str, bridge: &str, what: &str) -> CniError {
    cap_error(
        code::INVALID_NETWORK_CONFIG,
        format!("host link {name:?} is outside this invocation's scope"),
        format!("{what}: a module may only touch the bridge {bridge:?} (its config's `bridge` key), the host veth ends it created in this call and, read-only, the peer of CNI_IFNAME"),
    )
}

fn host_link(d: LinkDetails) -> HostLink {
    HostLink {
        name: d.info.name,
        index: d.info.index,
        mac: d.info.mac,
        mtu: d.info.mtu,
        up: d.info.up,
        oper_up: d.oper_up,
        kind: d.kind,
        master: d.master,
        promisc: d.promisc,
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], CniError> {
    let bad = || {
        cap_error(
            code::INVALID_NETWORK_CONFIG,
            format!("invalid MAC address {s:?}"),
            "expected six hex octets such as 02:42:ac:11:00:02",
        )
    };
    let mut out = [0u8; 6];
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn valid_key_component(c: &str) -> bool {
    !c.is_empty()
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

/// The link a per-interface sysctl key names, or None for the global
/// forwarding switches. Anything else is refused.
fn sysctl_link(key: &str) -> Result<Option<&str>, CniError> {
    let refuse = || {
        cap_error(
            code::INVALID_NETWORK_CONFIG,
            format!("sysctl {key:?} is outside the host-net capability"),
            "allowed: net/ipv4/ip_forward, net/ipv6/conf/all/forwarding, net/ipv4/conf/all/forwarding and net/ipv{4,6}/{conf,neigh}/<link>/<key> of links in scope",
        )
    };
    if matches!(
        key,
        "net/ipv4/ip_forward" | "net/ipv6/conf/all/forwarding" | "net/ipv4/conf/all/forwarding"
    ) {
        return Ok(None);
    }
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["net", "ipv4" | "ipv6", "conf" | "neigh", link, leaf]
            if check_link_name(link).is_ok() && valid_key_component(leaf) =>
        {
            Ok(Some(link))
        }
        _ => Err(refuse()),
    }
}

impl ScopeHandle {
    fn mutable(&self, name: &str, what: &str) -> Result<(), CniError> {
        check_link_name(name)?;
        if name == self.bridge || self.created.iter().any(|c| c == name) {
            Ok(())
        } else {
            Err(out_of_scope(name, &self.bridge, what))
        }
    }

    fn readable(&self, name: &str, what: &str) -> Result<(), CniError> {
        if self.peer.as_deref() == Some(name) {
            return Ok(());
        }
        self.mutable(name, what)
    }

    fn container(&mut self) -> Result<&mut Box<dyn NetnsOps>, CniError> {
        if self.container.is_none() {
            let path = &self.call.invocation.netns;
            if path.is_empty() {
                return Err(cap_error(
                    code::INVALID_ENVIRONMENT,
                    "this invocation has no network namespace",
                    "CNI_NETNS is empty",
                ));
            }
            let ops = self
                .call
                .kernels
                .netns
                .open_netns(path)
                .map_err(|e| kernel_error("opening the container network namespace", e))?;
            self.container = Some(ops);
        }
        self.container
            .as_mut()
            .ok_or_else(|| cap_error(code::INTERNAL, "container namespace unavailable", ""))
    }

    fn details(&mut self, name: &str) -> Result<HostLink, CniError> {
        match self.host.link_details(name) {
            Ok(Some(d)) => Ok(host_link(d)),
            Ok(None) => Err(cap_error(
                code::INTERNAL,
                format!("host link {name:?} vanished"),
                "it was just created or configured; another agent removed it",
            )),
            Err(e) => Err(kernel_error("reading host link", e)),
        }
    }

    fn container_peer(&mut self) -> Result<Option<HostLink>, CniError> {
        let ifname = self.call.invocation.ifname.clone();
        check_link_name(&ifname)?;
        let c = match self.container() {
            Ok(c) => c,
            Err(e) if e.code == code::UNKNOWN_CONTAINER || e.code == code::INVALID_ENVIRONMENT => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let Some(cl) = c
            .link_details(&ifname)
            .map_err(|e| kernel_error("reading the container interface", e))?
        else {
            return Ok(None);
        };
        let Some(peer_index) = cl.peer.filter(|_| cl.kind == "veth") else {
            return Ok(None);
        };
        let Some(h) = self
            .host
            .link_by_index(peer_index)
            .map_err(|e| kernel_error("reading the host peer", e))?
        else {
            return Ok(None);
        };
        // Both ends must point at each other, or this is not CNI_IFNAME's peer.
        if h.kind != "veth" || h.peer != Some(cl.info.index) {
            return Ok(None);
        }
        self.peer = Some(h.info.name.clone());
        Ok(Some(host_link(h)))
    }

    fn ensure_bridge(&mut self, config: BridgeConfig) -> Result<HostLink, CniError> {
        let br = self.bridge.clone();
        match self.host.add_bridge(&br, config.mtu, config.vlan_filtering) {
            Ok(()) => {}
            // Another ADD (or the admin) created it first: fine if it is a bridge.
            Err(e) if e.errno() == Some(Errno::EEXIST) => {}
            Err(e) => return Err(kernel_error(&format!("creating bridge {br}"), e)),
        }
        let d = self
            .host
            .link_details(&br)
            .map_err(|e| kernel_error("reading the bridge", e))?;
        let Some(d) = d else {
            return Err(cap_error(
                code::INTERNAL,
                format!("bridge {br:?} vanished after creation"),
                "another agent removed it; retry",
            ));
        };
        if d.kind != "bridge" {
            return Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!("{br:?} already exists but is not a bridge"),
                "choose another `bridge` name or remove that link",
            ));
        }
        if config.vlan_filtering {
            self.host
                .set_bridge_vlan_filtering(&br, true)
                .map_err(|e| kernel_error("enabling vlan filtering", e))?;
        }
        if config.promisc && !d.promisc {
            self.host
                .set_promisc(&br, true)
                .map_err(|e| kernel_error("setting promiscuous mode", e))?;
        }
        if !d.info.up {
            self.host
                .set_link_up(&br, true)
                .map_err(|e| kernel_error("bringing the bridge up", e))?;
        }
        self.details(&br)
    }

    fn create_veth(&mut self, config: VethConfig) -> Result<HostLink, CniError> {
        let name = config.host_name.clone();
        check_link_name(&name)?;
        let ifname = self.call.invocation.ifname.clone();
        check_link_name(&ifname)?;
        if name == self.bridge {
            return Err(out_of_scope(
                &name,
                &self.bridge,
                "a veth may not take the bridge's name",
            ));
        }
        let mac = config.container_mac.as_deref().map(parse_mac).transpose()?;
        self.call.charge(2, "creating a veth pair")?;
        // Opened first so a gone netns is reported as such (code 3).
        self.container()?;
        let spec = VethSpec {
            name: name.clone(),
            peer_name: ifname.clone(),
            peer_netns: Some(self.call.invocation.netns.clone()),
            mtu: config.mtu,
            peer_mac: mac,
        };
        self.host.add_veth(&spec).map_err(|e| match e {
            e if e.errno() == Some(Errno::EEXIST) => cap_error(
                code::INTERNAL,
                format!("cannot create veth {name}/{ifname}: a link of that name exists"),
                format!("{e}; the container may already have {ifname}, or the host name collided: retry"),
            ),
            e => kernel_error("creating the veth pair", e),
        })?;
        self.created.push(name.clone());
        // The details the module gets carry the ifindex the undo needs: one
        // lookup for both.
        let details = self.details(&name);
        match &details {
            Ok(d) => self.call.journal(Undo::DelHostLink {
                link: LinkRef {
                    netns: HOST_NETNS.to_string(),
                    name: name.clone(),
                    index: d.index,
                },
            }),
            Err(_) => tracing::warn!(link = %name, "a veth created by this call vanished at once"),
        }
        details
    }

    fn delete_container_link(&mut self) -> Result<Vec<String>, CniError> {
        let ifname = self.call.invocation.ifname.clone();
        check_link_name(&ifname)?;
        let c = match self.container() {
            Ok(c) => c,
            Err(e) if e.code == code::UNKNOWN_CONTAINER || e.code == code::INVALID_ENVIRONMENT => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        if c.link(&ifname)
            .map_err(|e| kernel_error("reading the container interface", e))?
            .is_none()
        {
            return Ok(Vec::new());
        }
        let addrs = c
            .addresses(&ifname)
            .map_err(|e| kernel_error("listing addresses", e))?;
        let delete = move |c: &mut Box<dyn NetnsOps>| match c.del_link(&ifname) {
            Ok(()) | Err(KernelError::NoSuchLink(_)) => Ok(()),
            Err(e) => Err(kernel_error("deleting the container interface", e)),
        };
        if self.call.command == Command::Del {
            // Nothing after this in a DEL needs the link gone: let the
            // deletion's grace period overlap the rest of the teardown.
            if let Some(mut c) = self.container.take() {
                self.call.defer(move || delete(&mut c));
            }
        } else {
            delete(self.container()?)?;
        }
        Ok(addrs
            .into_iter()
            .map(|a| format!("{}/{}", a.ip, a.prefix))
            .collect())
    }

    fn sysctl(&mut self, side: Side, key: &str, value: Option<&str>) -> Result<String, CniError> {
        let link = sysctl_link(key)?;
        if let Some(v) = value {
            if v.len() > 64 || v.contains(['\n', '\0']) {
                return Err(cap_error(
                    code::INVALID_NETWORK_CONFIG,
                    format!("invalid sysctl value {v:?}"),
                    "one line of at most 64 bytes",
                ));
            }
        }
        if let (Side::Host, None, Some(v)) = (side, link, value) {
            // Other pods route through these: a call may turn forwarding
            // on, never off.
            if v.trim() != "1" {
                return Err(cap_error(
                    code::INVALID_NETWORK_CONFIG,
                    format!("sysctl {key} may only be set to 1"),
                    "a plugin may turn the node's forwarding on, never off",
                ));
            }
        }
        let netns = match side {
            Side::Host => HOST_NETNS.to_string(),
            Side::Container => self.call.invocation.netns.clone(),
        };
        let ops = match side {
            Side::Host => {
                if let Some(l) = link {
                    let what = format!("sysctl {key}");
                    if value.is_some() {
                        self.mutable(l, &what)?;
                    } else {
                        self.readable(l, &what)?;
                    }
                }
                &mut self.host
            }
            Side::Container => {
                let ifname = self.call.invocation.ifname.clone();
                match link {
                    Some(l) if l == ifname || matches!(l, "lo" | "all" | "default") => {}
                    Some(_) | None => {
                        return Err(cap_error(
                            code::INVALID_NETWORK_CONFIG,
                            format!("container sysctl {key:?} is outside the host-net capability"),
                            format!("allowed: net/ipv{{4,6}}/{{conf,neigh}}/<{ifname}|lo|all|default>/<key>"),
                        ))
                    }
                }
                self.container()?
            }
        };
        let before = ops
            .sysctl(key, value)
            .map_err(|e| kernel_error(&format!("sysctl {key}"), e))?;
        if let Some(v) = value {
            if before.trim() != v.trim() {
                // A per-link key is the link's: undone only on that link.
                let link = link
                    .filter(|l| !matches!(*l, "all" | "default"))
                    .and_then(|l| link_ref(ops.as_mut(), &netns, l));
                self.call.journal(Undo::Sysctl {
                    netns,
                    key: key.to_string(),
                    value: before.trim().to_string(),
                    link,
                });
            }
        }
        Ok(before)
    }
}

/// Upper bound of one settle wait, whatever the module asks.
const SETTLE_MAX: Duration = Duration::from_secs(10);
/// How often a settle wait looks at the addresses (the reference's interval).
const SETTLE_INTERVAL: Duration = Duration::from_millis(50);

impl ScopeHandle {
    /// How long a settle wait may take: what the module asks, at most 10 s
    /// and at most 60% of the call's deadline (the module still has to
    /// finish after it).
    fn settle_budget(&self, timeout_ms: u32) -> Duration {
        let deadline = self.call.limits.deadline;
        Duration::from_millis(u64::from(timeout_ms))
            .min(SETTLE_MAX)
            .min(deadline.mul_f64(0.6))
    }

    fn settle_addresses(&mut self, timeout_ms: u32) -> Result<bool, CniError> {
        let ifname = self.call.invocation.ifname.clone();
        check_link_name(&ifname)?;
        let budget = self.settle_budget(timeout_ms);
        let start = Instant::now();
        let c = self.container()?;
        loop {
            let pending = c
                .unsettled_addresses(&ifname)
                .map_err(|e| kernel_error("listing the container interface's addresses", e))?;
            if pending.is_empty() {
                return Ok(true);
            }
            // Another node holds the address: waiting cannot settle it.
            if let Some((a, _)) = pending.iter().find(|(_, d)| *d == Dad::Failed) {
                return Err(cap_error(
                    code::INTERNAL,
                    format!(
                        "link {ifname} has address {} in DADFAILED state",
                        a.ip
                    ),
                    "another node on the link answered for this address (duplicate address detection failed)",
                ));
            }
            let left = budget.saturating_sub(start.elapsed());
            if left.is_zero() {
                tracing::info!(interface = %ifname, ?pending, waited_ms = budget.as_millis() as u64, "addresses still tentative");
                return Ok(false);
            }
            std::thread::sleep(SETTLE_INTERVAL.min(left));
        }
    }

    /// The host peer of CNI_IFNAME and CNI_IFNAME's MAC, None when either is gone.
    fn spoof_target(&mut self) -> Result<Option<(String, String)>, CniError> {
        let Some(peer) = self.container_peer()? else {
            return Ok(None);
        };
        let ifname = self.call.invocation.ifname.clone();
        let mac = self
            .container()?
            .link(&ifname)
            .map_err(|e| kernel_error("reading the container interface", e))?
            .map(|l| l.mac);
        Ok(mac.map(|m| (peer.name, m)))
    }

    fn spoofcheck_add(&mut self) -> Result<(), CniError> {
        let a = spoof_attachment(&self.call)?;
        let Some((veth, mac)) = self.spoof_target()? else {
            return Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!(
                    "cannot set up the MAC spoof check: {} or its host veth does not exist",
                    self.call.invocation.ifname
                ),
                "create the veth pair before calling spoofcheck-add",
            ));
        };
        let r = self
            .call
            .kernels
            .hostfw
            .spoofcheck_setup(&a, &veth, &mac)
            .map_err(|e| kernel_error("setting up the MAC spoof check", e));
        // Journaled even on failure: a half-applied batch is still ours to remove.
        self.call.journal(Undo::SpoofcheckDel);
        r
    }

    fn spoofcheck_check(&mut self) -> Result<bool, CniError> {
        let a = spoof_attachment(&self.call)?;
        let Some((veth, mac)) = self.spoof_target()? else {
            return Ok(false);
        };
        match self
            .call
            .kernels
            .hostfw
            .spoofcheck_check(&a, &veth, &mac)
            .map_err(|e| kernel_error("checking the MAC spoof check", e))?
        {
            None => Ok(true),
            Some(missing) => {
                tracing::info!(%missing, "spoof check incomplete");
                Ok(false)
            }
        }
    }
}

/// The attachment whose rules this invocation may touch.
pub fn attachment(call: &CallContext) -> Attachment {
    let inv = &call.invocation;
    Attachment {
        network: inv.network_name.clone(),
        container_id: inv.container_id.clone(),
        ifname: inv.ifname.clone(),
    }
}

fn unusable_names(m: String) -> CniError {
    cap_error(
        code::INVALID_NETWORK_CONFIG,
        "this attachment's names cannot be used in nftables rules",
        m,
    )
}

/// The attachment, when its spoof-check names are valid nft names.
fn spoof_attachment(call: &CallContext) -> Result<Attachment, CniError> {
    let a = attachment(call);
    a.spoof_names().map_err(unusable_names)?;
    Ok(a)
}

/// The attachment, when its masquerade comment can be written.
fn masq_attachment(call: &CallContext) -> Result<Attachment, CniError> {
    let a = attachment(call);
    a.masq_comment().map_err(unusable_names)?;
    Ok(a)
}

/// A missing `nft` binary means no nftables rules can exist: nothing to remove.
fn nft_absent(e: &KernelError) -> bool {
    matches!(e, KernelError::ToolMissing { tool, .. } if tool == "nft")
}

/// Removes the attachment's nftables masquerade rules (DEL and rollback).
pub fn nft_unmasquerade(call: &CallContext) -> Result<(), CniError> {
    // Found by the hash of the names alone: works whatever they contain.
    let a = attachment(call);
    match call.kernels.hostfw.masq_teardown(&a) {
        Ok(()) => Ok(()),
        Err(e) if nft_absent(&e) => Ok(()),
        Err(e) => Err(kernel_error("removing nftables masquerade", e)),
    }
}

/// Removes the attachment's spoof check (DEL and rollback).
pub fn spoofcheck_del(call: &CallContext) -> Result<(), CniError> {
    // Names nft cannot hold were never installed.
    let Ok(a) = spoof_attachment(call) else {
        return Ok(());
    };
    match call.kernels.hostfw.spoofcheck_teardown(&a) {
        Ok(()) => Ok(()),
        Err(e) if nft_absent(&e) => Ok(()),
        Err(e) => Err(kernel_error("removing the MAC spoof check", e)),
    }
}

fn masq_entries(addresses: &[String]) -> Result<Vec<MasqEntry>, CniError> {
    addresses
        .iter()
        .map(|a| {
            parse_cidr(a).map(|subnet| MasqEntry {
                ip: subnet.ip,
                subnet,
            })
        })
        .collect()
}

fn check_ips(addresses: &[String]) -> Result<Vec<IpAddr>, CniError> {
    addresses
        .iter()
        .map(|a| match a.split_once('/') {
            Some(_) => parse_cidr(a).map(|x| x.ip),
            None => a.parse::<IpAddr>().map_err(|_| {
                cap_error(
                    code::INVALID_NETWORK_CONFIG,
                    format!("invalid address {a:?}"),
                    "expected an IP address or CIDR",
                )
            }),
        })
        .collect()
}

fn masquerade_add(
    call: &CallContext,
    backend: MasqBackend,
    addresses: &[String],
) -> Result<(), CniError> {
    let entries = masq_entries(addresses)?;
    let ipam = call.ipam_ips();
    for e in &entries {
        host_scope::masquerade(&ipam, e.subnet)?;
    }
    match backend {
        MasqBackend::Iptables => {
            let (chain, comment) = masq_ids(call);
            let r = call
                .kernels
                .masq
                .setup(&chain, &comment, &entries)
                .map_err(|e| kernel_error("setting up masquerade", e));
            // Journaled even on failure: a half-applied batch is still ours to remove.
            call.journal(Undo::Unmasquerade { chain });
            r
        }
        MasqBackend::Nftables => {
            let a = masq_attachment(call)?;
            let r = call
                .kernels
                .hostfw
                .masq_setup(&a, &entries)
                .map_err(|e| kernel_error("setting up nftables masquerade", e));
            call.journal(Undo::UnmasqueradeNft);
            r
        }
    }
}

fn masquerade_check(
    call: &CallContext,
    backend: MasqBackend,
    addresses: &[String],
) -> Result<bool, CniError> {
    let ips = check_ips(addresses)?;
    match backend {
        MasqBackend::Iptables => {
            let (chain, _) = masq_ids(call);
            call.kernels
                .masq
                .check(&chain, &ips)
                .map_err(|e| kernel_error("checking masquerade", e))
        }
        MasqBackend::Nftables => {
            let a = attachment(call);
            call.kernels
                .hostfw
                .masq_check(&a, &ips)
                .map_err(|e| kernel_error("checking nftables masquerade", e))
        }
    }
}

fn parse_vlan(v: &Vlan) -> Result<PortVlan, CniError> {
    if v.vid == 0 || v.vid > 4094 {
        return Err(cap_error(
            code::INVALID_NETWORK_CONFIG,
            format!("invalid vlan id {}", v.vid),
            "a vlan id is 1-4094",
        ));
    }
    Ok(PortVlan {
        vid: v.vid,
        pvid: v.pvid,
        untagged: v.untagged,
    })
}

fn masq_ids(call: &CallContext) -> (String, String) {
    let inv = &call.invocation;
    (
        masq::chain_name(&inv.network_name, &inv.container_id),
        masq::comment(&inv.network_name, &inv.container_id),
    )
}

impl Host for CapsView<'_> {
    fn open(&mut self) -> wasmtime::Result<Result<Resource<ScopeHandle>, CniError>> {
        let call = self.call.clone();
        let bridge = match bridge_of(&call) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let host = match call.kernels.netns.open_netns(HOST_NETNS) {
            Ok(h) => h,
            Err(e) => return Ok(Err(kernel_error("opening the host network namespace", e))),
        };
        let handle = ScopeHandle {
            call,
            bridge,
            host,
            container: None,
            created: Vec::new(),
            peer: None,
        };
        Ok(Ok(self.table.push(handle)?))
    }

    fn masquerade_add(&mut self, addresses: Vec<String>) -> wasmtime::Result<Result<(), CniError>> {
        self.masquerade_add_in(MasqBackend::Iptables, addresses)
    }

    fn masquerade_del(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        // Both backends, as the reference does: the pod may have been set up
        // by another version or configuration.
        let (chain, _) = masq_ids(&call);
        // The two backends are independent: remove from both at once.
        // No iptables on the node (an nftables-only node): nothing can be
        // there, as upstream ignores the teardown error when iptables is
        // unsupported.
        let iptables = || match call.kernels.masq.teardown(&chain) {
            Err(e) if crate::kernel::masq_scan::cannot_run(&e) => {
                tracing::debug!(error = %e, "no iptables: no masquerade chain to remove");
                Ok(())
            }
            r => r.map_err(|e| kernel_error("removing masquerade", e)),
        };
        let (ipt, nft) = std::thread::scope(|s| {
            // No thread to be had (resource limits): one after the other.
            let Ok(nft) = std::thread::Builder::new().spawn_scoped(s, || nft_unmasquerade(&call))
            else {
                return (iptables(), nft_unmasquerade(&call));
            };
            let ipt = iptables();
            let nft = nft.join().unwrap_or_else(|_| {
                Err(cap_error(
                    code::INTERNAL,
                    "removing nftables masquerade failed unexpectedly",
                    "see the log",
                ))
            });
            (ipt, nft)
        });
        Ok(ipt.and(nft))
    }

    fn masquerade_check(
        &mut self,
        addresses: Vec<String>,
    ) -> wasmtime::Result<Result<bool, CniError>> {
        self.masquerade_check_in(MasqBackend::Iptables, addresses)
    }

    fn masquerade_add_in(
        &mut self,
        backend: MasqBackend,
        addresses: Vec<String>,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        if let Err(e) = call.charge(addresses.len(), "masquerading addresses") {
            return Ok(Err(e));
        }
        Ok(masquerade_add(&call, backend, &addresses))
    }

    fn masquerade_check_in(
        &mut self,
        backend: MasqBackend,
        addresses: Vec<String>,
    ) -> wasmtime::Result<Result<bool, CniError>> {
        let call = self.call.clone();
        Ok(masquerade_check(&call, backend, &addresses))
    }

    fn spoofcheck_del(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        Ok(spoofcheck_del(&call))
    }

    fn masquerade_gc(&mut self) -> wasmtime::Result<Result<Vec<String>, CniError>> {
        let call = self.call.clone();
        Ok(masquerade_gc(&call))
    }

    fn masquerade_status(
        &mut self,
        backend: MasqBackend,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        Ok(masquerade_status(&call, backend))
    }

    fn backend_supported(&mut self, backend: MasqBackend) -> wasmtime::Result<bool> {
        let call = self.call.clone();
        Ok(call
            .kernels
            .hostfw
            .backend_supported(matches!(backend, MasqBackend::Nftables)))
    }
}

/// GC of this network's masquerade rules: every attachment whose container
/// id is not in the runtime's valid list loses its iptables chain (with its
/// POSTROUTING jumps, both families) and its nftables rules. The list is
/// the one in the invocation's configuration, never the module's.
pub fn masquerade_gc(call: &CallContext) -> Result<Vec<String>, CniError> {
    if call.command != Command::Gc {
        return Err(cap_error(
            code::INVALID_NETWORK_CONFIG,
            "masquerade GC outside a GC invocation",
            format!(
                "masquerade-gc may only be called on GC, not {}",
                call.command.as_str()
            ),
        ));
    }
    let valid = call.gc_valid()?;
    let network = &call.invocation.network_name;
    let fw = &call.kernels.hostfw;
    let mut removed = Vec::new();
    let chains = match fw.iptables_masq_chains(network) {
        Ok(c) => c,
        // No iptables on the node: no chain of ours can be there.
        Err(e) if crate::kernel::masq_scan::cannot_run(&e) => Vec::new(),
        Err(e) => return Err(kernel_error("listing masquerade chains", e)),
    };
    for (chain, cid) in chains {
        if valid.iter().any(|(c, _)| *c == cid) {
            continue;
        }
        call.kernels
            .masq
            .teardown(&chain)
            .map_err(|e| kernel_error("removing a stale masquerade chain", e))?;
        tracing::info!(network = %network, container_id = %cid, chain = %chain, "GC removed masquerade chain");
        removed.push(format!("iptables chain {chain} of {cid}"));
    }
    let keep: Vec<Attachment> = valid
        .into_iter()
        .map(|(container_id, ifname)| Attachment {
            network: network.clone(),
            container_id,
            ifname,
        })
        .collect();
    match fw.masq_gc(network, &keep) {
        Ok(gone) => {
            for c in gone {
                tracing::info!(network = %network, comment = %c, "GC removed nftables masquerade rule");
                removed.push(format!("nftables rule {c:?}"));
            }
        }
        Err(e) if nft_absent(&e) => {}
        Err(e) => return Err(kernel_error("removing stale nftables masquerade rules", e)),
    }
    Ok(removed)
}

/// STATUS of the masquerade backend: code 50 naming the tool that failed.
pub fn masquerade_status(call: &CallContext, backend: MasqBackend) -> Result<(), CniError> {
    let (nft, name) = match backend {
        MasqBackend::Iptables => (false, "iptables"),
        MasqBackend::Nftables => (true, "nftables"),
    };
    call
        .kernels
        .hostfw
        .masq_usable(nft)
        .map_err(|e| {
            cap_error(
                code::NOT_AVAILABLE,
                format!("the {name} masquerade backend is unusable on this node: {e}"),
                format!("ipMasq with ipMasqBackend {name} needs it for every ADD; install it (or put it on PATH) or choose the other backend"),
            )
        })
}

impl CapsView<'_> {
    fn scope(&mut self, r: &Resource<ScopeHandle>) -> wasmtime::Result<&mut ScopeHandle> {
        Ok(self.table.get_mut(r)?)
    }
}

/// `Ok(Err(..))` shorthand: capability errors are values, traps are not.
macro_rules! cap {
    ($e:expr) => {{
        // A closure so `?` works inside the block.
        #[allow(clippy::redundant_closure_call)]
        let r: Result<_, CniError> = (|| $e)();
        Ok(r)
    }};
}

impl HostScope for CapsView<'_> {
    fn bridge_name(&mut self, r: Resource<ScopeHandle>) -> wasmtime::Result<String> {
        Ok(self.scope(&r)?.bridge.clone())
    }

    fn ensure_bridge(
        &mut self,
        r: Resource<ScopeHandle>,
        config: BridgeConfig,
    ) -> wasmtime::Result<Result<HostLink, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.ensure_bridge(config))
    }

    fn link(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
    ) -> wasmtime::Result<Result<Option<HostLink>, CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.readable(&name, "reading a link")?;
            s.host
                .link_details(&name)
                .map(|d| d.map(host_link))
                .map_err(|e| kernel_error("reading host link", e))
        })
    }

    fn container_peer(
        &mut self,
        r: Resource<ScopeHandle>,
    ) -> wasmtime::Result<Result<Option<HostLink>, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.container_peer())
    }

    fn create_veth(
        &mut self,
        r: Resource<ScopeHandle>,
        config: VethConfig,
    ) -> wasmtime::Result<Result<HostLink, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.create_veth(config))
    }

    fn delete_container_link(
        &mut self,
        r: Resource<ScopeHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.delete_container_link())
    }

    fn set_link_up(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        up: bool,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "setting link state")?;
            let before = s.host.link(&name).ok().flatten();
            s.host
                .set_link_up(&name, up)
                .map_err(|e| kernel_error("setting link state", e))?;
            if let Some(l) = before.filter(|l| l.up != up) {
                s.call.journal(Undo::SetLinkUp {
                    link: LinkRef {
                        netns: HOST_NETNS.to_string(),
                        name: name.clone(),
                        index: l.index,
                    },
                    up: !up,
                });
            }
            Ok(())
        })
    }

    fn set_master(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "attaching to the bridge")?;
            if name == s.bridge {
                return Err(cap_error(
                    code::INVALID_NETWORK_CONFIG,
                    "cannot enslave the bridge to itself",
                    "pass the host veth name",
                ));
            }
            let br = s.bridge.clone();
            s.host
                .set_master(&name, Some(&br))
                .map_err(|e| kernel_error(&format!("attaching {name} to bridge {br}"), e))
        })
    }

    fn set_port(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        config: PortConfig,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "setting bridge port flags")?;
            s.host
                .set_bridge_port(
                    &name,
                    PortFlags {
                        hairpin: config.hairpin,
                        isolated: config.isolated,
                    },
                )
                .map_err(|e| kernel_error("setting bridge port flags", e))
        })
    }

    fn set_promisc(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        on: bool,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "setting promiscuous mode")?;
            s.host
                .set_promisc(&name, on)
                .map_err(|e| kernel_error("setting promiscuous mode", e))
        })
    }

    fn set_mac(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        mac: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "setting a MAC address")?;
            let m = parse_mac(&mac)?;
            let before = s.host.link(&name).ok().flatten();
            s.host
                .set_mac(&name, m)
                .map_err(|e| kernel_error("setting a MAC address", e))?;
            if let Some(l) = before {
                if let Some(old) = parse_mac(&l.mac).ok().filter(|b| *b != m) {
                    s.call.journal(Undo::SetMac {
                        link: LinkRef {
                            netns: HOST_NETNS.to_string(),
                            name: name.clone(),
                            index: l.index,
                        },
                        mac: old,
                    });
                }
            }
            Ok(())
        })
    }

    fn vlans(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<Vlan>, CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.readable(&name, "reading vlans")?;
            s.host
                .port_vlans(&name)
                .map(|v| {
                    v.into_iter()
                        .map(|v| Vlan {
                            vid: v.vid,
                            pvid: v.pvid,
                            untagged: v.untagged,
                        })
                        .collect()
                })
                .map_err(|e| kernel_error("reading vlans", e))
        })
    }

    fn add_vlan(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        vlan: Vlan,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "adding a vlan")?;
            let v = parse_vlan(&vlan)?;
            s.call.charge(1, "adding a vlan")?;
            s.host
                .add_port_vlan(&name, v)
                .map_err(|e| kernel_error("adding a vlan", e))
        })
    }

    fn del_vlan(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        vid: u16,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "removing a vlan")?;
            s.host
                .del_port_vlan(&name, vid)
                .map_err(|e| kernel_error("removing a vlan", e))
        })
    }

    fn addresses(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<String>, CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.readable(&name, "listing addresses")?;
            s.host
                .addresses(&name)
                .map(|v| {
                    v.into_iter()
                        .map(|a| format!("{}/{}", a.ip, a.prefix))
                        .collect()
                })
                .map_err(|e| kernel_error("listing addresses", e))
        })
    }

    fn add_address(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        cidr: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "adding an address")?;
            let a = parse_cidr(&cidr)?;
            host_scope::host_address(&s.call.ipam_ips(), a)?;
            s.call.charge(1, "adding an address")?;
            s.host
                .add_address(&name, a)
                .map_err(|e| kernel_error("adding an address", e))?;
            if let Some(link) = link_ref(s.host.as_mut(), HOST_NETNS, &name) {
                s.call.journal(Undo::DelAddress { link, addr: a });
            }
            Ok(())
        })
    }

    fn del_address(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        cidr: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "deleting an address")?;
            let a = parse_cidr(&cidr)?;
            s.host
                .del_address(&name, a)
                .map_err(|e| kernel_error("deleting an address", e))?;
            if let Some(link) = link_ref(s.host.as_mut(), HOST_NETNS, &name) {
                s.call.journal(Undo::AddAddress { link, addr: a });
            }
            Ok(())
        })
    }

    fn routes(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<Route>, CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.readable(&name, "listing routes")?;
            s.host
                .routes(&name)
                .map(|v| v.into_iter().map(route_to_wit).collect())
                .map_err(|e| kernel_error("listing routes", e))
        })
    }

    fn add_route(
        &mut self,
        r: Resource<ScopeHandle>,
        name: String,
        route: Route,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            s.mutable(&name, "adding a route")?;
            let rt = route_from_wit(&route)?;
            host_scope::host_route(&s.call.ipam_ips(), &rt)?;
            s.call.charge(1, "adding a route")?;
            s.host
                .add_route(&name, &rt, true)
                .map_err(|e| kernel_error("adding a route", e))?;
            if let Some(link) = link_ref(s.host.as_mut(), HOST_NETNS, &name) {
                s.call.journal(Undo::DelRoute { link, route: rt });
            }
            Ok(())
        })
    }

    fn del_container_route(
        &mut self,
        r: Resource<ScopeHandle>,
        route: Route,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!({
            let rt = route_from_wit(&route)?;
            let ifname = s.call.invocation.ifname.clone();
            check_link_name(&ifname)?;
            s.container()?
                .del_route(&ifname, &rt)
                .map_err(|e| kernel_error("deleting a container route", e))
        })
    }

    fn sysctl(
        &mut self,
        r: Resource<ScopeHandle>,
        side: Side,
        key: String,
    ) -> wasmtime::Result<Result<String, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.sysctl(side, &key, None))
    }

    fn set_sysctl(
        &mut self,
        r: Resource<ScopeHandle>,
        side: Side,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<String, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.sysctl(side, &key, Some(&value)))
    }

    fn settle_addresses(
        &mut self,
        r: Resource<ScopeHandle>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<bool, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.settle_addresses(timeout_ms))
    }

    fn spoofcheck_add(
        &mut self,
        r: Resource<ScopeHandle>,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let s = self.scope(&r)?;
        cap!(s.spoofcheck_add())
    }

    fn spoofcheck_check(
        &mut self,
        r: Resource<ScopeHandle>,
    ) -> wasmtime::Result<Result<bool, CniError>> {
        let s = self.scope(&r)?;
        cap!(s.spoofcheck_check())
    }

    fn drop(&mut self, r: Resource<ScopeHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_are_restricted() {
        assert_eq!(sysctl_link("net/ipv4/ip_forward").ok(), Some(None));
        assert_eq!(
            sysctl_link("net/ipv6/conf/veth1/accept_ra").ok(),
            Some(Some("veth1"))
        );
        assert_eq!(
            sysctl_link("net/ipv4/conf/cni0.100/forwarding").ok(),
            Some(Some("cni0.100"))
        );
        for bad in [
            "kernel/panic",
            "net/core/somaxconn",
            "net/ipv4/conf/../x",
            "net/ipv4/conf/eth0/../../y",
            "net/ipv4/conf/eth0",
            "net/ipv4/tcp_syncookies",
        ] {
            assert!(sysctl_link(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:02").ok(),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("zz:42:ac:11:00:02").is_err());
    }
}
