//! Host-side bindings of the `any-module` world. Every capability interface
//! is generated here; which ones a module is actually linked against is
//! decided per plugin kind in `runtime::sandbox`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "any-module",
    imports: { default: trappable },
    with: {
        "cni:plugin/netns.namespace": crate::resources::NamespaceHandle,
        "cni:plugin/tc.attachment": crate::resources::AttachmentHandle,
        "cni:plugin/host-net.scope": crate::resources::ScopeHandle,
    },
});

pub use cni::plugin::types as wit;
