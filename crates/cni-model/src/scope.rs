//! What an attachment may add to the node's own network: addresses and
//! routes on its host links, and masquerade entries, all derived from this
//! call's IPAM result. A module once put `0.0.0.0/1` and `128.0.0.0/1` on
//! its bridge and took the node's egress; the reference plugins add only
//! the gateway (bridge: `gw/<subnet prefix>` on the bridge; ptp: `gw/32` on
//! the host veth), a host route to the pod's address (ptp) and masquerade
//! for the pod's addresses, so that is what a module may do.

use std::net::IpAddr;

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The prefix length of one address of this family: 32 or 128.
    pub fn host_prefix(&self) -> u8 {
        if self.ip.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The network of this address (host bits cleared), same prefix.
    pub fn network(self) -> Cidr {
        let ip = match self.ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix.min(32)))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix.min(128)))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Cidr {
            ip,
            prefix: self.prefix,
        }
    }

    /// Whether `ip` is in this address's network.
    pub fn contains(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.ip.is_ipv4()
            && self.network()
                == (Cidr {
                    ip,
                    prefix: self.prefix,
                })
                .network()
    }
}

/// `ip/prefix`, the prefix within the family's length.
impl std::str::FromStr for Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Cidr, ()> {
        let (ip, p) = s.split_once('/').ok_or(())?;
        let c = Cidr {
            ip: ip.parse().map_err(|_| ())?,
            prefix: p.parse().map_err(|_| ())?,
        };
        if c.prefix > c.host_prefix() {
            return Err(());
        }
        Ok(c)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// One address of this call's IPAM result, with its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamIp {
    pub addr: Cidr,
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

/// A host-side route as the scope judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute {
    pub dst: Cidr,
    pub gw: Option<IpAddr>,
    pub table: Option<u32>,
}

/// Why something is not this attachment's: the error's message and the
/// fix (a CNI error with code 7 on both sides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub msg: String,
    pub details: String,
}

fn refused(what: String, ipam: &[IpamIp]) -> Refusal {
    let issued: Vec<String> = ipam.iter().map(|i| i.addr.to_string()).collect();
    Refusal {
        msg: format!("{what} is not this attachment's"),
        details: if issued.is_empty() {
            "this call's IPAM issued no address, so nothing may be added to the node's network"
                .to_string()
        } else {
            format!(
                "the node's network takes only what this call's IPAM result derives: \
                 its gateways and routes to its addresses ({})",
                issued.join(", ")
            )
        },
    }
}

/// A host-side address: a gateway of this call's IPAM result, with the
/// subnet's prefix (bridge) or a host prefix (ptp).
pub fn host_address(ipam: &[IpamIp], a: Cidr) -> Result<(), Refusal> {
    let ok = ipam
        .iter()
        .any(|i| a.ip == i.gateway() && (a.prefix == i.addr.prefix || a.prefix == a.host_prefix()));
    if ok {
        Ok(())
    } else {
        Err(refused(format!("host address {a}"), ipam))
    }
}

/// A host-side route: to one of this call's addresses (host prefix) or to
/// its subnet, in the main table, directly or through an address of that
/// subnet.
pub fn host_route(ipam: &[IpamIp], r: &HostRoute) -> Result<(), Refusal> {
    let main_table = matches!(r.table, None | Some(254));
    let ok = main_table
        && ipam.iter().any(|i| {
            let to_pod = r.dst
                == Cidr {
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
        Err(refused(format!("host route {}{via}{table}", r.dst), ipam))
    }
}

/// A masquerade entry: one of this call's addresses, as its IPAM gave it.
pub fn masquerade(ipam: &[IpamIp], a: Cidr) -> Result<(), Refusal> {
    if ipam.iter().any(|i| i.addr == a) {
        Ok(())
    } else {
        Err(refused(format!("masquerade for {a}"), ipam))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    fn ipam() -> Vec<IpamIp> {
        vec![
            IpamIp {
                addr: c("10.22.0.5/24"),
                gateway: None,
            },
            IpamIp {
                addr: c("fd22::5/64"),
                gateway: Some("fd22::fe".parse().expect("ip")),
            },
        ]
    }

    fn route(dst: &str, gw: Option<&str>, table: Option<u32>) -> HostRoute {
        HostRoute {
            dst: c(dst),
            gw: gw.map(|g| g.parse().expect("ip")),
            table,
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
            host_address(&ipam(), c(ok)).expect(ok);
        }
        for bad in [
            "192.0.2.1/24",
            "10.22.0.1/16",
            "10.22.0.5/24",
            "10.22.0.6/32",
            "fd22::1/64",
            "0.0.0.0/0",
        ] {
            let e = host_address(&ipam(), c(bad)).expect_err(bad);
            assert!(e.msg.contains(bad), "{e:?}");
            assert!(e.details.contains("10.22.0.5/24"), "{e:?}");
        }
        let e = host_address(&[], c("10.22.0.1/24")).expect_err("none issued");
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
            host_route(&ipam(), &ok).expect("allowed");
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
        masquerade(&ipam(), c("10.22.0.5/24")).expect("v4");
        masquerade(&ipam(), c("fd22::5/64")).expect("v6");
        for bad in ["0.0.0.0/0", "10.22.0.6/24", "10.22.0.5/16"] {
            assert!(masquerade(&ipam(), c(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(c("10.1.2.3/16").network(), c("10.1.0.0/16"));
        assert_eq!(c("fd00::1:2/112").network(), c("fd00::1:0/112"));
        assert_eq!(c("10.1.2.3/0").network(), c("0.0.0.0/0"));
        assert!(c("10.1.2.3/24").contains("10.1.2.200".parse().expect("ip")));
        assert!(!c("10.1.2.3/24").contains("10.1.3.1".parse().expect("ip")));
        assert!(!c("10.1.2.3/24").contains("fd00::1".parse().expect("ip")));
        for bad in [
            "10.1.2.3",
            "10.1.2.3/33",
            "fd00::/129",
            "x/1",
            "10.1.2.3/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
