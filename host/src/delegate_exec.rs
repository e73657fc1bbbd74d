//! Exec of a native CNI plugin (IPAM delegation to binaries without a
//! module), bounded in time.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use crate::protocol::env::Command;
use crate::protocol::error::{code, CniError};

fn command_name(c: Command) -> &'static str {
    match c {
        Command::Add => "ADD",
        Command::Del => "DEL",
        Command::Check => "CHECK",
        Command::Gc => "GC",
        Command::Status => "STATUS",
        Command::Version => "VERSION",
    }
}

/// Runs `bin` with the invocation's environment (CNI_COMMAND replaced) and
/// the full network configuration on stdin. Returns its stdout on success;
/// on failure, its error JSON as a CniError.
pub fn exec(bin: &Path, env: &[(String, String)], command: Command, stdin: &[u8], timeout: Duration) -> Result<Vec<u8>, CniError> {
    let failed = |m: String| CniError::new(code::INTERNAL, format!("delegated plugin {} failed", bin.display())).with_details(m);
    let mut child = Process::new(bin)
        .env_clear()
        .envs(env.iter().filter(|(k, _)| k != "CNI_COMMAND").map(|(k, v)| (k, v)))
        .env("CNI_COMMAND", command_name(command))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start it: {e}")))?;
    if let Some(mut si) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe: not our error.
        let _ = si.write_all(stdin);
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut out);
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut err);
        }
        (out, err)
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::new(code::TRY_AGAIN_LATER, format!("delegated plugin {} timed out", bin.display()))
                    .with_details(format!("no answer within {} ms", timeout.as_millis())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    let (out, err) = reader.join().map_err(|_| failed("output reader failed".into()))?;
    if !err.is_empty() {
        tracing::info!(plugin = %bin.display(), stderr = %String::from_utf8_lossy(&err).trim_end(), "delegated plugin stderr");
    }
    if status.success() {
        return Ok(out);
    }
    // The plugin's own error JSON, passed through with its code.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) {
        if let Some(c) = v.get("code").and_then(|c| c.as_u64()) {
            let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or("").to_string();
            let details = v.get("details").and_then(|m| m.as_str()).unwrap_or("").to_string();
            return Err(CniError::new(u32::try_from(c).unwrap_or(code::INTERNAL), msg).with_details(details));
        }
    }
    Err(failed(format!("exit {status}; stdout {:?}; stderr {:?}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&err))))
}
