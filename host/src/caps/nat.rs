//! `nat`: see wit/nat.wit.

use super::bindings::cni::plugin::nat::Host;
use crate::runtime::sandbox::StoreData;

impl Host for StoreData {}
