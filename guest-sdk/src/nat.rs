//! The `nat` capability (wit/nat.wit) as a trait, with the real
//! implementation on [`crate::__private::WasmHost`] and a fake on
//! `testing::FakeHost`.

/// Operations of the `nat` capability.
pub trait NatCaps {}

impl NatCaps for crate::wasm_host::WasmHost {}

#[cfg(feature = "testing")]
impl NatCaps for crate::testing::FakeHost {}
