//! Logging with tracing into a log file (never stdout). Each line carries the
//! container id, command, module and duration.

use std::path::Path;
use std::sync::Mutex;

pub const DEFAULT_LOG_FILE: &str = "/var/log/wasm-cni.log";

/// Installs the file logger once; later calls are no-ops. A log file that
/// cannot be opened falls back to stderr: logging must never fail a call.
pub fn init(path: Option<&Path>) {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let level = match std::env::var("WASM_CNI_LOG_LEVEL").as_deref() {
            Ok("debug") => tracing::Level::DEBUG,
            Ok("warn") => tracing::Level::WARN,
            Ok("error") => tracing::Level::ERROR,
            _ => tracing::Level::INFO,
        };
        let file = path.and_then(|p| {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        let builder = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_target(false);
        let _ = match file {
            Some(f) => builder.with_writer(Mutex::new(f)).try_init(),
            None => builder.with_writer(std::io::stderr).try_init(),
        };
    });
}
