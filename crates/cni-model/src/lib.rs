//! The part of the CNI model that the host and the guest SDK share, so that
//! a module's unit tests run against the same rules the host enforces: the
//! error codes, the link-name alphabet, and what an attachment may add to
//! the node's network. Pure and dependency-free; it builds for the host and
//! for wasm32-wasip2.
//!
//! Dependency rule: this crate imports nothing of the workspace; `host` and
//! `guest-sdk` import it (ARCHITECTURE.md).

pub mod code;
pub mod link;
pub mod scope;
