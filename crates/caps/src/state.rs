//! `state`: the IPAM module's own state directory, read by the host in one
//! call, and its files created atomically. Only regular files (never
//! followed symlinks) of at most `MAX_FILE_BYTES`, directly in the
//! directory the module already has as `/state`: no new reach, one call
//! instead of an open and a read per file, and no half-written file left by
//! a kill. The host works in the directory it opened and locked for the
//! call (a cap-std `Dir`): every name is resolved beneath it, never by path.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use super::bindings::cni::plugin::state::Host;
use super::bindings::wit::CniError;
use super::cap_error;
use super::CapsView;
use crate::protocol::error::code;

/// An IPAM call's state directory: opened (and locked) once by the host;
/// its path is for the sandbox's `/state` preopen and for messages.
#[derive(Clone)]
pub struct Directory {
    path: PathBuf,
    dir: Arc<Dir>,
}

impl Directory {
    pub fn new(path: PathBuf, dir: Dir) -> Directory {
        Directory {
            path,
            dir: Arc::new(dir),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Dir {
        &self.dir
    }
}

/// Allocation files hold a container id and an interface name. A container
/// id comes from one environment string, at most MAX_ARG_STRLEN (128 KiB),
/// so no allocation a DEL can name is larger than this.
const MAX_FILE_BYTES: u64 = (128 << 10) + 4096;

/// What one read asks for first: an allocation file is usually far smaller.
const FIRST_READ: usize = 4096;

/// `(name, content)` of every regular file of at most `MAX_FILE_BYTES` in
/// `dir`. A file that vanishes or changes type meanwhile is skipped: the
/// caller holds the directory's lock, so only foreign files can.
///
/// Three system calls a file (open beneath the directory, one read,
/// close): this runs on every host-local ADD and grows with the pods.
pub fn read_small_files(dir: &Dir) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let _timer = crate::kernel::timing::time("state", "read the state directory");
    let mut opts = OpenOptions::new();
    opts.read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    let mut out = Vec::new();
    let mut buf = [0u8; FIRST_READ];
    for entry in dir.entries()? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // d_type: no stat per entry; symlinks and directories are not files here.
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let Ok(mut file) = dir.open_with(&name, &opts) else {
            continue;
        };
        // A read of a regular file returns less than asked only at its end,
        // so one read usually tells the whole content.
        let Ok(n) = read_retrying(&mut file, &mut buf) else {
            continue;
        };
        if n < buf.len() {
            out.push((name, buf[..n].to_vec()));
            continue;
        }
        // A long container id: read on, up to the bound.
        let mut content = buf.to_vec();
        let mut more = vec![0u8; 16 << 10];
        let complete = loop {
            match read_retrying(&mut file, &mut more) {
                Ok(0) => break true,
                Ok(n) => content.extend_from_slice(&more[..n]),
                Err(_) => break false,
            }
            if content.len() as u64 > MAX_FILE_BYTES {
                break false;
            }
        };
        if complete {
            out.push((name, content));
        }
    }
    Ok(out)
}

fn read_retrying(file: &mut cap_std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Why a name cannot be created by `create_exclusive`, if it cannot.
fn bad_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("it is empty, \".\" or \"..\"")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else if name.contains('/') || name.chars().any(char::is_control) {
        Some("it contains '/' or a control character")
    } else if name == "lock" {
        Some("the lock file is the host's")
    } else {
        None
    }
}

/// Creates `name` in `dir` holding `content`, atomically: the content is
/// written to an unnamed file (O_TMPFILE) that is then linked under `name`,
/// which fails if the name exists. A kill before the link leaves nothing;
/// the reference plugin, which may share the directory and takes every file
/// for an allocation, never sees a partial or temporary file. Where the
/// filesystem has no O_TMPFILE, a plain exclusive create and write.
pub fn create_exclusive(dir: &Dir, name: &str, content: &[u8]) -> std::io::Result<bool> {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::Mode;
    use std::io::Write;
    // O_TMPFILE and linkat have no cap-std form; both act on the directory
    // itself and on `name`, one component checked by `bad_name`.
    match openat(
        dir,
        ".",
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => {
            let mut f = std::fs::File::from(fd);
            f.write_all(content)?;
            // Linked by its /proc/self/fd name: AT_EMPTY_PATH would need
            // CAP_DAC_READ_SEARCH, which a confined root may lack.
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f));
            match nix::unistd::linkat(
                nix::fcntl::AT_FDCWD,
                proc_path.as_str(),
                dir,
                name,
                AtFlags::AT_SYMLINK_FOLLOW,
            ) {
                Ok(()) => Ok(true),
                Err(nix::errno::Errno::EEXIST) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::EISDIR) => {
            let mut opts = OpenOptions::new();
            opts.write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW);
            let mut f = match dir.open_with(name, &opts) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(e),
            };
            if let Err(e) = f.write_all(content) {
                let _ = dir.remove_file(name);
                return Err(e);
            }
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

impl Host for CapsView<'_> {
    fn create_exclusive(
        &mut self,
        name: String,
        content: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, CniError>> {
        let Some(state) = self.state_dir else {
            return Ok(Err(cap_error(
                code::INTERNAL,
                "no state directory",
                "only IPAM calls have a network state directory",
            )));
        };
        if let Some(why) = bad_name(&name) {
            return Ok(Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!(
                    "cannot create {:?} in the state directory",
                    crate::protocol::error::bounded(&name, 64)
                ),
                format!("{why}: name one file directly in the directory"),
            )));
        }
        if content.len() as u64 > MAX_FILE_BYTES {
            return Ok(Err(cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!(
                    "state file {name} would be larger than {} KiB",
                    MAX_FILE_BYTES >> 10
                ),
                "keep each state file small",
            )));
        }
        Ok(create_exclusive(state.dir(), &name, &content).map_err(|e| {
            cap_error(
                code::IO_FAILURE,
                format!(
                    "cannot create {name} in the state directory {}",
                    state.path().display()
                ),
                e.to_string(),
            )
        }))
    }

    fn files(&mut self) -> wasmtime::Result<Result<Vec<(String, Vec<u8>)>, CniError>> {
        let Some(state) = self.state_dir else {
            return Ok(Err(cap_error(
                code::INTERNAL,
                "no state directory",
                "only IPAM calls have a network state directory",
            )));
        };
        Ok(read_small_files(state.dir()).map_err(|e| {
            cap_error(
                code::IO_FAILURE,
                format!("cannot read the state directory {}", state.path().display()),
                e.to_string(),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(d: &Path) -> Dir {
        Dir::open_ambient_dir(d, cap_std::ambient_authority()).expect("open dir")
    }

    #[test]
    fn only_small_regular_files_directly_inside() {
        let d = std::env::temp_dir().join(format!("wcni-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("10.0.0.2"), "cid\r\neth0").expect("write");
        std::fs::write(d.join("big"), vec![b'x'; 200_000]).expect("write");
        std::fs::write(
            d.join("just-too-big"),
            vec![b'x'; MAX_FILE_BYTES as usize + 1],
        )
        .expect("write");
        std::fs::write(d.join("largest"), vec![b'y'; MAX_FILE_BYTES as usize]).expect("write");
        std::fs::write(d.join("one-page"), vec![b'z'; FIRST_READ]).expect("write");
        std::fs::write(d.join("long-id"), vec![b'i'; 5000]).expect("write");
        std::fs::write(d.join("empty"), "").expect("write");
        std::fs::write(d.join("sub/inner"), "no").expect("write");
        std::fs::write(std::env::temp_dir().join("wcni-state-target"), "secret").expect("write");
        std::os::unix::fs::symlink(
            std::env::temp_dir().join("wcni-state-target"),
            d.join("link"),
        )
        .expect("symlink");
        let mut got = read_small_files(&open(&d)).expect("read");
        got.sort();
        assert_eq!(
            got,
            vec![
                ("10.0.0.2".to_string(), b"cid\r\neth0".to_vec()),
                ("empty".to_string(), Vec::new()),
                ("largest".to_string(), vec![b'y'; MAX_FILE_BYTES as usize]),
                ("long-id".to_string(), vec![b'i'; 5000]),
                ("one-page".to_string(), vec![b'z'; FIRST_READ]),
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn create_exclusive_is_whole_or_nothing_and_never_overwrites() {
        let d = std::env::temp_dir().join(format!("wcni-state-create-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        let dir = open(&d);
        assert!(create_exclusive(&dir, "10.0.0.2", b"cid\r\neth0").expect("create"));
        assert!(!create_exclusive(&dir, "10.0.0.2", b"other\r\neth0").expect("taken"));
        assert_eq!(
            std::fs::read(d.join("10.0.0.2")).expect("read"),
            b"cid\r\neth0"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("10.0.0.2"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // nothing else appeared (no temporary file)
        let names: Vec<_> = std::fs::read_dir(&d)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1);
        // a name taken by a symlink is taken, and the link is not followed
        std::os::unix::fs::symlink("/nonexistent-target", d.join("10.0.0.3")).expect("symlink");
        assert!(!create_exclusive(&dir, "10.0.0.3", b"x").expect("taken"));
        assert!(!Path::new("/nonexistent-target").exists());
        for bad in ["", ".", "..", "a/b", "lock", "x\n"] {
            assert!(bad_name(bad).is_some(), "{bad:?}");
        }
        assert!(bad_name("10.0.0.4").is_none());
        let _ = std::fs::remove_dir_all(&d);
    }
}
