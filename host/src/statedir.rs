//! An IPAM module's state directory: `<dataDir>/<network name>`, with the
//! network's `lock` file flock'd for the whole call. The reference host-local
//! takes the same lock on the same file, so both binaries can allocate from
//! one directory at once.
//!
//! The directory is opened once, by the path the configuration gives (as the
//! reference, which follows symlinks to it); everything inside it — where the
//! module writes — is done beneath that open directory (a cap-std `Dir`),
//! never by path, and nothing a module planted there is followed.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use cap_std::fs::PermissionsExt;
use cap_std::fs::{Dir, FileType, MetadataExt, OpenOptions, OpenOptionsExt, Permissions};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::caps::state::Directory;
use crate::caps::Limits;
use crate::protocol::error::{code, CniError};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// An open, locked network state directory. The lock is released on drop.
pub struct StateDir {
    /// The directory, as the sandbox and the `state` capability get it.
    pub dir: Directory,
    /// Whether this call created the directory (see `after_call`).
    created: bool,
    /// The regular files in it when the call began (the lock included):
    /// what the call adds is measured against them.
    before: HashSet<OsString>,
    /// None only for a DEL on a read-only directory, where nobody can write.
    _lock: Option<Flock<fs::File>>,
}

// The most files, and bytes in them, one call may add to its state
// directory (`Limits::state_files`, `state_bytes`: 64 and 1 MiB by
// default): host-local adds one allocation and one round-robin file per
// range set; a module once wrote 21,089 files (894 MiB, and a 1 TiB sparse
// file) in one call, after which every later call of that network read
// them all.

/// Removes an entry that is not a regular file, without following it.
fn remove_entry(dir: &Dir, name: &OsStr, t: FileType) -> std::io::Result<()> {
    if t.is_dir() {
        dir.remove_dir_all(name)
    } else {
        dir.remove_file(name)
    }
}

/// Removes from `dir` every entry that is not a regular file: symlinks
/// (a module may plant `lock -> ../../x`; the reference host-local sharing
/// the directory follows links when it reads and writes), FIFOs, sockets,
/// devices and directories (neither plugin makes any). Nothing is followed;
/// an entry that cannot be removed (a read-only directory) stays, and the
/// host still never follows it. Returns the regular files' names and how
/// many entries were removed.
fn scrub(dir: &Dir) -> (HashSet<OsString>, usize) {
    let mut files = HashSet::new();
    let mut removed = 0;
    for e in dir.entries().into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_file() {
            files.insert(e.file_name());
        } else if remove_entry(dir, &e.file_name(), t).is_ok() {
            removed += 1;
        }
    }
    (files, removed)
}

impl StateDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Ends a call in one walk of the directory: what the module planted
    /// (see `scrub`) goes; what it added past the per-call quota goes and
    /// fails the call (bytes counted as apparent or allocated size,
    /// whichever is larger: a sparse file counts too); and after a failed
    /// call, a directory this call created that holds only its lock goes
    /// too, so a refused configuration leaves nothing on disk (the
    /// reference writes nothing before its config is valid).
    pub fn after_call(&self, failed: bool, limits: &Limits) -> Result<(), CniError> {
        let dir = self.dir.dir();
        let mut planted = 0;
        let mut added = Vec::new();
        let mut bytes = 0u64;
        let mut kept_beside_lock = false;
        for e in dir.entries().into_iter().flatten().flatten() {
            let Ok(t) = e.file_type() else { continue };
            let name = e.file_name();
            if !t.is_file() {
                planted += usize::from(remove_entry(dir, &name, t).is_ok());
                continue;
            }
            // not followed: a DirEntry's metadata is the entry's own
            let meta = e.metadata();
            if name != "lock" {
                if let Err(err) = private(dir, &name, meta.as_ref().ok()) {
                    tracing::warn!(file = %self.path().join(&name).display(), %err, "cannot make a state file private (0600)");
                }
            }
            if !self.before.contains(&name) {
                bytes += meta.map_or(0, |m| m.size().max(m.blocks() * 512));
                added.push(name);
            } else if name != "lock" {
                kept_beside_lock = true;
            }
        }
        if planted > 0 {
            tracing::warn!(dir = %self.path().display(), removed = planted, "the module left symlinks, special files or directories in its state directory; removed");
        }
        let (max_files, max_bytes) = (limits.state_files, limits.state_bytes);
        let quota = if added.len() <= max_files && bytes <= max_bytes {
            Ok(())
        } else {
            for name in &added {
                let _ = dir.remove_file(name);
            }
            Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                format!(
                    "the plugin module wrote {} files ({bytes} bytes) to its state directory in one call",
                    added.len()
                ),
            )
            .with_details(format!(
                "at most {max_files} new files and {max_bytes} bytes per call (wasmCni.stateFiles, stateKiB); what it added was removed"
            )))
        };
        let nothing_added = added.is_empty() || quota.is_err();
        if (failed || quota.is_err()) && self.created && !kept_beside_lock && nothing_added {
            let _ = dir.remove_file("lock");
            // the directory itself by its path: it is the configuration's
            let _ = fs::remove_dir(self.path());
        }
        quota
    }
}

/// Makes a state file readable by root alone, as upstream host-local
/// (0600 since v1.4.0): a module writes through WASI, which creates files
/// 0644 (`last_reserved_ip.N`); the addresses it allocates through the host
/// are made 0600 from the start.
fn private(dir: &Dir, name: &OsStr, meta: Option<&cap_std::fs::Metadata>) -> std::io::Result<()> {
    if meta.is_some_and(|m| m.mode() & 0o077 != 0) {
        dir.set_permissions(name, Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Whether an error means the directory cannot be written at all.
fn read_only(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EROFS) | Some(nix::libc::EACCES) | Some(nix::libc::EPERM)
    )
}

/// `ipam.dataDir`, matched case-insensitively as Go's decoder does.
fn data_dir(config: &Value) -> Option<&str> {
    let ipam = config
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ipam"))
        .map(|(_, v)| v)?;
    ipam.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("dataDir"))
        .and_then(|(_, v)| v.as_str())
}

/// Opens (creating it for every verb but DEL) and locks the network's state
/// directory. A DEL is as tolerant as the reference's: with no directory
/// there is nothing to release (`Ok(None)`), and on a read-only one it goes
/// on without the lock, since nobody can allocate there either.
pub fn open(config: &Value, network: &str, del: bool) -> Result<Option<StateDir>, CniError> {
    let base = data_dir(config).unwrap_or(DEFAULT_DATA_DIR);
    if !Path::new(base).is_absolute() {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            format!("ipam dataDir {base:?} is not an absolute path"),
        )
        .with_details("set ipam.dataDir to an absolute directory"));
    }
    if network.is_empty() || network.contains('/') || network == "." || network == ".." {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            format!("invalid network name {network:?}"),
        ));
    }
    let path = Path::new(base).join(network);
    // A failed first call removes the directory it made (`after_call`)
    // while it holds the lock; a call that waited for that lock then holds
    // an unlinked file in a removed directory. It starts over: the
    // directory is made again, or for a DEL it is gone (nothing to release).
    for _ in 0..3 {
        match open_locked(&path, del)? {
            Opened::Locked(d) => return Ok(Some(d)),
            Opened::Absent => return Ok(None),
            Opened::Removed => continue,
        }
    }
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        format!(
            "IPAM state directory {} was removed three times while this call waited for its lock",
            path.display()
        ),
    )
    .with_details("concurrent calls on this network keep failing on their first use of it; retry"))
}

enum Opened {
    Locked(StateDir),
    /// A DEL found no directory: nothing to release.
    Absent,
    /// The directory or its lock went away under this call: try again.
    Removed,
}

fn open_locked(path: &Path, del: bool) -> Result<Opened, CniError> {
    let created = !path.is_dir();
    if del && created {
        return Ok(Opened::Absent);
    }
    let io = |what: String| {
        move |e: std::io::Error| CniError::new(code::IO_FAILURE, what).with_details(e.to_string())
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(io(format!(
            "cannot create IPAM state directory {}",
            path.display()
        )))?;
    let dir = match Dir::open_ambient_dir(path, cap_std::ambient_authority()) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(Opened::Removed),
        Err(e) => {
            return Err(io(format!(
                "cannot open IPAM state directory {}",
                path.display()
            ))(e))
        }
    };
    let lock_path = path.join("lock");
    let file = match open_lock(&dir) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(Opened::Removed),
        Err(e) if del && read_only(&e) => {
            let mut read = OpenOptions::new();
            read.read(true).custom_flags(nix::libc::O_NOFOLLOW);
            match dir.open_with("lock", &read) {
                Ok(f) => f.into_std(),
                Err(_) => {
                    tracing::warn!(dir = %path.display(), error = %e, "state directory is read-only; DEL goes on without its lock");
                    let before = scrubbed(&dir, path);
                    return Ok(Opened::Locked(StateDir {
                        dir: Directory::new(path.to_path_buf(), dir),
                        created,
                        before,
                        _lock: None,
                    }));
                }
            }
        }
        Err(e) => return Err(io(format!("cannot open {}", lock_path.display()))(e)),
    };
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| {
        CniError::new(
            code::IO_FAILURE,
            format!("cannot lock {}", lock_path.display()),
        )
        .with_details(e.to_string())
    })?;
    // The file locked must still be the directory's lock: a first call that
    // failed unlinks it, then removes the directory (`after_call`).
    let held = lock
        .metadata()
        .map(|m| {
            (
                std::os::unix::fs::MetadataExt::dev(&m),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        })
        .ok();
    let named = dir
        .symlink_metadata("lock")
        .map(|m| (m.dev(), m.ino()))
        .ok();
    if held.is_none() || held != named {
        return Ok(Opened::Removed);
    }
    // Under the lock: what other calls wrote while this one waited is
    // theirs, not this call's.
    let before = scrubbed(&dir, path);
    Ok(Opened::Locked(StateDir {
        dir: Directory::new(path.to_path_buf(), dir),
        created,
        before,
        _lock: Some(lock),
    }))
}

/// Opens (creating) the lock file. A module may have planted something
/// else under its name (a symlink, a directory, a FIFO): that is removed,
/// never followed, and a regular file made in its place.
fn open_lock(dir: &Dir) -> std::io::Result<fs::File> {
    let mut opts = OpenOptions::new();
    opts.read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    match dir.open_with("lock", &opts) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => return Ok(f.into_std()),
        Err(e) if !matches!(e.raw_os_error(), Some(nix::libc::ELOOP | nix::libc::EISDIR)) => {
            return Err(e)
        }
        _ => {}
    }
    if let Ok(m) = dir.symlink_metadata("lock") {
        remove_entry(dir, OsStr::new("lock"), m.file_type())?;
    }
    dir.open_with("lock", &opts)
        .map(cap_std::fs::File::into_std)
}

/// `scrub`, logged: the regular files' names.
fn scrubbed(dir: &Dir, path: &Path) -> HashSet<OsString> {
    let (before, planted) = scrub(dir);
    if planted > 0 {
        tracing::warn!(dir = %path.display(), removed = planted, "removed symlinks, special files or directories from the state directory");
    }
    before
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The names in `dir`.
    fn inventory(dir: &Path) -> HashSet<OsString> {
        fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn planted_links_and_special_files_are_removed_not_followed() {
        let root = std::env::temp_dir().join(format!("wcni-scrub-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join("data").join("net");
        fs::create_dir_all(&dir).unwrap();
        let outside = root.join("outside");
        fs::write(&outside, "keep").unwrap();
        std::os::unix::fs::symlink("../../outside", dir.join("lock")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("last_reserved_ip.0")).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("sub").join("10.0.0.9")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        fs::write(dir.join("10.0.0.2"), "cid\r\neth0").unwrap();
        let config = serde_json::json!({"ipam": {"dataDir": root.join("data")}});
        let opened = open(&config, "net", false).unwrap().unwrap();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["10.0.0.2", "lock"]);
        assert!(fs::symlink_metadata(dir.join("lock")).unwrap().is_file());
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        drop(opened);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_failed_first_call_leaves_no_directory() {
        let root = std::env::temp_dir().join(format!("wcni-discard-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let config = serde_json::json!({"ipam": {"dataDir": root}});
        let d = open(&config, "net", false).unwrap().unwrap();
        d.after_call(true, &Limits::default()).unwrap();
        assert!(!root.join("net").exists());
        // an existing one stays, and one holding an allocation stays
        let d = open(&config, "net", false).unwrap().unwrap();
        fs::write(root.join("net").join("10.0.0.2"), "x\r\neth0").unwrap();
        d.after_call(true, &Limits::default()).unwrap();
        assert!(root.join("net").join("10.0.0.2").exists());
        drop(d);
        let d = open(&config, "net", false).unwrap().unwrap();
        fs::remove_file(root.join("net").join("10.0.0.2")).unwrap();
        d.after_call(true, &Limits::default()).unwrap();
        assert!(root.join("net").join("lock").exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn what_a_call_adds_past_its_quota_is_removed() {
        let root = std::env::temp_dir().join(format!("wcni-quota-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let config = serde_json::json!({"ipam": {"dataDir": root}});
        let d = open(&config, "net", false).unwrap().unwrap();
        fs::write(d.path().join("10.0.0.2"), "old\r\neth0").unwrap();
        // a new call sees what is there now
        drop(d);
        let d = open(&config, "net", false).unwrap().unwrap();
        fs::write(d.path().join("10.0.0.3"), "new\r\neth0").unwrap();
        d.after_call(false, &Limits::default()).unwrap();
        drop(d);
        let d = open(&config, "net", false).unwrap().unwrap();
        let before = d.before.clone();
        for i in 0..=Limits::default().state_files {
            fs::write(d.path().join(format!("junk{i}")), "x").unwrap();
        }
        let e = d.after_call(false, &Limits::default()).unwrap_err();
        assert!(e.msg.contains("files"), "{e:?}");
        assert_eq!(inventory(d.path()), before);
        let sparse = fs::File::create(d.path().join("sparse")).unwrap();
        sparse.set_len(1 << 40).unwrap();
        drop(sparse);
        assert!(d.after_call(false, &Limits::default()).is_err());
        assert_eq!(inventory(d.path()), before);
        let _ = fs::remove_dir_all(&root);
    }

    /// A call that waited for the lock of a directory the lock's holder
    /// then removed (its failed first call) does not work in the removed
    /// directory: a DEL finds nothing to release, an ADD makes it again.
    #[test]
    fn a_directory_removed_while_waiting_for_its_lock_is_opened_again() {
        let root = std::env::temp_dir().join(format!("wcni-gone-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let config = serde_json::json!({"ipam": {"dataDir": root}});
        for del in [true, false] {
            let first = open(&config, "net", false).unwrap().unwrap();
            let waiter = {
                let config = config.clone();
                std::thread::spawn(move || {
                    open(&config, "net", del).map(|d| d.map(|d| d.path().to_path_buf()))
                })
            };
            std::thread::sleep(std::time::Duration::from_millis(200));
            first.after_call(true, &Limits::default()).unwrap();
            drop(first);
            let got = waiter.join().unwrap().unwrap();
            if del {
                assert!(got.is_none(), "{got:?}");
                assert!(!root.join("net").exists());
            } else {
                let dir = got.expect("reopened");
                assert!(dir.join("lock").is_file(), "{}", dir.display());
            }
        }
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn del_creates_nothing() {
        let root = std::env::temp_dir().join(format!("wcni-del-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let config = serde_json::json!({"ipam": {"dataDir": root}});
        assert!(open(&config, "net", true).unwrap().is_none());
        assert!(!root.exists());
    }
}
