//! Exec of a native CNI plugin (IPAM delegation to binaries without a
//! module), bounded in time.

use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

use crate::process::{run_bounded, Output, RunError};
use crate::protocol::env::Command;
use crate::protocol::error::{code, CniError};

/// Runs `bin` with the invocation's environment (CNI_COMMAND replaced) and
/// the full network configuration on stdin. Returns its stdout on success;
/// on failure, its error JSON as a CniError.
pub fn exec(
    bin: &Path,
    env: &[(String, String)],
    command: Command,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let failed = |m: String| {
        CniError::new(
            code::INTERNAL,
            format!("delegated plugin {} failed", bin.display()),
        )
        .with_details(m)
    };
    let mut cmd = Process::new(bin);
    cmd.env_clear()
        .envs(
            env.iter()
                .filter(|(k, _)| k != "CNI_COMMAND")
                .map(|(k, v)| (k, v)),
        )
        .env("CNI_COMMAND", command.as_str());
    let Output {
        status,
        stdout: out,
        stderr: err,
    } = run_bounded(cmd, stdin, timeout).map_err(|e| match e {
        RunError::Spawn(e) => failed(format!("cannot start it: {e}")),
        RunError::Timeout => CniError::new(
            code::TRY_AGAIN_LATER,
            format!("delegated plugin {} timed out", bin.display()),
        )
        .with_details(format!("no answer within {} ms", timeout.as_millis())),
        RunError::Wait(e) => failed(e),
    })?;
    if !err.is_empty() {
        tracing::info!(plugin = %bin.display(), stderr = %String::from_utf8_lossy(&err).trim_end(), "delegated plugin stderr");
    }
    if status.success() {
        return Ok(out);
    }
    // The plugin's own error JSON, passed through with its code.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) {
        if let Some(c) = v.get("code").and_then(|c| c.as_u64()) {
            let msg = v
                .get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string();
            let details = v
                .get("details")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string();
            return Err(
                CniError::new(u32::try_from(c).unwrap_or(code::INTERNAL), msg)
                    .with_details(details),
            );
        }
    }
    Err(failed(format!(
        "exit {status}; stdout {:?}; stderr {:?}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    )))
}
