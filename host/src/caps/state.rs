//! `state`: the IPAM module's own state directory, read by the host in one
//! call. Only regular files (never followed symlinks) of at most
//! `MAX_FILE_BYTES`, directly in the directory the module already has as
//! `/state`: no new reach, one call instead of an open and a read per file.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::bindings::cni::plugin::state::Host;
use super::bindings::wit::CniError;
use super::cap_error;
use crate::protocol::error::code;
use crate::runtime::sandbox::StoreData;

/// Allocation files hold a container id and an interface name.
const MAX_FILE_BYTES: u64 = 4096;

/// `(name, content)` of every regular file of at most `MAX_FILE_BYTES` in
/// `dir`. A file that vanishes or changes type meanwhile is skipped: the
/// caller holds the directory's lock, so only foreign files can.
///
/// Three system calls a file (open relative to the directory, one read,
/// close): this runs on every host-local ADD and grows with the pods.
pub fn read_small_files(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let _timer = crate::kernel::timing::time("state", "read the state directory");
    let dir_fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY)
        .open(dir)?;
    let mut out = Vec::new();
    // One byte more than allowed tells a too-large file apart.
    let mut buf = [0u8; MAX_FILE_BYTES as usize + 1];
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // d_type: no stat per entry; symlinks and directories are not files here.
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let Ok(fd) = openat(&dir_fd, name.as_str(), flags, Mode::empty()) else {
            continue;
        };
        // A read of a regular file returns less than asked only at its end,
        // so one read tells the whole (small) content or that it is too big.
        let read = loop {
            match nix::unistd::read(&fd, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r,
            }
        };
        match read {
            Ok(n) if n <= MAX_FILE_BYTES as usize => out.push((name, buf[..n].to_vec())),
            _ => continue,
        }
    }
    Ok(out)
}

impl Host for StoreData {
    fn files(&mut self) -> wasmtime::Result<Result<Vec<(String, Vec<u8>)>, CniError>> {
        let Some(dir) = self.state_dir.clone() else {
            return Ok(Err(cap_error(
                code::INTERNAL,
                "no state directory",
                "only IPAM calls have a network state directory",
            )));
        };
        Ok(read_small_files(&dir).map_err(|e| {
            cap_error(
                code::IO_FAILURE,
                format!("cannot read the state directory {}", dir.display()),
                e.to_string(),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_directly_inside() {
        let d = std::env::temp_dir().join(format!("wcni-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("10.0.0.2"), "cid\r\neth0").expect("write");
        std::fs::write(d.join("big"), vec![b'x'; 5000]).expect("write");
        std::fs::write(d.join("just-too-big"), vec![b'x'; 4097]).expect("write");
        std::fs::write(d.join("largest"), vec![b'y'; 4096]).expect("write");
        std::fs::write(d.join("empty"), "").expect("write");
        std::fs::write(d.join("sub/inner"), "no").expect("write");
        std::fs::write(std::env::temp_dir().join("wcni-state-target"), "secret").expect("write");
        std::os::unix::fs::symlink(
            std::env::temp_dir().join("wcni-state-target"),
            d.join("link"),
        )
        .expect("symlink");
        let mut got = read_small_files(&d).expect("read");
        got.sort();
        assert_eq!(
            got,
            vec![
                ("10.0.0.2".to_string(), b"cid\r\neth0".to_vec()),
                ("empty".to_string(), Vec::new()),
                ("largest".to_string(), vec![b'y'; 4096]),
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
