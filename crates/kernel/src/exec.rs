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

/// How a firewall tool failed. The tools have no other channel than their
/// words (nft exits 1 for every error; iptables 1 for most), so `classify`
/// reads them here, once, and every caller matches this instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFailure {
    /// The table, chain or flow asked about does not exist.
    Missing,
    /// iptables-nft cannot show the chain: absent (1.8.9 says so for a
    /// missing chain too) or holding rules iptables did not write.
    Incompatible,
    /// Anything else: the message says what.
    Other,
}

/// What `prog`'s error `message` means, by the words each tool uses.
fn classify(prog: &str, message: &str) -> ToolFailure {
    let iptables = prog.starts_with("iptables") || prog.starts_with("ip6tables");
    let missing = match prog {
        // the kernel's ENOENT, as nft prints it
        "nft" => message.contains("No such file or directory"),
        // "0 flow entries have been deleted": nothing matched
        "conntrack" => message.contains("0 flow entries"),
        _ if iptables => message.contains("No chain") || message.contains("does not exist"),
        _ => false,
    };
    if missing {
        ToolFailure::Missing
    } else if iptables && message.contains("incompatible") {
        ToolFailure::Incompatible
    } else {
        ToolFailure::Other
    }
}

/// Runs `prog args` with `stdin`; stdout on success, the tool's failure
/// (classified) in the error.
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
        let message = if stderr.trim().is_empty() {
            stdout.trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        Err(KernelError::Tool {
            command: what.clone(),
            status: out.status.code(),
            failure: classify(prog, &message),
            message,
        })
    }
}

/// Whether `e` is a tool's failure of kind `failure`.
pub fn tool_failed(e: &KernelError, failure: ToolFailure) -> bool {
    matches!(e, KernelError::Tool { failure: f, .. } if *f == failure)
}

/// The rules of nat chain `chain` as `iptables -S` lists them; `None` when
/// the chain does not exist. iptables-nft 1.8 reports a missing chain as
/// "incompatible" (the word it also uses for chains holding native nft
/// rules), so that answer is settled by asking nft whether the chain exists.
pub fn nat_chain_rules(v6: bool, chain: &str) -> KResult<Option<Vec<String>>> {
    let list = if v6 { "ip6tables" } else { "iptables" };
    let listed = run(list, &["-w", "-t", "nat", "-S", chain], "");
    let refusal = match listed {
        Ok(out) => return Ok(Some(out.lines().map(str::to_string).collect())),
        Err(e) if tool_failed(&e, ToolFailure::Missing) => return Ok(None),
        Err(e) if tool_failed(&e, ToolFailure::Incompatible) => e,
        Err(e) => return Err(e),
    };
    let family = if v6 { "ip6" } else { "ip" };
    match run("nft", &["list", "chain", family, "nat", chain], "") {
        Err(e) if tool_failed(&e, ToolFailure::Missing) => Ok(None),
        // It is there but iptables cannot show it: the caller's batch decides.
        _ => Err(refusal),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_tools_words_for_a_missing_object() {
        use ToolFailure::*;
        let cases = [
            ("nft", "Error: Could not process rule: No such file or directory", Missing),
            ("nft", "Error: syntax error, unexpected newline", Other),
            ("conntrack", "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.", Missing),
            ("iptables", "iptables: No chain/target/match by that name.", Missing),
            ("ip6tables", "ip6tables v1.8.9 (nf_tables): chain `CNI-X' in table `nat' is incompatible, use 'nft' tool.", Incompatible),
            ("iptables-restore", "iptables-restore: line 3 failed", Other),
            ("iptables", "iptables v1.8.9 (legacy): Couldn't load target `CNI-X':No such file or directory", Other),
            // another tool's words are not read as these
            ("ip", "Cannot find device \"x\": No chain", Other),
        ];
        for (prog, message, want) in cases {
            assert_eq!(classify(prog, message), want, "{prog}: {message}");
        }
    }

    #[test]
    fn a_failed_tool_carries_its_exit_code_and_kind() {
        let e = run("sh", &["-c", "echo oops >&2; exit 3"], "").unwrap_err();
        match &e {
            KernelError::Tool {
                status,
                failure,
                message,
                ..
            } => {
                assert_eq!(
                    (*status, *failure, message.as_str()),
                    (Some(3), ToolFailure::Other, "oops")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "sh -c echo oops >&2; exit 3 failed (exit status: 3): oops"
        );
    }
}
