//! Allocation state: the reference's on-disk layout, behind a small trait so
//! the allocator is plain logic.
//!
//! Layout of the network directory (the host's `<dataDir>/<network name>`):
//!
//! ```text
//! lock                  flock file, held by the host for the whole call; never touched here
//! 10.1.2.2              one file per address, named by the address text,
//!                       content "<container id>\r\n<ifname>" (no trailing newline)
//! 2001:db8:1::2
//! last_reserved_ip.0    the last address handed out from range set 0
//! ```
//!
//! ## Crash safety
//!
//! An allocation file appears whole or not at all: where the host offers it
//! (`IpamHost::state_create_exclusive`, always under wasm-cni), the host
//! writes the content into an unnamed file and links it under its final
//! name, failing if the name is taken, so a kill at any point leaves either
//! nothing or the complete file. No temporary file is ever visible: the
//! reference plugin, which may share this directory on a node being
//! migrated, scans every file in it and would take one for an allocation.
//! Without that host call (native unit tests), the file is created with
//! `O_CREAT|O_EXCL` under its final name and written with one `write`; a
//! kill between the two leaves an **empty** file, as the reference's own
//! writes can. An empty file names nobody, so no DEL, CHECK or duplicate
//! check ever matches it; it keeps its address out of circulation (never
//! reused by ADD, which is the safe direction: we cannot tell a crash
//! leftover from an address an operator reserved by hand with `touch`)
//! until GC, which releases every file whose content is not a listed
//! attachment. GC may do that safely because the host holds the network's
//! `lock` for the whole call, and every writer (this module and the
//! reference plugin alike) writes under that lock, so a file we see under
//! the lock is never one somebody is still writing.
//!
//! * killed before `last_reserved_ip.N` is updated: round-robin restarts from
//!   the previous position, which only changes the order.
//!
//! `last_reserved_ip.N` is rewritten in place; if it is ever unreadable or
//! garbled it is ignored and allocation starts from the first range start,
//! exactly like the reference.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use crate::range;
use wasm_cni_guest::IpamHost;

/// Prefix of the round-robin bookkeeping files.
pub const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// The reference's separator between container ID and ifname.
pub const LINE_BREAK: &str = "\r\n";

/// An allocation file found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name as found on disk.
    pub name: String,
    /// The address it names (canonical).
    pub ip: IpAddr,
}

/// Who holds an address, as read back from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// `cid\r\nifname`
    Attachment {
        container_id: String,
        ifname: String,
    },
    /// A file written by releases older than CNI 0.7: only the container ID.
    Legacy { container_id: String },
    /// Empty: left by a writer that died between create and write.
    Nobody,
}

impl Owner {
    /// Parses a file's content the way the reference compares it: trimmed.
    pub fn parse(content: &str) -> Owner {
        let t = content.trim();
        if t.is_empty() {
            return Owner::Nobody;
        }
        match t.split_once(LINE_BREAK) {
            Some((cid, ifname)) => Owner::Attachment {
                container_id: cid.to_string(),
                ifname: ifname.to_string(),
            },
            None => Owner::Legacy {
                container_id: t.to_string(),
            },
        }
    }
}

/// The content the reference writes for an allocation.
pub fn content(container_id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", container_id.trim())
}

/// Storage for allocations. All calls happen under the network lock.
pub trait Store {
    /// Every allocation file: entries whose name is an IP address. Other
    /// files (`lock`, `last_reserved_ip.*`, anything else) are not listed.
    fn list(&self) -> io::Result<Vec<Entry>>;
    /// Creates the allocation file for `ip` with `content`, exclusively.
    /// `Ok(false)` when the file already exists.
    fn create_exclusive(&mut self, ip: IpAddr, content: &str) -> io::Result<bool>;
    /// The content of an allocation file.
    fn read(&self, name: &str) -> io::Result<String>;
    /// Removes an allocation file; a missing file is not an error.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// `last_reserved_ip.<set>`, when present and readable as an address.
    fn last_reserved(&self, set: usize) -> Option<IpAddr>;
    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> io::Result<()>;
}

/// The real store: files in the network directory.
pub struct FsStore<'h> {
    dir: PathBuf,
    /// The directory's small files as the host read them in one call at the
    /// start (under the network lock), kept current with every write of
    /// this call: listing and reading then cost no sandbox calls.
    snapshot: Option<BTreeMap<String, Vec<u8>>>,
    /// The host whose atomic create makes allocation files (see "Crash
    /// safety"), when it offers one.
    host: Option<&'h dyn IpamHost>,
}

impl<'h> FsStore<'h> {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FsStore {
            dir: dir.into(),
            snapshot: None,
            host: None,
        }
    }

    /// Allocation files are created through `host`'s atomic create where
    /// it offers one.
    pub fn creating_through(mut self, host: &'h dyn IpamHost) -> Self {
        self.host = Some(host);
        self
    }

    /// The store over `files`, the directory's content read by the host.
    pub fn with_snapshot(mut self, files: Vec<(String, Vec<u8>)>) -> Self {
        self.snapshot = Some(files.into_iter().collect());
        self
    }

    fn options() -> std::fs::OpenOptions {
        let mut o = std::fs::OpenOptions::new();
        o.write(true);
        // The reference creates these files 0600. WASI has no file modes, so
        // inside the sandbox the host's defaults apply.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        o
    }
}

impl Store for FsStore<'_> {
    fn list(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        if let Some(files) = &self.snapshot {
            for name in files.keys() {
                if let Ok(ip) = name.parse::<IpAddr>() {
                    out.push(Entry {
                        name: name.clone(),
                        ip: range::canonical(ip),
                    });
                }
            }
            // BTreeMap order is name order, as the sort below gives.
            return Ok(out);
        }
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in dir {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                out.push(Entry {
                    name,
                    ip: range::canonical(ip),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn create_exclusive(&mut self, ip: IpAddr, content: &str) -> io::Result<bool> {
        let name = range::file_name(ip);
        let atomic = match self.host {
            Some(h) => h
                .state_create_exclusive(&name, content.as_bytes())
                .map_err(|e| io::Error::other(format!("{}: {}", e.msg, e.details)))?,
            None => None,
        };
        if let Some(created) = atomic {
            if created {
                if let Some(files) = &mut self.snapshot {
                    files.insert(name, content.as_bytes().to_vec());
                }
            }
            return Ok(created);
        }
        let path = self.dir.join(range::file_name(ip));
        let mut f = match Self::options().create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Err(e) = f.write_all(content.as_bytes()).and_then(|_| f.flush()) {
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if let Some(files) = &mut self.snapshot {
            files.insert(range::file_name(ip), content.as_bytes().to_vec());
        }
        Ok(true)
    }

    fn read(&self, name: &str) -> io::Result<String> {
        if let Some(bytes) = self.snapshot.as_ref().and_then(|f| f.get(name)) {
            return Ok(String::from_utf8_lossy(bytes).into_owned());
        }
        // An allocation file is a container id and an interface name: one
        // buffer-sized read usually holds it. Plain open + read (no size
        // query first, as `fs::read` makes): each is a call out of the
        // sandbox, and ADD reads every allocation of the network.
        let mut f = std::fs::File::open(self.dir.join(name))?;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)?;
            bytes.extend_from_slice(&buf[..n]);
            // A regular file reads short only at its end: no call to see EOF.
            if n < buf.len() {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        if let Some(files) = &mut self.snapshot {
            files.remove(name);
        }
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        let name = format!("{LAST_RESERVED_PREFIX}{set}");
        let text = match &self.snapshot {
            Some(files) => String::from_utf8_lossy(files.get(&name)?).into_owned(),
            None => std::fs::read_to_string(self.dir.join(name)).ok()?,
        };
        text.trim().parse::<IpAddr>().ok().map(range::canonical)
    }

    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> io::Result<()> {
        let name = format!("{LAST_RESERVED_PREFIX}{set}");
        let mut f = Self::options()
            .create(true)
            .truncate(true)
            .open(self.dir.join(&name))?;
        f.write_all(range::file_name(ip).as_bytes())?;
        if let Some(files) = &mut self.snapshot {
            files.insert(name, range::file_name(ip).into_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_parsing() {
        assert_eq!(
            Owner::parse("abc\r\neth0"),
            Owner::Attachment {
                container_id: "abc".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(
            Owner::parse(" abc \n"),
            Owner::Legacy {
                container_id: "abc".into()
            }
        );
        assert_eq!(Owner::parse(""), Owner::Nobody);
        assert_eq!(Owner::parse("\n"), Owner::Nobody);
        assert_eq!(content(" abc ", "eth0"), "abc\r\neth0");
    }

    /// What the host's bulk read returns, read natively here.
    fn snapshot_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| {
                let name = e.file_name().into_string().expect("utf-8");
                let bytes = std::fs::read(e.path()).expect("read");
                (name, bytes)
            })
            .collect()
    }

    #[test]
    fn snapshot_store_sees_and_writes_what_the_directory_store_does() {
        let d = std::env::temp_dir().join(format!("hl-snap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("10.1.2.2"), "a\r\neth0").expect("write");
        std::fs::write(d.join("10.1.2.3"), "b").expect("write");
        std::fs::write(d.join("last_reserved_ip.0"), "10.1.2.3").expect("write");
        std::fs::write(d.join("lock"), "").expect("write");
        let fs = FsStore::new(&d);
        let mut snap = FsStore::new(&d).with_snapshot(snapshot_of(&d));
        assert_eq!(snap.list().expect("list"), fs.list().expect("list"));
        assert_eq!(snap.read("10.1.2.2").expect("read"), "a\r\neth0");
        assert_eq!(snap.last_reserved(0), fs.last_reserved(0));
        let ip: IpAddr = "10.1.2.4".parse().expect("ip");
        assert!(snap.create_exclusive(ip, "c\r\neth0").expect("create"));
        assert!(!snap.create_exclusive(ip, "d\r\neth0").expect("taken"));
        snap.set_last_reserved(0, ip).expect("last");
        snap.remove("10.1.2.3").expect("remove");
        // the snapshot tracked every write, and the disk has them all
        assert_eq!(snap.list().expect("list"), fs.list().expect("list"));
        assert_eq!(snap.last_reserved(0), Some(ip));
        assert_eq!(fs.last_reserved(0), Some(ip));
        assert_eq!(fs.read("10.1.2.4").expect("read"), "c\r\neth0");
        let _ = std::fs::remove_dir_all(&d);
    }
}
