//! The real host: glue between the generated bindings and the SDK traits.
//! Generated types never leave this file and `lib.rs`'s private module.

use std::path::Path;

use crate::__private::bindings::cni::plugin::{ipam, log, netns, resolv, state, types as wit};
use crate::types::*;
use crate::{
    BandwidthHost, InterfaceHost, IpamCommand, IpamHost, Link, Netns, Plugin, PortmapHost,
};

pub use crate::__private::bindings::exports::cni::plugin::plugin::Guest;
pub type WitDescriptor = wit::Descriptor;
pub type WitInvocation = wit::Invocation;
pub type WitResult = wit::CniResult;
pub type WitError = wit::CniError;
pub type WitAttachment = wit::Attachment;

/// Where the host preopens an IPAM module's state directory.
pub const STATE_DIR: &str = "/state";

pub fn descriptor(kind: PluginKind, version: &str) -> WitDescriptor {
    let kind = match kind {
        PluginKind::Ipam => wit::PluginKind::Ipam,
        PluginKind::Interface => wit::PluginKind::Interface,
        PluginKind::Portmap => wit::PluginKind::Portmap,
        PluginKind::Bandwidth => wit::PluginKind::Bandwidth,
    };
    WitDescriptor {
        kind,
        version: version.to_string(),
    }
}

pub fn attachments(valid: Vec<WitAttachment>) -> Vec<Attachment> {
    valid
        .into_iter()
        .map(|a| Attachment {
            container_id: a.container_id,
            ifname: a.ifname,
        })
        .collect()
}

fn invocation(inv: WitInvocation) -> Result<Invocation, CniError> {
    let config = serde_json::from_str(&inv.config).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            "network configuration is not valid JSON",
        )
        .with_details(e.to_string())
    })?;
    let prev_result = match inv.prev_result {
        Some(r) => Some(result_from_wit(r)?),
        None => None,
    };
    Ok(Invocation {
        container_id: inv.container_id,
        netns: inv.netns,
        ifname: inv.ifname,
        args: inv.args,
        cni_version: inv.cni_version,
        network_name: inv.network_name,
        config,
        prev_result,
    })
}

fn error_to_wit(e: CniError) -> WitError {
    WitError {
        code: e.code,
        msg: e.msg,
        details: e.details,
    }
}

fn error_from_wit(e: WitError) -> CniError {
    CniError {
        code: e.code,
        msg: e.msg,
        details: e.details,
    }
}

fn bad_host_value(what: &str, v: &str, e: String) -> CniError {
    CniError::internal(format!("host returned an invalid {what} {v:?}")).with_details(e)
}

fn parse_ip(what: &str, s: &str) -> Result<std::net::IpAddr, CniError> {
    s.parse()
        .map_err(|_| bad_host_value(what, s, "not an IP address".into()))
}

fn parse_net(what: &str, s: &str) -> Result<IpNet, CniError> {
    s.parse().map_err(|e| bad_host_value(what, s, e))
}

fn route_from_wit(r: wit::Route) -> Result<Route, CniError> {
    Ok(Route {
        dst: parse_net("route destination", &r.dst)?,
        gw: r
            .gw
            .as_deref()
            .map(|g| parse_ip("route gateway", g))
            .transpose()?,
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
    })
}

fn route_to_wit(r: &Route) -> wit::Route {
    wit::Route {
        dst: r.dst.to_string(),
        gw: r.gw.map(|g| g.to_string()),
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
    }
}

pub fn result_from_wit(r: WitResult) -> Result<CniResult, CniError> {
    Ok(CniResult {
        interfaces: r
            .interfaces
            .into_iter()
            .map(|i| Interface {
                name: i.name,
                mac: i.mac,
                mtu: i.mtu,
                sandbox: i.sandbox,
                socket_path: i.socket_path,
                pci_id: i.pci_id,
            })
            .collect(),
        ips: r
            .ips
            .into_iter()
            .map(|ip| {
                Ok(IpConfig {
                    address: parse_net("address", &ip.address)?,
                    gateway: ip
                        .gateway
                        .as_deref()
                        .map(|g| parse_ip("gateway", g))
                        .transpose()?,
                    interface: ip.iface,
                })
            })
            .collect::<Result<_, CniError>>()?,
        routes: r
            .routes
            .into_iter()
            .map(route_from_wit)
            .collect::<Result<_, _>>()?,
        dns: Dns {
            nameservers: r.dns.nameservers,
            domain: r.dns.domain,
            search: r.dns.search,
            options: r.dns.options,
        },
    })
}

pub fn result_to_wit(r: CniResult) -> WitResult {
    WitResult {
        interfaces: r
            .interfaces
            .into_iter()
            .map(|i| wit::Iface {
                name: i.name,
                mac: i.mac,
                mtu: i.mtu,
                sandbox: i.sandbox,
                socket_path: i.socket_path,
                pci_id: i.pci_id,
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| wit::IpConfig {
                address: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                iface: ip.interface,
            })
            .collect(),
        routes: r.routes.iter().map(route_to_wit).collect(),
        dns: wit::Dns {
            nameservers: r.dns.nameservers,
            domain: r.dns.domain,
            search: r.dns.search,
            options: r.dns.options,
        },
    }
}

fn level_to_wit(level: Level) -> log::Level {
    match level {
        Level::Error => log::Level::Error,
        Level::Warn => log::Level::Warn,
        Level::Info => log::Level::Info,
        Level::Debug => log::Level::Debug,
    }
}

/// The host as seen from inside the sandbox.
pub struct WasmHost;

/// The container namespace capability handed out by the host.
pub struct WasmNetns(netns::Namespace);

impl Netns for WasmNetns {
    fn path(&self) -> String {
        self.0.path()
    }

    fn link(&self, name: &str) -> CniResultOf<Option<Link>> {
        Ok(self.0.link(name).map_err(error_from_wit)?.map(|l| Link {
            name: l.name,
            index: l.index,
            mac: l.mac,
            mtu: l.mtu,
            up: l.up,
        }))
    }

    fn set_link_up(&self, name: &str, up: bool) -> CniResultOf<()> {
        self.0.set_link_up(name, up).map_err(error_from_wit)
    }

    fn addresses(&self, link: &str) -> CniResultOf<Vec<IpNet>> {
        self.0
            .addresses(link)
            .map_err(error_from_wit)?
            .iter()
            .map(|a| parse_net("address", a))
            .collect()
    }

    fn add_address(&self, link: &str, addr: IpNet) -> CniResultOf<()> {
        self.0
            .add_address(link, &addr.to_string())
            .map_err(error_from_wit)
    }

    fn del_address(&self, link: &str, addr: IpNet) -> CniResultOf<()> {
        self.0
            .del_address(link, &addr.to_string())
            .map_err(error_from_wit)
    }

    fn routes(&self, link: &str) -> CniResultOf<Vec<Route>> {
        self.0
            .routes(link)
            .map_err(error_from_wit)?
            .into_iter()
            .map(route_from_wit)
            .collect()
    }

    fn add_route(&self, link: &str, route: &Route) -> CniResultOf<()> {
        self.0
            .add_route(link, &route_to_wit(route))
            .map_err(error_from_wit)
    }

    fn add_route_from(&self, link: &str, route: &Route, src: std::net::IpAddr) -> CniResultOf<()> {
        self.0
            .add_route_from(link, &route_to_wit(route), &src.to_string())
            .map_err(error_from_wit)
    }
}

impl InterfaceHost for WasmHost {
    type Netns = WasmNetns;

    fn container_netns(&mut self) -> CniResultOf<WasmNetns> {
        netns::container().map(WasmNetns).map_err(error_from_wit)
    }

    fn ipam(&mut self, command: IpamCommand) -> CniResultOf<Option<CniResult>> {
        match command {
            IpamCommand::Add => ipam::add()
                .map_err(error_from_wit)
                .and_then(result_from_wit)
                .map(Some),
            IpamCommand::Del => ipam::del().map_err(error_from_wit).map(|_| None),
            IpamCommand::Check => ipam::check().map_err(error_from_wit).map(|_| None),
            IpamCommand::Status => ipam::status().map_err(error_from_wit).map(|_| None),
            IpamCommand::Gc => ipam::gc().map_err(error_from_wit).map(|_| None),
        }
    }

    fn log(&self, level: Level, message: &str) {
        log::write(level_to_wit(level), message);
    }
}

impl IpamHost for WasmHost {
    fn state_dir(&self) -> &Path {
        Path::new(STATE_DIR)
    }

    fn resolv_conf(&self) -> CniResultOf<Option<String>> {
        resolv::read_resolv_conf().map_err(error_from_wit)
    }

    fn state_files(&self) -> CniResultOf<Option<crate::StateFiles>> {
        state::files().map(Some).map_err(error_from_wit)
    }

    fn state_create_exclusive(&self, name: &str, content: &[u8]) -> CniResultOf<Option<bool>> {
        state::create_exclusive(name, content)
            .map(Some)
            .map_err(error_from_wit)
    }

    fn log(&self, level: Level, message: &str) {
        log::write(level_to_wit(level), message);
    }
}

impl PortmapHost for WasmHost {
    fn log(&self, level: Level, message: &str) {
        log::write(level_to_wit(level), message);
    }
}

impl BandwidthHost for WasmHost {
    fn log(&self, level: Level, message: &str) {
        log::write(level_to_wit(level), message);
    }
}

/// ADD of a plugin on the real host, in the WIT's terms.
pub fn add<P: Plugin<WasmHost>>(inv: WitInvocation) -> Result<WitResult, WitError> {
    let inv = invocation(inv).map_err(error_to_wit)?;
    P::add(&mut WasmHost, &inv)
        .map(result_to_wit)
        .map_err(error_to_wit)
}

/// Any other command of a plugin on the real host.
pub fn run(
    inv: WitInvocation,
    f: impl FnOnce(&mut WasmHost, &Invocation) -> CniResultOf<()>,
) -> Result<(), WitError> {
    let inv = invocation(inv).map_err(error_to_wit)?;
    f(&mut WasmHost, &inv).map_err(error_to_wit)
}
