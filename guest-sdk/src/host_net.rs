//! The `host-net` capability (wit/host-net.wit) as a trait, with the real
//! implementation on [`crate::__private::WasmHost`] and a fake on
//! `testing::FakeHost`.

/// Operations of the `host-net` capability.
pub trait HostNetCaps {}

impl HostNetCaps for crate::wasm_host::WasmHost {}

#[cfg(feature = "testing")]
impl HostNetCaps for crate::testing::FakeHost {}
