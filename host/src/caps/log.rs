//! `log`: module messages into the host's log, tagged with the invocation.

use super::bindings::cni::plugin::log::{Host, Level};
use crate::runtime::sandbox::StoreData;

impl Host for StoreData {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let (module, cid) = match &self.call {
            Some(c) => (c.module.as_str(), c.invocation.container_id.as_str()),
            None => ("", ""),
        };
        // Bound what a module can push into the log per line.
        let message: String = message.chars().take(4096).collect();
        match level {
            Level::Error => tracing::error!(module, container_id = cid, "{message}"),
            Level::Warn => tracing::warn!(module, container_id = cid, "{message}"),
            Level::Info => tracing::info!(module, container_id = cid, "{message}"),
            Level::Debug => tracing::debug!(module, container_id = cid, "{message}"),
        }
        Ok(())
    }
}
