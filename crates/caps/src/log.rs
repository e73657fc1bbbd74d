//! `log`: module messages into the host's log, tagged with the invocation.

use super::bindings::cni::plugin::log::{Host, Level};
use super::CapsView;

impl Host for CapsView<'_> {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let (module, cid) = (
            self.call.module.as_str(),
            self.call.invocation.container_id.as_str(),
        );
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
