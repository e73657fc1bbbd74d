//! What an attachment may add to the node's own network: addresses and
//! routes on its host links, and masquerade entries, all derived from this
//! call's IPAM result. A module once put `0.0.0.0/1` and `128.0.0.0/1` on
//! its bridge and took the node's egress; the reference plugins add only
//! the gateway (bridge: `gw/<subnet prefix>` on the bridge; ptp: `gw/32` on
//! the host veth), a host route to the pod's address (ptp) and masquerade
//! for the pod's addresses, so that is what a module may do here too.
//!
//! Pure: the caller passes what this call's IPAM issued (`IpamIp`).

use std::net::IpAddr;

use super::bindings::wit::CniError;
use super::cap_error;
use crate::kernel::{Addr, RouteInfo};
use crate::protocol::error::code;

/// One address of this call's IPAM result, with its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamIp {
    pub addr: Addr,
    pub gateway: Option<IpAddr>,
}

impl IpamIp {
    /// The gateway a main plugin puts on the host side: the IPAM's, or the
    /// subnet's first address when it gave none (the reference bridge's
    /// calcGateways).
    fn gateway(&self) -> IpAddr {
        self.gateway.unwrap_or_else(|| next(self.addr.network().ip))
    }
}

fn next(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(u32::from(v4).wrapping_add(1).into()),
        IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).wrapping_add(1).into()),
    }
}

fn refused(what: String, ipam: &[IpamIp]) -> CniError {
    let issued: Vec<String> = ipam
        .iter()
        .map(|i| format!("{}/{}", i.addr.ip, i.addr.prefix))
        .collect();
    cap_error(
        code::INVALID_NETWORK_CONFIG,
        format!("{what} is not this attachment's"),
        if issued.is_empty() {
            "this call's IPAM issued no address, so nothing may be added to the node's network"
                .to_string()
        } else {
            format!(
                "the node's network takes only what this call's IPAM result derives: \
             its gateways and routes to its addresses ({})",
                issued.join(", ")
            )
        },
    )
}

/// A host-side address: a gateway of this call's IPAM result, with the
/// subnet's prefix (bridge) or a host prefix (ptp).
pub fn host_address(ipam: &[IpamIp], a: Addr) -> Result<(), CniError> {
    let ok = ipam
        .iter()
        .any(|i| a.ip == i.gateway() && (a.prefix == i.addr.prefix || a.prefix == a.host_prefix()));
    if ok {
        Ok(())
    } else {
        Err(refused(format!("host address {}/{}", a.ip, a.prefix), ipam))
    }
}

/// A host-side route: to one of this call's addresses (host prefix) or to
/// its subnet, in the main table, directly or through an address of that
/// subnet.
pub fn host_route(ipam: &[IpamIp], r: &RouteInfo) -> Result<(), CniError> {
    let main_table = matches!(r.table, None | Some(254));
    let ok = main_table
        && ipam.iter().any(|i| {
            let to_pod = r.dst
                == Addr {
                    ip: i.addr.ip,
                    prefix: i.addr.host_prefix(),
                };
            let to_subnet = r.dst == i.addr.network();
            (to_pod || to_subnet) && r.gw.is_none_or(|gw| i.addr.contains(gw))
        });
    if ok {
        Ok(())
    } else {
        let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
        let table = r.table.map(|t| format!(" table {t}")).unwrap_or_default();
        Err(refused(
            format!("host route {}/{}{via}{table}", r.dst.ip, r.dst.prefix),
            ipam,
        ))
    }
}

/// A masquerade entry: one of this call's addresses, as its IPAM gave it.
pub fn masquerade(ipam: &[IpamIp], a: Addr) -> Result<(), CniError> {
    if ipam.iter().any(|i| i.addr == a) {
        Ok(())
    } else {
        Err(refused(
            format!("masquerade for {}/{}", a.ip, a.prefix),
            ipam,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam() -> Vec<IpamIp> {
        vec![
            IpamIp {
                addr: Addr::cidr("10.22.0.5/24"),
                gateway: None,
            },
            IpamIp {
                addr: Addr::cidr("fd22::5/64"),
                gateway: Some("fd22::fe".parse().unwrap()),
            },
        ]
    }

    fn route(dst: &str, gw: Option<&str>, table: Option<u32>) -> RouteInfo {
        RouteInfo {
            dst: Addr::cidr(dst),
            gw: gw.map(|g| g.parse().unwrap()),
            mtu: None,
            priority: None,
            table,
            scope: None,
        }
    }

    #[test]
    fn gateways_as_the_reference_plugins_put_them() {
        for ok in [
            "10.22.0.1/24",
            "10.22.0.1/32",
            "fd22::fe/64",
            "fd22::fe/128",
        ] {
            host_address(&ipam(), Addr::cidr(ok)).unwrap();
        }
        for bad in [
            "192.0.2.1/24",
            "10.22.0.1/16",
            "10.22.0.5/24",
            "10.22.0.6/32",
            "fd22::1/64",
            "0.0.0.0/0",
        ] {
            let e = host_address(&ipam(), Addr::cidr(bad)).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
            assert!(e.msg.contains(bad), "{e:?}");
            assert!(e.details.contains("10.22.0.5/24"), "{e:?}");
        }
        let e = host_address(&[], Addr::cidr("10.22.0.1/24")).unwrap_err();
        assert!(e.details.contains("issued no address"), "{e:?}");
    }

    #[test]
    fn routes_to_the_pod_or_its_subnet_only() {
        for ok in [
            route("10.22.0.5/32", None, None),
            route("10.22.0.0/24", None, Some(254)),
            route("fd22::5/128", None, None),
            route("10.22.0.0/24", Some("10.22.0.1"), None),
        ] {
            host_route(&ipam(), &ok).unwrap();
        }
        for bad in [
            route("0.0.0.0/1", None, None),
            route("128.0.0.0/1", None, None),
            route("0.0.0.0/0", Some("10.22.0.1"), None),
            route("10.22.0.6/32", None, None),
            route("10.22.0.5/32", None, Some(100)),
            route("10.22.0.5/32", Some("192.0.2.1"), None),
            route("10.0.0.0/8", None, None),
        ] {
            assert!(host_route(&ipam(), &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn masquerade_for_the_pods_addresses_only() {
        masquerade(&ipam(), Addr::cidr("10.22.0.5/24")).unwrap();
        masquerade(&ipam(), Addr::cidr("fd22::5/64")).unwrap();
        for bad in ["0.0.0.0/0", "10.22.0.6/24", "10.22.0.5/16"] {
            assert!(masquerade(&ipam(), Addr::cidr(bad)).is_err(), "{bad}");
        }
    }
}
