//! How long each kernel operation took (a netlink request, an nf_tables
//! transaction or dump, a sysctl, an exec of a firewall tool), logged at
//! debug level: with `WASM_CNI_LOG_LEVEL=debug` the log shows where a slow
//! call spent its time, e.g. on a node with hundreds of pods. At the default
//! level it costs one level check: no clock is read.

use std::time::Instant;

/// Logs the operation's duration when dropped (debug level only).
#[must_use = "the operation is timed until the timer is dropped"]
pub struct OpTimer<'a> {
    kind: &'static str,
    op: &'a str,
    start: Option<Instant>,
}

/// Starts timing operation `op` of `kind` (netlink, nftables, sysctl, exec, state).
pub fn time<'a>(kind: &'static str, op: &'a str) -> OpTimer<'a> {
    let start = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
    OpTimer { kind, op, start }
}

impl Drop for OpTimer<'_> {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            tracing::debug!(kind = %self.kind, op = %self.op, us, "kernel operation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_at(level: tracing::Level) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let _timer = time("netlink", "get link");
        });
        let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn debug_level_logs_each_operation_with_its_duration() {
        let line = logged_at(tracing::Level::DEBUG);
        assert!(line.contains("kernel operation"), "{line}");
        assert!(line.contains("kind=netlink op=get link us="), "{line}");
    }

    #[test]
    fn default_level_logs_nothing() {
        assert_eq!(logged_at(tracing::Level::INFO), "");
    }
}
