//! Bounded exec of the firewall tools (iptables-restore, iptables-save, nft,
//! conntrack, ip), shared by the portmap and masquerade layers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{run_bounded, RunError};

use crate::{KResult, KernelError};

/// Bound for one exec, the xtables lock wait included.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// Runtimes may exec plugins with a thin PATH: the sbin dirs are searched too.
pub(crate) fn locate(prog: &str) -> PathBuf {
    // var_os: a PATH that is not UTF-8 is still searched, not dropped.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| PathBuf::from(prog))
}

/// Runs `prog args` with `stdin`; stdout on success, stderr in the error.
pub fn run(prog: &str, args: &[&str], stdin: &str) -> KResult<String> {
    let what = format!("{prog} {}", args.join(" "));
    let _timer = crate::timing::time("exec", &what);
    let mut cmd = Command::new(locate(prog));
    cmd.args(args);
    let out = run_bounded(cmd, stdin.as_bytes(), EXEC_TIMEOUT).map_err(|e| match e {
        RunError::Spawn(e) => KernelError::ToolMissing {
            tool: prog.to_string(),
            reason: e.to_string(),
        },
        RunError::Timeout => KernelError::Timeout(format!(
            "{what}: no answer within {} s",
            EXEC_TIMEOUT.as_secs()
        )),
        RunError::Wait(e) => KernelError::Failed(format!("{what}: {e}")),
    })?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr),
    );
    if out.status.success() {
        Ok(stdout)
    } else {
        let msg = if stderr.trim().is_empty() {
            stdout.trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        Err(KernelError::Failed(format!(
            "{what} failed ({}): {msg}",
            out.status
        )))
    }
}

/// The rules of nat chain `chain` as `iptables -S` lists them; `None` when
/// the chain does not exist. iptables-nft 1.8 reports a missing chain as
/// "incompatible" (the word it also uses for chains holding native nft
/// rules), so that answer is settled by asking nft whether the chain exists.
pub fn nat_chain_rules(v6: bool, chain: &str) -> KResult<Option<Vec<String>>> {
    let list = if v6 { "ip6tables" } else { "iptables" };
    let message = match run(list, &["-w", "-t", "nat", "-S", chain], "") {
        Ok(out) => return Ok(Some(out.lines().map(str::to_string).collect())),
        Err(KernelError::Failed(m)) => m,
        Err(e) => return Err(e),
    };
    if message.contains("No chain") || message.contains("does not exist") {
        return Ok(None);
    }
    if !message.contains("incompatible") {
        return Err(KernelError::Failed(message));
    }
    let family = if v6 { "ip6" } else { "ip" };
    match run("nft", &["list", "chain", family, "nat", chain], "") {
        Err(e) if nft_object_missing(&e) => Ok(None),
        // It is there but iptables cannot show it: the caller's batch decides.
        _ => Err(KernelError::Failed(message)),
    }
}

/// Whether `nft` failed because the table or chain it was asked about does
/// not exist. nft exits 1 for every error and says which only in its
/// message (the kernel's ENOENT text), so this is the one place that reads
/// a tool's words for it.
pub fn nft_object_missing(e: &KernelError) -> bool {
    matches!(e, KernelError::Failed(m) if m.contains("No such file or directory"))
}
