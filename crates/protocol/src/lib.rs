//! The CNI wire protocol, independent of how plugins run: environment,
//! config, version negotiation, results and errors. Pure std + serde_json so
//! it can be tested without the runtime and kept byte-compatible with the
//! reference plugins.

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use config::NetConf;
pub use env::{CniEnv, Command};
pub use error::CniError;
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{Version, SUPPORTED};
