//! `tc`: see wit/tc.wit.

use super::bindings::cni::plugin::tc::Host;
use crate::runtime::sandbox::StoreData;

impl Host for StoreData {}
