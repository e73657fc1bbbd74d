//! `host-net`: see wit/host-net.wit.

use super::bindings::cni::plugin::host_net::Host;
use crate::runtime::sandbox::StoreData;

impl Host for StoreData {}
