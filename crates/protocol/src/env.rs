//! `CNI_*` environment parsing and validation. Mirrors the reference `skel`
//! so a runtime sees the same error codes from us as from the Go plugins;
//! messages additionally say which variable to fix.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::{code, CniError};

/// Linux `IFNAMSIZ - 1`: longer names are rejected by the kernel anyway,
/// failing early gives a clear message instead of a netlink error.
pub const MAX_IFNAME_LEN: usize = 15;

/// The CNI verb from `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    /// Every verb, for exhaustive tests and help text.
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Gc,
        Command::Status,
        Command::Version,
    ];

    /// Exact, case-sensitive match like the reference (`add` is unknown).
    pub fn parse(s: &str) -> Result<Command, CniError> {
        match s {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "GC" => Ok(Command::Gc),
            "STATUS" => Ok(Command::Status),
            "VERSION" => Ok(Command::Version),
            other => Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("unknown CNI_COMMAND: {other}"),
            )
            .with_details("CNI_COMMAND must be one of ADD, DEL, CHECK, GC, STATUS, VERSION")),
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Verbs that act on one attachment and so need container id and ifname.
    pub fn needs_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }

    /// DEL may run after the netns is gone, so only ADD/CHECK need it.
    pub fn needs_netns(self) -> bool {
        matches!(self, Command::Add | Command::Check)
    }

    /// The reference skel requires CNI_PATH for everything but VERSION
    /// (stricter than the spec); we match it so behaviour is identical.
    pub fn needs_path(self) -> bool {
        !matches!(self, Command::Version)
    }
}

impl FromStr for Command {
    type Err = CniError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Command::parse(s)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validated invocation environment. Fields a verb does not use are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the reference rule for container ids and
/// network names. Both end up in file names (host-local state, result
/// cache), so this is also what keeps them path-safe.
pub fn is_valid_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Reference `ValidateInterfaceName`: what the kernel would reject, caught
/// before any netlink call.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = |msg: &str| {
        CniError::new(code::INVALID_ENVIRONMENT, format!("CNI_IFNAME {msg}"))
            .with_details(format!("CNI_IFNAME is {name:?}"))
    };
    if name.is_empty() {
        return Err(bad("is empty; set it to the interface name, e.g. eth0"));
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(bad("is too long; use at most 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("must not be \".\" or \"..\""));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(bad("must not contain '/', ':' or whitespace"));
    }
    Ok(())
}

/// Parse `CNI_ARGS` (`K1=V1;K2=V2`). More lenient than the reference in two
/// harmless ways: empty parts (`a=b;`) are skipped and values may contain
/// `=` (split at the first one). A part without `=` or with an empty key is
/// an error.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    let mut out = Vec::new();
    for part in s.split(';') {
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                return Err(
                    CniError::new(code::INVALID_ENVIRONMENT, "ARGS: invalid pair").with_details(
                        format!("CNI_ARGS entry {part:?} must have the form KEY=VALUE"),
                    ),
                )
            }
        }
    }
    Ok(out)
}

/// `IgnoreUnknown=1|true` (value case-insensitive, key exact, last one
/// wins, as in the reference): plugins must then not reject unknown keys.
pub fn ignore_unknown(args: &[(String, String)]) -> bool {
    args.iter()
        .rev()
        .find(|(k, _)| k == "IgnoreUnknown")
        .is_some_and(|(_, v)| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Read and validate the environment through `get` (injected so tests and
/// delegation need not touch the process environment). An empty value
/// counts as missing, as in the reference. Callers that want the
/// reference's "about" text when CNI_COMMAND is unset must check that
/// before calling this.
pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
    let var = |name: &str| get(name).unwrap_or_default();

    let raw_command = var("CNI_COMMAND");
    if raw_command.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            "required env variables [CNI_COMMAND] missing",
        )
        .with_details("set CNI_COMMAND to ADD, DEL, CHECK, GC, STATUS or VERSION"));
    }
    let command = Command::parse(&raw_command)?;

    let container_id = var("CNI_CONTAINERID");
    let netns = var("CNI_NETNS");
    let ifname = var("CNI_IFNAME");
    let raw_path = var("CNI_PATH");

    let mut missing = Vec::new();
    if command.needs_attachment() && container_id.is_empty() {
        missing.push("CNI_CONTAINERID");
    }
    if command.needs_netns() && netns.is_empty() {
        missing.push("CNI_NETNS");
    }
    if command.needs_attachment() && ifname.is_empty() {
        missing.push("CNI_IFNAME");
    }
    if command.needs_path() && raw_path.is_empty() {
        missing.push("CNI_PATH");
    }
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("required env variables [{}] missing", missing.join(",")),
        )
        .with_details(format!("{} requires {}", command, missing.join(", "))));
    }

    let (container_id, ifname) = if command.needs_attachment() {
        if !is_valid_identifier(&container_id) {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                "CNI_CONTAINERID contains invalid characters",
            )
            .with_details(format!(
                "CNI_CONTAINERID is {container_id:?}; it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
            )));
        }
        validate_ifname(&ifname)?;
        (container_id, ifname)
    } else {
        (String::new(), String::new())
    };
    let netns = if matches!(command, Command::Add | Command::Del | Command::Check) {
        netns
    } else {
        String::new()
    };

    let args = match get("CNI_ARGS") {
        Some(a) => parse_cni_args(&a)?,
        None => Vec::new(),
    };
    let path = raw_path
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();

    Ok(CniEnv {
        command,
        container_id,
        netns,
        ifname,
        args,
        path,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn full(cmd: &str) -> Vec<(&str, &str)> {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    }

    fn without<'a>(mut v: Vec<(&'a str, &'a str)>, key: &str) -> Vec<(&'a str, &'a str)> {
        v.retain(|(k, _)| *k != key);
        v
    }

    fn with<'a>(
        mut v: Vec<(&'a str, &'a str)>,
        key: &'a str,
        val: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        v.retain(|(k, _)| *k != key);
        v.push((key, val));
        v
    }

    #[test]
    fn command_parse_roundtrip() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str()).unwrap(), c);
            assert_eq!(c.to_string().parse::<Command>().unwrap(), c);
        }
    }

    #[test]
    fn command_unknown_and_case_sensitive() {
        for s in ["add", "Add", "FOO", "", " ADD"] {
            let e = Command::parse(s).unwrap_err();
            assert_eq!(e.code, 4);
            assert_eq!(e.msg, format!("unknown CNI_COMMAND: {s}"));
        }
    }

    #[test]
    fn add_full_env() {
        let env = from_lookup(lookup(&with(
            full("ADD"),
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=p",
        )))
        .unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id, "abc123");
        assert_eq!(env.netns, "/run/netns/x");
        assert_eq!(env.ifname, "eth0");
        assert_eq!(
            env.args,
            vec![
                ("IgnoreUnknown".to_string(), "1".to_string()),
                ("K8S_POD_NAME".to_string(), "p".to_string())
            ]
        );
        assert_eq!(env.path, vec![PathBuf::from("/opt/cni/bin")]);
    }

    #[test]
    fn missing_command() {
        let e = from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(e.code, 4);
        assert_eq!(e.msg, "required env variables [CNI_COMMAND] missing");
        let e = from_lookup(lookup(&[("CNI_COMMAND", "")])).unwrap_err();
        assert_eq!(e.msg, "required env variables [CNI_COMMAND] missing");
    }

    #[test]
    fn unknown_command_in_env() {
        let e = from_lookup(lookup(&full("REMOVE"))).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (4, "unknown CNI_COMMAND: REMOVE"));
    }

    #[test]
    fn required_vars_per_command() {
        // (command, var, required?)
        let table = [
            ("ADD", "CNI_CONTAINERID", true),
            ("ADD", "CNI_NETNS", true),
            ("ADD", "CNI_IFNAME", true),
            ("ADD", "CNI_PATH", true),
            ("CHECK", "CNI_CONTAINERID", true),
            ("CHECK", "CNI_NETNS", true),
            ("CHECK", "CNI_IFNAME", true),
            ("CHECK", "CNI_PATH", true),
            ("DEL", "CNI_CONTAINERID", true),
            ("DEL", "CNI_NETNS", false),
            ("DEL", "CNI_IFNAME", true),
            ("DEL", "CNI_PATH", true),
            ("GC", "CNI_CONTAINERID", false),
            ("GC", "CNI_NETNS", false),
            ("GC", "CNI_IFNAME", false),
            ("GC", "CNI_PATH", true),
            ("STATUS", "CNI_CONTAINERID", false),
            ("STATUS", "CNI_NETNS", false),
            ("STATUS", "CNI_IFNAME", false),
            ("STATUS", "CNI_PATH", true),
            ("VERSION", "CNI_CONTAINERID", false),
            ("VERSION", "CNI_NETNS", false),
            ("VERSION", "CNI_IFNAME", false),
            ("VERSION", "CNI_PATH", false),
        ];
        for (cmd, var, required) in table {
            for val in [None, Some("")] {
                let env = match val {
                    None => without(full(cmd), var),
                    Some(v) => with(full(cmd), var, v),
                };
                let r = from_lookup(lookup(&env));
                if required {
                    let e = r.unwrap_err();
                    assert_eq!(e.code, 4, "{cmd} {var}");
                    assert_eq!(e.msg, format!("required env variables [{var}] missing"));
                    assert!(e.details.contains(var) && e.details.contains(cmd));
                } else {
                    assert!(r.is_ok(), "{cmd} without {var}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn all_missing_listed_in_order() {
        let e = from_lookup(lookup(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        );
    }

    #[test]
    fn gc_status_version_drop_attachment_fields() {
        for cmd in ["GC", "STATUS", "VERSION"] {
            // Even garbage in the unused variables is not an error.
            let env = with(
                with(full(cmd), "CNI_IFNAME", "a/b"),
                "CNI_CONTAINERID",
                "-x",
            );
            let env = from_lookup(lookup(&env)).unwrap();
            assert_eq!(env.container_id, "");
            assert_eq!(env.ifname, "");
            assert_eq!(env.netns, "");
        }
        let env = from_lookup(lookup(&[("CNI_COMMAND", "VERSION")])).unwrap();
        assert!(env.path.is_empty());
    }

    #[test]
    fn del_keeps_netns_if_given() {
        let env = from_lookup(lookup(&full("DEL"))).unwrap();
        assert_eq!(env.netns, "/run/netns/x");
        let env = from_lookup(lookup(&without(full("DEL"), "CNI_NETNS"))).unwrap();
        assert_eq!(env.netns, "");
    }

    #[test]
    fn container_id_validation() {
        for good in ["a", "0", "abc-DEF_1.2", "a..", "A-"] {
            assert!(is_valid_identifier(good), "{good}");
            assert!(from_lookup(lookup(&with(full("ADD"), "CNI_CONTAINERID", good))).is_ok());
        }
        for bad in ["-a", "_a", ".a", "a b", "a/b", "a:b", "é", "a\n", "a$"] {
            assert!(!is_valid_identifier(bad), "{bad:?}");
            let e = from_lookup(lookup(&with(full("DEL"), "CNI_CONTAINERID", bad))).unwrap_err();
            assert_eq!(e.code, 4);
            assert!(e.msg.contains("CNI_CONTAINERID"));
            assert!(e.details.contains("must match"));
        }
        assert!(!is_valid_identifier(""));
    }

    #[test]
    fn ifname_validation() {
        for good in ["eth0", "a", "123456789012345", "net1.100", "veth-x_y", "é"] {
            assert!(validate_ifname(good).is_ok(), "{good}");
        }
        let cases = [
            ("", "empty"),
            ("1234567890123456", "too long"),
            ("éééééééé", "too long"), // 16 bytes, 8 chars
            (".", "\".\""),
            ("..", "\".\""),
            ("a/b", "'/'"),
            ("a:b", "'/'"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("a\u{a0}b", "whitespace"),
            ("a\u{2028}", "whitespace"),
        ];
        for (bad, why) in cases {
            let e = validate_ifname(bad).unwrap_err();
            assert_eq!(e.code, 4);
            assert!(e.msg.starts_with("CNI_IFNAME"), "{e:?}");
            assert!(e.msg.contains(why), "{bad:?}: {e:?}");
        }
        // Through the environment (empty counts as missing there).
        let e = from_lookup(lookup(&with(full("CHECK"), "CNI_IFNAME", "a:b"))).unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"));
    }

    #[test]
    fn path_split() {
        let env = from_lookup(lookup(&with(full("ADD"), "CNI_PATH", ":/a::/b/c:"))).unwrap();
        assert_eq!(env.path, vec![PathBuf::from("/a"), PathBuf::from("/b/c")]);
        // Only separators: present but no entries. Still accepted (like skel).
        let env = from_lookup(lookup(&with(full("GC"), "CNI_PATH", ":"))).unwrap();
        assert!(env.path.is_empty());
    }

    #[test]
    fn cni_args_parse() {
        assert_eq!(parse_cni_args("").unwrap(), vec![]);
        assert_eq!(parse_cni_args(";;").unwrap(), vec![]);
        assert_eq!(
            parse_cni_args("A=1;;B=;C=x=y;").unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "".into()),
                ("C".into(), "x=y".into())
            ]
        );
        for bad in ["A", "A=1;B", "=v", "A=1;=2"] {
            let e = parse_cni_args(bad).unwrap_err();
            assert_eq!(e.code, 4);
            assert_eq!(e.msg, "ARGS: invalid pair");
            assert!(e.details.contains("CNI_ARGS"));
        }
        let e = from_lookup(lookup(&with(full("ADD"), "CNI_ARGS", "junk"))).unwrap_err();
        assert_eq!(e.msg, "ARGS: invalid pair");
    }

    #[test]
    fn containerd_and_podman_args() {
        let a = parse_cni_args(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1",
        )
        .unwrap();
        assert_eq!(a.len(), 5);
        assert!(ignore_unknown(&a));
        let a = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=c;MAC=c2:11:22:33:44:55;IP=10.0.0.2")
            .unwrap();
        assert_eq!(a[2], ("MAC".into(), "c2:11:22:33:44:55".into()));
    }

    #[test]
    fn ignore_unknown_values() {
        let a = |s: &str| parse_cni_args(s).unwrap();
        for yes in [
            "IgnoreUnknown=1",
            "IgnoreUnknown=true",
            "IgnoreUnknown=TRUE",
            "IgnoreUnknown=True",
        ] {
            assert!(ignore_unknown(&a(yes)), "{yes}");
        }
        for no in [
            "",
            "IgnoreUnknown=0",
            "IgnoreUnknown=false",
            "IgnoreUnknown=yes",
            "ignoreunknown=1",
            "X=1",
        ] {
            assert!(!ignore_unknown(&a(no)), "{no}");
        }
        assert!(!ignore_unknown(&a("IgnoreUnknown=1;IgnoreUnknown=0")));
        assert!(ignore_unknown(&a("IgnoreUnknown=0;IgnoreUnknown=1")));
    }

    #[test]
    fn needs_table() {
        assert!(Command::Add.needs_attachment() && Command::Add.needs_netns());
        assert!(Command::Del.needs_attachment() && !Command::Del.needs_netns());
        assert!(!Command::Gc.needs_attachment() && Command::Gc.needs_path());
        assert!(!Command::Version.needs_path());
    }
}
