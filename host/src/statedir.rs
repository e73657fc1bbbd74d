//! An IPAM module's state directory: `<dataDir>/<network name>`, with the
//! network's `lock` file flock'd for the whole call. The reference host-local
//! takes the same lock on the same file, so both binaries can allocate from
//! one directory at once.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::protocol::error::{code, CniError};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// An open, locked network state directory. The lock is released on drop.
pub struct StateDir {
    pub path: PathBuf,
    /// None only for a DEL on a read-only directory, where nobody can write.
    _lock: Option<Flock<File>>,
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
    if del && !path.is_dir() {
        return Ok(None);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&path)
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("cannot create IPAM state directory {}", path.display()),
            )
            .with_details(e.to_string())
        })?;
    let lock_path = path.join("lock");
    let file = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&lock_path)
    {
        Ok(f) => f,
        Err(e) if del && read_only(&e) => {
            match fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
                .open(&lock_path)
            {
                Ok(f) => f,
                Err(_) => {
                    tracing::warn!(dir = %path.display(), error = %e, "state directory is read-only; DEL goes on without its lock");
                    return Ok(Some(StateDir { path, _lock: None }));
                }
            }
        }
        Err(e) => {
            return Err(CniError::new(
                code::IO_FAILURE,
                format!("cannot open {}", lock_path.display()),
            )
            .with_details(e.to_string()))
        }
    };
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| {
        CniError::new(
            code::IO_FAILURE,
            format!("cannot lock {}", lock_path.display()),
        )
        .with_details(e.to_string())
    })?;
    Ok(Some(StateDir {
        path,
        _lock: Some(lock),
    }))
}
