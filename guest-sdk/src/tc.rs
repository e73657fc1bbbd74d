//! The `tc` capability (wit/tc.wit) as a trait, with the real
//! implementation on [`crate::__private::WasmHost`] and a fake on
//! `testing::FakeHost`.

/// Operations of the `tc` capability.
pub trait TcCaps {}

impl TcCaps for crate::wasm_host::WasmHost {}

#[cfg(feature = "testing")]
impl TcCaps for crate::testing::FakeHost {}
