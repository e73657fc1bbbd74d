//! Attachments whose ADD is in flight on this node, so that a GC never
//! releases what an ADD is still setting up.
//!
//! The CNI spec makes the runtime keep GC and ADD apart, but a GC whose
//! valid list was taken just before an ADD began would release that ADD's
//! fresh address (and its rules) while the ADD still runs. Each ADD holds
//! an exclusive flock on a marker file, `<RUN_DIR>/<network>/<hash of
//! container id and ifname>` holding `<container id>\n<ifname>`, from
//! before its module runs until its result is written; every GC adds the
//! attachments whose marker is locked to the runtime's valid list. A lock
//! dies with its process, so an ADD killed with -9 holds nothing, and the
//! next GC removes its stale marker. Markers are best effort: an ADD that
//! cannot make one (a read-only /run) goes on without it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::protocol::error::CniError;

pub const RUN_DIR: &str = "/run/wasm-cni/inflight";

/// The marker of one ADD in flight; removed (then unlocked) on drop.
pub struct Marker {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn marker_name(container_id: &str, ifname: &str) -> String {
    let d = Sha256::digest(format!("{container_id}\n{ifname}").as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Marks the ADD of (`container_id`, `ifname`) on `network` as in flight
/// under `root` until the marker is dropped.
pub fn mark_in(root: &Path, network: &str, container_id: &str, ifname: &str) -> Option<Marker> {
    let dir = root.join(network);
    let made = (|| -> std::io::Result<Marker> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let path = dir.join(marker_name(container_id, ifname));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)?;
        f.write_all(format!("{container_id}\n{ifname}").as_bytes())?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)?;
        Ok(Marker { path, _lock: lock })
    })();
    match made {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::info!(error = %e, "no in-flight marker for this ADD; a concurrent GC cannot see it");
            None
        }
    }
}

pub fn mark(network: &str, container_id: &str, ifname: &str) -> Option<Marker> {
    mark_in(Path::new(RUN_DIR), network, container_id, ifname)
}

/// The attachments of `network` whose ADD is in flight under `root`.
/// Stale markers (their process is gone) are removed on the way.
pub fn in_flight_in(root: &Path, network: &str) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(root.join(network)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Ok(f) = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        match Flock::lock(f, FlockArg::LockSharedNonblock) {
            // Nobody holds it: the ADD is over (or was killed).
            Ok(_unlocked) => {
                let _ = fs::remove_file(&path);
            }
            Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                if Read::by_ref(&mut f)
                    .take(256 << 10)
                    .read_to_string(&mut text)
                    .is_ok()
                {
                    if let Some((cid, ifname)) = text.split_once('\n') {
                        out.push((cid.to_string(), ifname.to_string()));
                    }
                }
            }
            Err(_) => {}
        }
    }
    out
}

/// The valid attachments a GC of `network` honours: the runtime's list
/// from the configuration, plus every attachment whose ADD is in flight.
pub fn gc_valid(raw: &serde_json::Value, network: &str) -> Result<Vec<(String, String)>, CniError> {
    let mut valid = crate::protocol::config::valid_attachments(raw)?;
    for a in in_flight_in(Path::new(RUN_DIR), network) {
        if !valid.contains(&a) {
            tracing::info!(container_id = %a.0, ifname = %a.1, "GC keeps an attachment whose ADD is in flight");
            valid.push(a);
        }
    }
    Ok(valid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_held_marker_is_in_flight_and_a_dropped_one_is_not() {
        let root = std::env::temp_dir().join(format!("wcni-inflight-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let m = mark_in(&root, "net", "cid1", "eth0").unwrap();
        assert_eq!(
            in_flight_in(&root, "net"),
            vec![("cid1".to_string(), "eth0".to_string())]
        );
        assert!(in_flight_in(&root, "other").is_empty());
        drop(m);
        assert!(in_flight_in(&root, "net").is_empty());
        // a stale marker (its process died) is removed by the next look
        let dir = root.join("net");
        fs::write(dir.join(marker_name("gone", "eth0")), "gone\neth0").unwrap();
        assert!(in_flight_in(&root, "net").is_empty());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        let _ = fs::remove_dir_all(&root);
    }
}
