//! Bounded exec of the firewall tools (iptables-restore, iptables-save, nft,
//! conntrack, ip), shared by the portmap and masquerade layers.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::kernel::{KResult, KernelError};

/// Bound for one exec, the xtables lock wait included.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// Runtimes may exec plugins with a thin PATH: the sbin dirs are searched too.
fn locate(prog: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| PathBuf::from(d).join(prog))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| PathBuf::from(prog))
}

/// Runs `prog args` with `stdin`; stdout on success, stderr in the error.
pub fn run(prog: &str, args: &[&str], stdin: &str) -> KResult<String> {
    let what = format!("{prog} {}", args.join(" "));
    let mut child = Command::new(locate(prog))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KernelError::Failed(format!("cannot run {prog}: {e} (is it installed?)")))?;
    let input = stdin.as_bytes().to_vec();
    let mut si = child.stdin.take();
    // Written from a thread: a large batch must not deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        if let Some(s) = si.as_mut() {
            let _ = s.write_all(&input);
        }
    });
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut err);
        }
        (out, err)
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > EXEC_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(KernelError::Timeout(format!("{what}: no answer within {} s", EXEC_TIMEOUT.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => return Err(KernelError::Failed(format!("{what}: {e}"))),
        }
    };
    let _ = writer.join();
    let (out, err) = reader.join().map_err(|_| KernelError::Failed(format!("{what}: output reader failed")))?;
    if status.success() {
        Ok(out)
    } else {
        let msg = if err.trim().is_empty() { out.trim().to_string() } else { err.trim().to_string() };
        Err(KernelError::Failed(format!("{what} failed ({status}): {msg}")))
    }
}
