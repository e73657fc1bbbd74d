//! The precompiled-module cache.
//!
//! Modules are compiled once (at install, or on first use when missing) into
//! a root-owned 0700 directory. An entry is the wasmtime artifact
//! `<module sha256>-<engine key>.cwasm`, mapped straight from the file at
//! load, plus a `.meta` file with its length and CRC32 and what the compile
//! step learned about the module (kind, version), so the CNI path neither
//! compiles nor instantiates twice. Deserialising native code is unsafe by
//! nature, so only files from this directory are ever loaded, never a
//! `.cwasm` found next to the modules.
//!
//! Hashing on every exec would cost more than the wasm work itself, so the
//! module digest is memoised per file identity (device, inode, size, mtime,
//! ctime). The CRC guards against accidental corruption: the `.meta` file
//! also records the artifact's identity right after it was renamed into
//! place, and the CRC is checked whenever the artifact's identity differs
//! from it (edited in place, truncated, copied or restored from a backup),
//! not on every exec, where reading the whole artifact cost 0.1–0.4 ms of a
//! ~1 ms load. An artifact is only ever written whole (fsynced, then
//! renamed), and silent media corruption of an unchanged file is left to the
//! filesystem, as for the wasm-cni binary itself. The directory is
//! root-only, so a deliberate change needs root anyway.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::caps::bindings::wit::PluginKind;

/// What the compile step recorded about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMeta {
    pub kind: PluginKind,
    pub version: String,
}

/// A cache entry that passed its checks: metadata and the artifact's path.
pub struct Entry {
    pub meta: ModuleMeta,
    pub code_path: PathBuf,
}

/// Why an entry could not be used.
#[derive(Debug)]
pub enum Miss {
    Absent,
    /// Present but unreadable or failing its checksum: recompile.
    Corrupt(String),
}

pub struct Cache {
    dir: PathBuf,
    /// A private cache made for one call (see `ephemeral`), removed on drop.
    ephemeral: bool,
}

impl Drop for Cache {
    fn drop(&mut self) {
        if self.ephemeral {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn kind_byte(kind: PluginKind) -> u8 {
    match kind {
        PluginKind::Ipam => 1,
        PluginKind::Interface => 2,
        PluginKind::Portmap => 3,
        PluginKind::Bandwidth => 4,
    }
}

fn kind_from_byte(b: u8) -> Option<PluginKind> {
    Some(match b {
        1 => PluginKind::Ipam,
        2 => PluginKind::Interface,
        3 => PluginKind::Portmap,
        4 => PluginKind::Bandwidth,
        _ => return None,
    })
}

/// A temporary-file tag unique across processes and threads, so concurrent
/// writers of one entry never share a temporary file.
fn unique() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    /// Opens (creating if needed) the cache directory and refuses one that
    /// another user could write: a writable cache is a code-injection path.
    pub fn open(dir: &Path) -> Result<Cache, String> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create module cache {}: {e}", dir.display()))?;
        }
        let meta = fs::symlink_metadata(dir)
            .map_err(|e| format!("cannot stat module cache {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("module cache {} is not a directory", dir.display()));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(format!(
                "module cache {} is owned by uid {}, not by uid {euid}; chown it or set WASM_CNI_CACHE_DIR",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "module cache {} is writable by group or others (mode {:o}); chmod 700 it",
                dir.display(),
                meta.mode() & 0o7777
            ));
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            ephemeral: false,
        })
    }

    /// A fresh 0700 cache of this process's own (mkdtemp), removed when
    /// dropped: for a DEL that must run although the configured cache is
    /// unusable. Its modules are compiled for this call only.
    pub fn ephemeral() -> Result<Cache, String> {
        let template = std::env::temp_dir().join("wasm-cni-cache-XXXXXX");
        let dir = nix::unistd::mkdtemp(&template)
            .map_err(|e| format!("cannot create a temporary module cache: {e}"))?;
        Ok(Cache {
            dir,
            ephemeral: true,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this is a one-call cache (see `ephemeral`).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The sha256 of a module file, memoised by the file's identity.
    pub fn module_digest(&self, path: &Path) -> std::io::Result<String> {
        let m = fs::metadata(path)?;
        let identity = format!(
            "{} {} {} {} {} {}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime_nsec()
        );
        let abs = fs::canonicalize(path)?;
        let memo = self.dir.join(format!(
            "{}.digest",
            &sha256_hex(abs.as_os_str().as_encoded_bytes())[..32]
        ));
        if let Ok(text) = fs::read_to_string(&memo) {
            if let Some((id, sha)) = text.rsplit_once(' ') {
                if id == identity && sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(sha.to_string());
                }
            }
        }
        let sha = sha256_hex(&fs::read(path)?);
        // Best effort: a missing memo only costs a hash next time.
        let tmp = self.dir.join(format!(".tmp-{}-digest", unique()));
        if fs::write(&tmp, format!("{identity} {sha}"))
            .and_then(|_| fs::rename(&tmp, &memo))
            .is_err()
        {
            let _ = fs::remove_file(&tmp);
        }
        Ok(sha)
    }

    pub fn path_for(&self, module_sha: &str, engine_key: &str) -> PathBuf {
        self.dir.join(format!("{module_sha}-{engine_key}.cwasm"))
    }

    /// Checks an entry: its metadata file, then the artifact: unchanged
    /// since it was written (same identity), or else its length and CRC.
    /// The artifact is later mapped by wasmtime straight from the file.
    pub fn read(&self, path: &Path) -> Result<Entry, Miss> {
        let meta_path = path.with_extension("meta");
        let text = match fs::read_to_string(&meta_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(Miss::Corrupt(e.to_string())),
        };
        let recorded = decode_meta(&text).map_err(Miss::Corrupt)?;
        let mut f = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(Miss::Corrupt(e.to_string())),
        };
        let identity = f
            .metadata()
            .map(|m| file_identity(&m))
            .map_err(|e| Miss::Corrupt(e.to_string()))?;
        let entry = Entry {
            meta: recorded.meta.clone(),
            code_path: path.to_path_buf(),
        };
        if recorded.identity.as_deref() == Some(identity.as_str()) {
            return Ok(entry);
        }
        // Stream through a small buffer: cheaper than faulting in a copy.
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Miss::Corrupt(e.to_string())),
            }
        }
        if total != recorded.len || hasher.finalize() != recorded.crc {
            return Err(Miss::Corrupt("checksum mismatch".into()));
        }
        // Intact but moved or touched: record the new identity so the next
        // exec skips the CRC. Best effort: without it, each load checks.
        let _ = self.write_file(
            &meta_path,
            encode_meta(&recorded.meta, recorded.crc, recorded.len, Some(&identity)).as_bytes(),
        );
        Ok(entry)
    }

    /// Writes an entry atomically: the artifact, then its metadata, each a
    /// temporary file in the same directory, fsynced, renamed into place.
    pub fn write(&self, path: &Path, meta: &ModuleMeta, code: &[u8]) -> Result<(), String> {
        self.write_file(path, code)?;
        // Taken after the rename (which changes the ctime): the artifact as
        // it will be found. Without it, every load checks the CRC.
        let identity = fs::metadata(path).ok().map(|m| file_identity(&m));
        self.write_file(
            &path.with_extension("meta"),
            encode_meta(
                meta,
                crc32fast::hash(code),
                code.len() as u64,
                identity.as_deref(),
            )
            .as_bytes(),
        )
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            unique(),
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
        ));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("cannot write module cache entry {}: {e}", path.display())
        })
    }
}

/// Version 3 entries written before the identity line existed still load
/// (their CRC is checked, then the line is added); older readers ignore it.
const META_FORMAT: &str = "wasm-cni-cache 3";

/// What a file is, for telling whether it changed: device, inode, size,
/// mtime and ctime to the nanosecond.
fn file_identity(m: &fs::Metadata) -> String {
    format!(
        "{} {} {} {}.{:09} {}.{:09}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// The decoded `.meta` file.
struct Recorded {
    meta: ModuleMeta,
    crc: u32,
    len: u64,
    /// The artifact's identity when it was written or last verified.
    identity: Option<String>,
}

fn encode_meta(meta: &ModuleMeta, crc: u32, len: u64, identity: Option<&str>) -> String {
    let mut text = format!(
        "{META_FORMAT}\nkind {}\nversion {}\ncrc32 {crc:08x}\nlength {len}\n",
        kind_byte(meta.kind),
        meta.version.replace('\n', " ")
    );
    if let Some(id) = identity {
        text.push_str(&format!("identity {id}\n"));
    }
    text
}

fn decode_meta(text: &str) -> Result<Recorded, String> {
    let mut lines = text.lines();
    if lines.next() != Some(META_FORMAT) {
        return Err("unknown metadata format".into());
    }
    let mut field = |name: &str| -> Result<String, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| format!("missing {name}"))
    };
    let kind = field("kind")?
        .parse::<u8>()
        .ok()
        .and_then(kind_from_byte)
        .ok_or("unknown plugin kind")?;
    let version = field("version")?;
    let crc = u32::from_str_radix(&field("crc32")?, 16).map_err(|_| "bad crc32")?;
    let len = field("length")?.parse::<u64>().map_err(|_| "bad length")?;
    let identity = field("identity").ok();
    Ok(Recorded {
        meta: ModuleMeta { kind, version },
        crc,
        len,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wcni-cache-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn roundtrip_and_corruption() {
        let d = tempdir("rt");
        let c = Cache::open(&d).expect("open");
        assert_eq!(fs::metadata(&d).expect("stat").mode() & 0o777, 0o700);
        let p = c.path_for("abc", "def");
        let meta = ModuleMeta {
            kind: PluginKind::Interface,
            version: "1.2.3".into(),
        };
        c.write(&p, &meta, b"native code").expect("write");
        let e = c.read(&p).expect("read");
        assert_eq!(e.meta, meta);
        assert_eq!(fs::read(&e.code_path).expect("code"), b"native code");
        // Flip one byte of the code: the checksum must catch it.
        let mut raw = fs::read(&p).expect("raw");
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        fs::write(&p, &raw).expect("corrupt");
        assert!(matches!(c.read(&p), Err(Miss::Corrupt(_))));
        fs::write(&p, b"junk").expect("junk");
        assert!(matches!(c.read(&p), Err(Miss::Corrupt(_))));
        c.write(&p, &meta, b"native code").expect("rewrite");
        // The same length and a new byte, written in place: a new identity
        // (mtime, ctime), so the CRC is checked and catches it. The mtime is
        // set apart explicitly: both writes can fall in one timestamp tick.
        fs::write(&p, b"native coda").expect("same length");
        fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH))
            .expect("mtime");
        assert!(matches!(c.read(&p), Err(Miss::Corrupt(_))));
        c.write(&p, &meta, b"native code").expect("rewrite");
        fs::write(p.with_extension("meta"), "garbage").expect("meta");
        assert!(matches!(c.read(&p), Err(Miss::Corrupt(_))));
        assert!(matches!(c.read(&c.path_for("x", "y")), Err(Miss::Absent)));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_identity_is_recorded_and_renewed_after_a_check() {
        let d = tempdir("id");
        let c = Cache::open(&d).expect("open");
        let p = c.path_for("abc", "def");
        let meta = ModuleMeta {
            kind: PluginKind::Portmap,
            version: "1".into(),
        };
        c.write(&p, &meta, b"native code").expect("write");
        let identity = |p: &Path| file_identity(&fs::metadata(p).expect("stat"));
        let recorded = |p: &Path| {
            decode_meta(&fs::read_to_string(p.with_extension("meta")).expect("meta"))
                .expect("decode")
                .identity
        };
        assert_eq!(recorded(&p), Some(identity(&p)), "recorded at write");
        // Copied elsewhere and back (a restore): intact, new inode. The CRC
        // passes and the new identity is recorded.
        let copy = d.join("copy");
        fs::copy(&p, &copy).expect("copy");
        fs::rename(&copy, &p).expect("back");
        assert_ne!(recorded(&p), Some(identity(&p)));
        assert_eq!(c.read(&p).expect("intact").meta, meta);
        assert_eq!(recorded(&p), Some(identity(&p)), "renewed");
        // A version 3 file from before the identity line: checked, renewed.
        let crc = crc32fast::hash(b"native code");
        fs::write(p.with_extension("meta"), encode_meta(&meta, crc, 11, None)).expect("old meta");
        assert_eq!(c.read(&p).expect("old format loads").meta, meta);
        assert_eq!(recorded(&p), Some(identity(&p)));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_group_writable_dir() {
        let d = tempdir("perm");
        fs::create_dir_all(&d).expect("mkdir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = Cache::open(&d).err().expect("must refuse");
        assert!(e.contains("writable by group or others"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }
}
