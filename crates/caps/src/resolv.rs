//! `resolv`: the file named by this network's `ipam.resolvConf`, read by the
//! host so that an IPAM module gets DNS settings without any file access of
//! its own.

use std::io::Read;

use super::bindings::cni::plugin::resolv::Host;
use super::bindings::wit::CniError;
use super::cap_error;
use super::CapsView;
use crate::protocol::error::code;

/// A resolv.conf is a few hundred bytes; more is not one.
const MAX_BYTES: u64 = 64 << 10;

fn get_ci<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Filesystems whose "files" are kernel or process state, not a resolver
/// file: `/proc/self/environ` would put the host's environment into a DNS
/// result. Their magic numbers (statfs f_type), from linux/magic.h.
const PSEUDO_FS: &[(i64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7363_6673, "securityfs"),
    (0x7472_6163, "tracefs"),
    (0x2702_1997, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6265_6570, "configfs"),
    (0xcafe_4a11, "bpf"),
    (0xde5e_81e4, "efivarfs"),
    (0x1cd1, "devpts"),
];

/// Reads `path` as the configuration names it: an absolute path to a
/// regular file (a FIFO or device is never opened blocking) on an ordinary
/// filesystem, at most `MAX_BYTES`. Errors say what to fix.
pub fn read_named(path: &str) -> Result<String, CniError> {
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |msg: String, details: String| cap_error(code::INVALID_NETWORK_CONFIG, msg, details);
    if !path.starts_with('/') {
        return Err(bad(
            format!("ipam resolvConf {path:?} is not an absolute path"),
            "name the resolver file by its absolute path".into(),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| bad(format!("cannot open ipam resolvConf {path}"), e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| bad(format!("cannot stat ipam resolvConf {path}"), e.to_string()))?;
    if !meta.is_file() {
        return Err(bad(
            format!("ipam resolvConf {path} is not a regular file"),
            "name a resolv.conf file".into(),
        ));
    }
    let fs_type = nix::sys::statfs::fstatfs(&file)
        .map_err(|e| bad(format!("cannot stat ipam resolvConf {path}"), e.to_string()))?
        .filesystem_type()
        .0 as i64;
    if let Some((_, name)) = PSEUDO_FS.iter().find(|(magic, _)| *magic == fs_type) {
        return Err(bad(
            format!("ipam resolvConf {path} is on {name}, not a resolver file"),
            "name a resolv.conf file on a regular filesystem (e.g. /etc/resolv.conf)".into(),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read ipam resolvConf {path}"), e.to_string()))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(bad(
            format!(
                "ipam resolvConf {path} is larger than {} KiB",
                MAX_BYTES >> 10
            ),
            "name a resolv.conf file".into(),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        bad(
            format!("ipam resolvConf {path} is not text"),
            "name a resolv.conf file".into(),
        )
    })
}

impl Host for CapsView<'_> {
    fn read_resolv_conf(&mut self) -> wasmtime::Result<Result<Option<String>, CniError>> {
        let call = self.call.clone();
        let config: serde_json::Value = match serde_json::from_slice(&call.config_bytes) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(cap_error(
                    code::DECODING_FAILURE,
                    "network configuration is not valid JSON",
                    e.to_string(),
                )))
            }
        };
        let path = get_ci(&config, "ipam")
            .and_then(|i| get_ci(i, "resolvConf"))
            .and_then(|p| p.as_str())
            .map(str::trim)
            .filter(|p| !p.is_empty());
        Ok(match path {
            None => Ok(None),
            Some(p) => read_named(p).map(Some),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_bounded_regular_files_off_pseudo_filesystems() {
        let d = std::env::temp_dir().join(format!("wcni-resolv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let good = d.join("resolv.conf");
        std::fs::write(&good, "nameserver 10.0.0.1\n").unwrap();
        assert_eq!(
            read_named(good.to_str().unwrap()).unwrap(),
            "nameserver 10.0.0.1\n"
        );
        for path in [
            "/proc/self/environ",
            "/proc/self/status",
            "/sys/kernel/uevent_seqnum",
        ] {
            let e = read_named(path).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{path}");
            assert!(
                e.msg.contains("proc") || e.msg.contains("sysfs"),
                "{path}: {e:?}"
            );
        }
        let e = read_named("/dev/null").unwrap_err();
        assert!(e.msg.contains("not a regular file"), "{e:?}");
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_named(fifo.to_str().unwrap()).unwrap_err();
        assert!(e.msg.contains("not a regular file"), "{e:?}");
        let big = d.join("big");
        std::fs::write(&big, vec![b'#'; (MAX_BYTES + 1) as usize]).unwrap();
        assert!(read_named(big.to_str().unwrap())
            .unwrap_err()
            .msg
            .contains("larger"));
        assert!(read_named("etc/resolv.conf").is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
