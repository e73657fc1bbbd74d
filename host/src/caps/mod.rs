//! Capability implementations: thin adapters from the WIT interfaces to the
//! kernel layer and the delegation machinery. Each checks that the request
//! stays inside what this invocation scopes.

pub mod bindings;
pub mod convert;
pub mod host_net;
pub mod ipam;
pub mod log;
pub mod nat;
pub mod netns;
pub mod resolv;
pub mod tc;
pub mod undo;

use std::sync::Arc;

use crate::protocol::env::Command;
use crate::runtime::Runtime;
use bindings::wit;

/// What one invocation may touch, shared by its sandbox's capabilities.
pub struct CallContext {
    pub runtime: Arc<Runtime>,
    pub command: Command,
    pub invocation: wit::Invocation,
    /// The configuration bytes as the runtime sent them (for exec delegation).
    pub config_bytes: Vec<u8>,
    /// The environment to hand to a delegated native plugin.
    pub env: Vec<(String, String)>,
    pub module: String,
    /// Inverses of what this call changed, for rollback of a failed ADD.
    pub undo: std::sync::Mutex<Vec<undo::Undo>>,
}

/// A capability error as the guest sees it.
pub fn cap_error(code: u32, msg: impl Into<String>, details: impl Into<String>) -> wit::CniError {
    wit::CniError {
        code,
        msg: msg.into(),
        details: details.into(),
    }
}
