//! `netns`: the container's network namespace (CNI_NETNS) and nothing else.
//! The module gets a handle from `container()`; it cannot name a path.

use std::net::IpAddr;

use wasmtime::component::Resource;

use super::bindings::cni::plugin::netns::{Host, HostNamespace, Link};
use super::bindings::wit::{CniError, Route};
use super::resources::NamespaceHandle;
use super::undo::{link_ref, LinkRef, Undo};
use super::CapsView;
use super::{cap_error, kernel_error};
use crate::kernel::{Addr, RouteInfo};
use crate::protocol::error::code;

pub(super) fn check_link_name(name: &str) -> Result<(), CniError> {
    if cni_model::link::valid_name(name) {
        return Ok(());
    }
    Err(cap_error(
        code::INVALID_NETWORK_CONFIG,
        format!("invalid link name {name:?}"),
        cni_model::link::NAME_RULE,
    ))
}

pub(super) fn parse_cidr(s: &str) -> Result<Addr, CniError> {
    s.parse().map_err(|()| {
        cap_error(
            code::INVALID_NETWORK_CONFIG,
            format!("invalid address {s:?}"),
            "expected CIDR notation such as 10.1.2.3/24",
        )
    })
}

pub(super) fn route_from_wit(r: &Route) -> Result<RouteInfo, CniError> {
    let gw = match &r.gw {
        Some(g) => Some(g.parse::<IpAddr>().map_err(|_| {
            cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!("invalid route gateway {g:?}"),
                "expected an IP address",
            )
        })?),
        None => None,
    };
    let scope = match r.scope {
        Some(s) => Some(u8::try_from(s).map_err(|_| {
            cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!("invalid route scope {s}"),
                "a scope is 0-255",
            )
        })?),
        None => None,
    };
    Ok(RouteInfo {
        dst: parse_cidr(&r.dst)?,
        gw,
        mtu: r.mtu,
        priority: r.priority,
        table: r.table,
        scope,
        src: None,
    })
}

pub(super) fn route_to_wit(r: RouteInfo) -> Route {
    Route {
        dst: format!("{}/{}", r.dst.ip, r.dst.prefix),
        gw: r.gw.map(|g| g.to_string()),
        mtu: r.mtu,
        advmss: None,
        priority: r.priority,
        table: r.table,
        scope: r.scope.map(u32::from),
    }
}

impl Host for CapsView<'_> {
    fn container(&mut self) -> wasmtime::Result<Result<Resource<NamespaceHandle>, CniError>> {
        let call = self.call.clone();
        let path = call.invocation.netns.clone();
        if path.is_empty() {
            return Ok(Err(cap_error(
                code::INVALID_ENVIRONMENT,
                "this invocation has no network namespace",
                "CNI_NETNS is empty",
            )));
        }
        let ops = match call.kernels.netns.open_netns(&path) {
            Ok(ops) => ops,
            Err(e) => {
                return Ok(Err(kernel_error(
                    "opening the container network namespace",
                    e,
                )))
            }
        };
        Ok(Ok(self.table.push(NamespaceHandle { path, ops })?))
    }
}

impl CapsView<'_> {
    /// A link this call may change inside the container: its own
    /// interface (CNI_IFNAME) or `lo`. Another attachment's interface of
    /// the same pod (eth0 while this call is for net1) is not this call's.
    fn container_link(&self, name: &str) -> Result<(), CniError> {
        check_link_name(name)?;
        let c = &self.call;
        match () {
            _ if name != c.invocation.ifname && name != "lo" => Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!("link {name} in the container is not this attachment's"),
                format!(
                    "a module changes only its own interface (CNI_IFNAME {}) and lo in the container",
                    c.invocation.ifname
                ),
            )),
            _ => Ok(()),
        }
    }

    fn journal(&self, undo: Undo) {
        self.call.journal(undo);
    }

    /// A route through a link of this attachment's in the container, beside
    /// any other to its destination; `src`, when given, must be one of the
    /// link's own addresses (the kernel takes any local one).
    fn add_container_route(
        &mut self,
        r: &Resource<NamespaceHandle>,
        name: &str,
        route: &Route,
        src: Option<IpAddr>,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let mut route = match self
            .container_link(name)
            .and_then(|_| route_from_wit(route))
        {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let ops = &mut self.ns(r)?.ops;
        if let Some(src) = src {
            match ops.addresses(name) {
                Ok(own) if own.iter().any(|a| a.ip == src) => route.src = Some(src),
                Ok(_) => {
                    return Ok(Err(cap_error(
                        code::INVALID_NETWORK_CONFIG,
                        format!("route source {src} is not an address of {name}"),
                        "add the address to the link first",
                    )))
                }
                Err(e) => return Ok(Err(kernel_error("listing addresses", e))),
            }
        }
        if let Err(e) = self.call.charge(1, "adding a route") {
            return Ok(Err(e));
        }
        Ok(self
            .ns(r)?
            .ops
            .add_route(name, &route, false)
            .map_err(|e| kernel_error("adding route", e)))
    }

    fn ns(&mut self, r: &Resource<NamespaceHandle>) -> wasmtime::Result<&mut NamespaceHandle> {
        Ok(self.table.get_mut(r)?)
    }
}

impl HostNamespace for CapsView<'_> {
    fn path(&mut self, r: Resource<NamespaceHandle>) -> wasmtime::Result<String> {
        Ok(self.ns(&r)?.path.clone())
    }

    fn link(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
    ) -> wasmtime::Result<Result<Option<Link>, CniError>> {
        if let Err(e) = check_link_name(&name) {
            return Ok(Err(e));
        }
        let ns = self.ns(&r)?;
        Ok(ns
            .ops
            .link(&name)
            .map(|l| {
                l.map(|l| Link {
                    name: l.name,
                    index: l.index,
                    mac: l.mac,
                    mtu: l.mtu,
                    up: l.up,
                })
            })
            .map_err(|e| kernel_error("reading link", e)))
    }

    fn set_link_up(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
        up: bool,
    ) -> wasmtime::Result<Result<(), CniError>> {
        if let Err(e) = self.container_link(&name) {
            return Ok(Err(e));
        }
        let ns = self.ns(&r)?;
        let before = ns.ops.link(&name).ok().flatten();
        let path = ns.path.clone();
        let res = ns
            .ops
            .set_link_up(&name, up)
            .map_err(|e| kernel_error("setting link state", e));
        if let (true, Some(l)) = (res.is_ok(), before) {
            if l.up != up {
                self.journal(Undo::SetLinkUp {
                    link: LinkRef {
                        netns: path,
                        name,
                        index: l.index,
                    },
                    up: !up,
                });
            }
        }
        Ok(res)
    }

    fn addresses(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<String>, CniError>> {
        if let Err(e) = check_link_name(&name) {
            return Ok(Err(e));
        }
        Ok(self
            .ns(&r)?
            .ops
            .addresses(&name)
            .map(|v| {
                v.into_iter()
                    .map(|a| format!("{}/{}", a.ip, a.prefix))
                    .collect()
            })
            .map_err(|e| kernel_error("listing addresses", e)))
    }

    fn add_address(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
        cidr: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let addr = match self.container_link(&name).and_then(|_| parse_cidr(&cidr)) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.call.charge(1, "adding an address") {
            return Ok(Err(e));
        }
        let ns = self.ns(&r)?;
        let path = ns.path.clone();
        let res = ns
            .ops
            .add_address(&name, addr)
            .map_err(|e| kernel_error("adding address", e));
        let link = link_ref(ns.ops.as_mut(), &path, &name);
        if res.is_ok() {
            self.call.issue([addr.ip]);
            if let Some(link) = link {
                self.journal(Undo::DelAddress { link, addr });
            }
        }
        Ok(res)
    }

    fn del_address(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
        cidr: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let addr = match self.container_link(&name).and_then(|_| parse_cidr(&cidr)) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let ns = self.ns(&r)?;
        let path = ns.path.clone();
        let res = ns
            .ops
            .del_address(&name, addr)
            .map_err(|e| kernel_error("deleting address", e));
        let link = link_ref(ns.ops.as_mut(), &path, &name);
        if let (true, Some(link)) = (res.is_ok(), link) {
            self.journal(Undo::AddAddress { link, addr });
        }
        Ok(res)
    }

    fn routes(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<Route>, CniError>> {
        if let Err(e) = check_link_name(&name) {
            return Ok(Err(e));
        }
        Ok(self
            .ns(&r)?
            .ops
            .routes(&name)
            .map(|v| v.into_iter().map(route_to_wit).collect())
            .map_err(|e| kernel_error("listing routes", e)))
    }

    fn add_route(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
        route: Route,
    ) -> wasmtime::Result<Result<(), CniError>> {
        self.add_container_route(&r, &name, &route, None)
    }

    fn add_route_from(
        &mut self,
        r: Resource<NamespaceHandle>,
        name: String,
        route: Route,
        src: String,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let Ok(src) = src.parse::<IpAddr>() else {
            return Ok(Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!("invalid route source {src:?}"),
                "an IP address without a prefix",
            )));
        };
        self.add_container_route(&r, &name, &route, Some(src))
    }

    fn drop(&mut self, r: Resource<NamespaceHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_link_name;

    #[test]
    fn link_names_cannot_be_templates_or_look_alikes() {
        for good in ["eth0", "veth1a2b3c4d", "cni0", "net1.100", "br-ex_1", "é"] {
            assert!(check_link_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "hs%d",
            "eth*",
            "a b",
            "a/b",
            "a:b",
            "eth0\n",
            "eth\u{202e}0",
            "eth\u{200b}0",
            "1234567890123456",
            "a\"b",
        ] {
            assert!(check_link_name(bad).is_err(), "{bad:?}");
        }
    }
}
