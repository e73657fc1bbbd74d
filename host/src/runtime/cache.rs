//! The precompiled-module cache.
//!
//! Modules are compiled once (at install, or on first use when missing) into
//! a root-owned 0700 directory. A file is named by the module's sha256 and the
//! engine's compatibility key and carries a header with a checksum of the
//! native code plus what the compile step learned about the module (its kind
//! and version), so the CNI path neither compiles nor instantiates twice.
//! Deserialising native code is unsafe by nature, so only files from this
//! directory are ever loaded, never a `.cwasm` found next to the modules.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::caps::bindings::wit::PluginKind;

const MAGIC: &[u8; 8] = b"WCNI\x00\x01\r\n";

/// What the compile step recorded about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMeta {
    pub kind: PluginKind,
    pub version: String,
}

/// A cache entry read back: metadata and the native code.
pub struct Entry {
    pub meta: ModuleMeta,
    pub code: Vec<u8>,
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
        let meta = fs::symlink_metadata(dir).map_err(|e| format!("cannot stat module cache {}: {e}", dir.display()))?;
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
        Ok(Cache { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(&self, module_sha: &str, engine_key: &str) -> PathBuf {
        self.dir.join(format!("{module_sha}-{engine_key}.cwasm"))
    }

    pub fn read(&self, path: &Path) -> Result<Entry, Miss> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(Miss::Corrupt(e.to_string())),
        };
        decode(&bytes).map_err(Miss::Corrupt)
    }

    /// Writes an entry atomically: a temporary file in the same directory,
    /// fsynced, then renamed over the final name.
    pub fn write(&self, path: &Path, meta: &ModuleMeta, code: &[u8]) -> Result<(), String> {
        let tmp = self.dir.join(format!(".tmp-{}-{}", std::process::id(), path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(&encode(meta, code))?;
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

fn encode(meta: &ModuleMeta, code: &[u8]) -> Vec<u8> {
    let version = meta.version.as_bytes();
    let vlen = version.len().min(255);
    let mut out = Vec::with_capacity(MAGIC.len() + 34 + vlen + code.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&Sha256::digest(code));
    out.push(kind_byte(meta.kind));
    out.push(vlen as u8);
    out.extend_from_slice(&version[..vlen]);
    out.extend_from_slice(code);
    out
}

fn decode(bytes: &[u8]) -> Result<Entry, String> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or("bad magic")?;
    if rest.len() < 34 {
        return Err("truncated header".into());
    }
    let (sum, rest) = rest.split_at(32);
    let kind = kind_from_byte(rest[0]).ok_or("unknown plugin kind")?;
    let vlen = rest[1] as usize;
    let rest = &rest[2..];
    if rest.len() < vlen {
        return Err("truncated header".into());
    }
    let (version, code) = rest.split_at(vlen);
    if Sha256::digest(code).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    Ok(Entry { meta: ModuleMeta { kind, version: String::from_utf8_lossy(version).into_owned() }, code: code.to_vec() })
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
        let meta = ModuleMeta { kind: PluginKind::Interface, version: "1.2.3".into() };
        c.write(&p, &meta, b"native code").expect("write");
        let e = c.read(&p).expect("read");
        assert_eq!(e.meta, meta);
        assert_eq!(e.code, b"native code");
        // Flip one byte of the code: the checksum must catch it.
        let mut raw = fs::read(&p).expect("raw");
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        fs::write(&p, &raw).expect("corrupt");
        assert!(matches!(c.read(&p), Err(Miss::Corrupt(_))));
        fs::write(&p, b"junk").expect("junk");
        assert!(matches!(c.read(&p), Err(Miss::Corrupt(_))));
        assert!(matches!(c.read(&c.path_for("x", "y")), Err(Miss::Absent)));
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
