//! What an attachment may add to the node's own network, derived from this
//! call's IPAM result: the rules are the model's (`cni_model::scope`), shared
//! with the guest SDK's fake host so a module's unit tests meet them too;
//! here they become the capability's CNI errors (code 7).

use super::bindings::wit::CniError;
use super::cap_error;
use crate::kernel::{Addr, RouteInfo};
use crate::protocol::error::code;

pub use cni_model::scope::IpamIp;
use cni_model::scope::{self, HostRoute, Refusal};

fn error(r: Refusal) -> CniError {
    cap_error(code::INVALID_NETWORK_CONFIG, r.msg, r.details)
}

/// A host-side address: a gateway of this call's IPAM result.
pub fn host_address(ipam: &[IpamIp], a: Addr) -> Result<(), CniError> {
    scope::host_address(ipam, a).map_err(error)
}

/// A host-side route: to this call's addresses or their subnets.
pub fn host_route(ipam: &[IpamIp], r: &RouteInfo) -> Result<(), CniError> {
    let r = HostRoute {
        dst: r.dst,
        gw: r.gw,
        table: r.table,
    };
    scope::host_route(ipam, &r).map_err(error)
}

/// A masquerade entry: one of this call's addresses.
pub fn masquerade(ipam: &[IpamIp], a: Addr) -> Result<(), CniError> {
    scope::masquerade(ipam, a).map_err(error)
}
