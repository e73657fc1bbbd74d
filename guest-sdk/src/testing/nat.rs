//! The fake host side of the `nat` capability, for module unit tests.

use std::net::IpAddr;

use crate::nat::*;
use crate::types::{CniError, CniResultOf};

/// What the fake host recorded, and an optional failure to inject.
#[derive(Debug, Default)]
pub struct FakeNat {
    /// Every call, e.g. `apply`, `remove Iptables`, `conntrack 53 v4`.
    pub calls: Vec<String>,
    /// The last applied spec (None after a remove).
    pub applied: Option<NatSpec>,
    /// Returned (once) by the next call when set.
    pub fail_next: Option<CniError>,
    /// Backends the fake node cannot use (`nat_backend_supported` false).
    pub unsupported: Vec<NatBackend>,
}

impl FakeNat {
    fn call(&mut self, what: String) -> CniResultOf<()> {
        self.calls.push(what);
        match self.fail_next.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl NatCaps for super::FakeHost {
    fn nat_apply(&mut self, spec: &NatSpec) -> CniResultOf<()> {
        self.nat.call("apply".into())?;
        self.nat.applied = Some(spec.clone());
        Ok(())
    }

    fn nat_remove(&mut self, backend: NatBackend) -> CniResultOf<()> {
        self.nat.call(format!("remove {backend:?}"))?;
        self.nat.applied = None;
        Ok(())
    }

    fn nat_check(&mut self, spec: &NatSpec) -> CniResultOf<()> {
        self.nat.call("check".into())?;
        if self.nat.applied.as_ref() == Some(spec) {
            Ok(())
        } else {
            Err(CniError::internal("port mappings are not in place"))
        }
    }

    fn nat_gc(&mut self, backend: NatBackend, valid: &[String]) -> CniResultOf<()> {
        self.nat.call(format!("gc {backend:?} {}", valid.join(",")))
    }

    fn flush_udp_conntrack(&mut self, port: u16, ipv6: bool) -> CniResultOf<()> {
        self.nat.call(format!(
            "conntrack {port} {}",
            if ipv6 { "v6" } else { "v4" }
        ))
    }

    fn enable_route_localnet(&mut self, ip: IpAddr) -> CniResultOf<()> {
        self.nat.call(format!("route_localnet {ip}"))
    }

    fn nat_backend_supported(&mut self, backend: NatBackend) -> bool {
        !self.nat.unsupported.contains(&backend)
    }
}
