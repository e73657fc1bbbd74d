//! The host side of each WIT resource a module holds a handle to: what the
//! handle stands for, checked when it was made. Apart from the capability
//! glue (`netns`, `tc`, `host_net`) because the bindings name these types
//! (bindgen's `with`), and the glue implements the bindings: with the types
//! in the glue, bindings and glue would import each other.

use std::sync::Arc;

use crate::kernel::tc as ktc;
use crate::kernel::NetnsOps;
use crate::CallContext;

/// The host side of a `namespace` resource.
pub struct NamespaceHandle {
    pub(crate) path: String,
    pub(crate) ops: Box<dyn NetnsOps>,
}

/// The host side of an `attachment` resource: a host link verified to be
/// this attachment's veth peer, and the derived ifb name.
pub struct AttachmentHandle {
    pub(crate) host: ktc::TcLink,
    pub(crate) ifb: String,
}

/// The host side of a `scope` resource: what this invocation may touch.
pub struct ScopeHandle {
    pub(crate) call: Arc<CallContext>,
    pub(crate) bridge: String,
    pub(crate) host: Box<dyn NetnsOps>,
    pub(crate) container: Option<Box<dyn NetnsOps>>,
    /// Host veth ends created through this handle: fully in scope.
    pub(crate) created: Vec<String>,
    /// The host peer of CNI_IFNAME, found on request: readable only (DEL
    /// removes it by deleting CNI_IFNAME, which the module owns anyway).
    pub(crate) peer: Option<String>,
}
