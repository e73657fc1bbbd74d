//! Conversions between the protocol's result model and the WIT records.

use super::bindings::wit;
use crate::protocol::result as proto;

pub fn to_wit(r: proto::CniResult) -> wit::CniResult {
    wit::CniResult {
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
            .into_iter()
            .map(|ip| wit::IpConfig {
                address: ip.address,
                gateway: ip.gateway,
                iface: ip.interface,
            })
            .collect(),
        routes: r.routes.into_iter().map(route_to_wit).collect(),
        dns: wit::Dns {
            nameservers: r.dns.nameservers,
            domain: r.dns.domain,
            search: r.dns.search,
            options: r.dns.options,
        },
    }
}

pub fn route_to_wit(r: proto::Route) -> wit::Route {
    wit::Route {
        dst: r.dst,
        gw: r.gw,
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
    }
}

pub fn from_wit(r: wit::CniResult) -> proto::CniResult {
    proto::CniResult {
        interfaces: r
            .interfaces
            .into_iter()
            .map(|i| proto::Interface {
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
            .map(|ip| proto::IpConfig {
                address: ip.address,
                gateway: ip.gateway,
                interface: ip.iface,
            })
            .collect(),
        routes: r
            .routes
            .into_iter()
            .map(|r| proto::Route {
                dst: r.dst,
                gw: r.gw,
                mtu: r.mtu,
                advmss: r.advmss,
                priority: r.priority,
                table: r.table,
                scope: r.scope,
            })
            .collect(),
        dns: proto::Dns {
            nameservers: r.dns.nameservers,
            domain: r.dns.domain,
            search: r.dns.search,
            options: r.dns.options,
        },
    }
}
