//! Logging with tracing into a log file (never stdout). Each line carries the
//! container id, command, module and duration.
//!
//! The log is written as root, and its path may come from a conflist
//! (`wasmCni.logFile`), so opening it is the one place a config can make the
//! host write outside the network's state. What is allowed (see
//! `check_config_path` and `open_log`): an absolute `*.log` path without
//! `..`, in a directory that already exists (none is created), reached
//! without passing any symlink (the last component nor, for a conflist's
//! path, any directory on the way), and only if it is a regular file with a
//! single link. Every line is bounded (`MAX_LINE_BYTES`) and control
//! characters in it are escaped, so neither a module's text nor an echoed
//! value can forge a line; one call logs at most its quota (`Limits::log_bytes`,
//! 1 MiB by default), and
//! the file is rotated once to `<file>.1` when it passes `MAX_LOG_BYTES`,
//! so nothing floods the disk.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const DEFAULT_LOG_FILE: &str = "/var/log/wasm-cni.log";

/// A line longer than this is cut (a module error, an echoed config value).
pub const MAX_LINE_BYTES: usize = 8192;

/// Past this size the log is renamed to `<file>.1` (replacing an older one)
/// and a new file started: at most twice this on disk.
pub const MAX_LOG_BYTES: u64 = 32 << 20;

/// Checks a log path taken from a conflist: what a conflist writer may make
/// the root host append to. `Err` says what to fix.
pub fn check_config_path(p: &str) -> Result<PathBuf, String> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(format!("{p:?} is not an absolute path"));
    }
    // By the text: `Path::components` folds a `.` away.
    if p.split('/').any(|c| c == "." || c == "..") {
        return Err(format!("{p:?} contains \".\" or \"..\""));
    }
    if path.extension().and_then(|e| e.to_str()) != Some("log") {
        return Err(format!(
            "{p:?} does not end in .log (a conflist may only name a log file)"
        ));
    }
    if p.len() > 4096 || p.bytes().any(|b| b.is_ascii_control()) {
        return Err("the path is too long or contains control characters".into());
    }
    Ok(path.to_path_buf())
}

/// Who named the log file: the runtime's environment (trusted like the
/// binary itself) or a conflist (contained: see `open_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOrigin {
    Environment,
    Conflist,
}

/// The directory of `p`, opened. For a conflist's path no component may be
/// a symlink (a writable directory could otherwise be swapped for a link
/// to `/etc`): each is opened with `O_NOFOLLOW` from the one before.
fn open_parent(p: &Path, origin: LogOrigin) -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;
    // A bare file name (`WASM_CNI_LOG_FILE=cni.log`) is in the working directory.
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if origin == LogOrigin::Environment {
        return Ok(open(parent, dir_flags, Mode::empty())?);
    }
    if !parent.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a conflist's log path must be absolute",
        ));
    }
    let mut dir = open("/", dir_flags, Mode::empty())?;
    for c in parent.components().skip(1) {
        let std::path::Component::Normal(name) = c else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a plain path",
            ));
        };
        dir = openat(&dir, name, dir_flags | OFlag::O_NOFOLLOW, Mode::empty()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{}: {e} (a conflist's log path may not pass through a symlink)",
                    Path::new(name).display()
                ),
            )
        })?;
    }
    Ok(dir)
}

/// Opens `p` for appending: no symlink followed at the last component (nor
/// anywhere, for a conflist's path), no directory created, only a regular
/// file with one link (not a hard link to some other file), rotated when
/// too big.
pub fn open_log(p: &Path, origin: LogOrigin) -> io::Result<File> {
    let name = p
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = open_parent(p, origin)?;
    let open = || -> io::Result<File> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(
            &dir,
            name,
            flags,
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )?;
        Ok(File::from(fd))
    };
    let refuse = |why: &str| io::Error::new(io::ErrorKind::PermissionDenied, why.to_string());
    let mut f = open()?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(refuse("not a regular file"));
    }
    if m.nlink() > 1 {
        return Err(refuse("it has more than one hard link"));
    }
    if m.len() > MAX_LOG_BYTES {
        // Renaming is atomic: concurrent writers each either rotate the big
        // file or find it already gone (then use the fresh one).
        let mut old = name.to_owned();
        old.push(".1");
        let now = nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
        if now.is_ok_and(|s| s.st_ino == m.ino() && s.st_dev == m.dev()) {
            let _ = nix::fcntl::renameat(&dir, name, &dir, old.as_os_str());
        }
        f = open()?;
        if !f.metadata()?.is_file() {
            return Err(refuse("not a regular file"));
        }
    }
    Ok(f)
}

/// Makes one formatted event safe to append: control characters other than
/// the final newline escaped (so text cannot start a new line of its own),
/// cut at `MAX_LINE_BYTES`.
pub fn sanitize_line(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let mut out = String::with_capacity(body.len().min(MAX_LINE_BYTES) + 32);
    for (i, c) in body.char_indices() {
        if out.len() >= MAX_LINE_BYTES {
            out.push_str(&format!("… ({} bytes cut)", body.len() - i));
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out.into_bytes()
}

/// The most one process (one CNI call) writes to the log: a module that
/// logs in a loop must not fill the node's disk. Past it, one line says so
/// and the rest is dropped. Set once by `init` (`Limits::log_bytes`).
static CALL_LOG_QUOTA: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 20);

/// Bytes this process has logged so far.
static LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A writer that sanitizes each event before it reaches the destination.
/// The fmt subscriber formats an event into one buffer and writes it with
/// one `write_all`, so one `write` call here is one line.
struct LineWriter<W: Write>(W);

impl<W: Write> Write for LineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::sync::atomic::Ordering;
        let quota = CALL_LOG_QUOTA.load(Ordering::Relaxed);
        let line = sanitize_line(buf);
        let before = LOGGED.fetch_add(line.len() as u64, Ordering::Relaxed);
        if before + line.len() as u64 <= quota {
            self.0.write_all(&line)?;
        } else if before <= quota {
            self.0.write_all(
                format!(
                    "WARN wasm-cni: this call reached its log quota of {} KiB; further lines are dropped\n",
                    quota >> 10
                )
                .as_bytes(),
            )?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Installs the file logger once; later calls are no-ops. A log file that
/// cannot be opened (or is refused) falls back to stderr, with the reason:
/// logging must never fail a call. `quota` bounds what this call logs.
pub fn init(path: Option<&Path>, origin: LogOrigin, quota: u64) {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        CALL_LOG_QUOTA.store(quota, std::sync::atomic::Ordering::Relaxed);
        let level = match std::env::var_os("WASM_CNI_LOG_LEVEL").as_deref() {
            Some(l) if l == "debug" => tracing::Level::DEBUG,
            Some(l) if l == "warn" => tracing::Level::WARN,
            Some(l) if l == "error" => tracing::Level::ERROR,
            _ => tracing::Level::INFO,
        };
        let file = path.and_then(|p| match open_log(p, origin) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "wasm-cni: not logging to {}: {e}; logging to stderr",
                    p.display()
                );
                None
            }
        });
        let builder = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_target(false);
        let _ = match file {
            Some(f) => builder.with_writer(Mutex::new(LineWriter(f))).try_init(),
            None => builder
                .with_writer(|| LineWriter(std::io::stderr()))
                .try_init(),
        };
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn config_paths() {
        assert!(check_config_path("/var/log/cni/wasm.log").is_ok());
        for bad in [
            "relative.log",
            "/var/log/../../etc/x.log",
            "/var/log/./x.log",
            "/etc/passwd",
            "/root/.ssh/authorized_keys",
            "/var/log/x.log\n",
        ] {
            assert!(check_config_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_line_cannot_forge_another_or_grow_unbounded() {
        let out = sanitize_line(b"ERROR boom\nINFO ok container_id=x command=DEL\r\x1b[2J\n");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches('\n').count(), 1);
        assert!(s.ends_with('\n'));
        assert!(s.contains("boom\\nINFO ok"), "{s}");
        assert!(s.contains("\\u{1b}"), "{s}");
        let big = vec![b'x'; 5 << 20];
        let out = sanitize_line(&big);
        assert!(out.len() < MAX_LINE_BYTES + 64);
        assert!(String::from_utf8(out).unwrap().contains("bytes cut"));
    }

    #[test]
    fn one_call_logs_at_most_its_quota() {
        let mut w = LineWriter(Vec::new());
        let line = vec![b'y'; 4000];
        for _ in 0..2000 {
            w.write_all(&line).unwrap();
        }
        let out = String::from_utf8(w.0).unwrap();
        assert!(
            out.len() as u64 <= CALL_LOG_QUOTA.load(std::sync::atomic::Ordering::Relaxed) + 200,
            "{}",
            out.len()
        );
        assert_eq!(out.matches("log quota").count(), 1);
    }

    #[test]
    fn open_refuses_symlinks_links_and_missing_dirs_and_rotates() {
        let d = std::env::temp_dir().join(format!("wcni-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let target = d.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, d.join("link.log")).unwrap();
        assert!(open_log(&d.join("link.log"), LogOrigin::Conflist).is_err());
        std::fs::hard_link(&target, d.join("hard.log")).unwrap();
        assert!(open_log(&d.join("hard.log"), LogOrigin::Conflist).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(open_log(&d.join("missing/dir/x.log"), LogOrigin::Conflist).is_err());
        assert!(!d.join("missing").exists());
        // A directory on the way that is a symlink: followed for the
        // environment's path, never for a conflist's.
        std::fs::create_dir(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("via")).unwrap();
        assert!(open_log(&d.join("via/x.log"), LogOrigin::Conflist).is_err());
        assert!(!d.join("real/x.log").exists());
        assert!(open_log(&d.join("via/x.log"), LogOrigin::Environment).is_ok());
        assert!(d.join("real/x.log").exists());
        // A conflist's path is absolute (check_config_path), and walked so.
        assert!(open_log(Path::new("bare.log"), LogOrigin::Conflist).is_err());
        std::fs::create_dir(d.join("dir.log")).unwrap();
        assert!(open_log(&d.join("dir.log"), LogOrigin::Conflist).is_err());
        // rotation
        let log = d.join("w.log");
        let f = File::create(&log).unwrap();
        f.set_len(MAX_LOG_BYTES + 1).unwrap();
        drop(f);
        let mut f = open_log(&log, LogOrigin::Conflist).unwrap();
        f.write_all(b"fresh\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "fresh\n");
        assert_eq!(
            std::fs::metadata(d.join("w.log.1")).unwrap().len(),
            MAX_LOG_BYTES + 1
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
