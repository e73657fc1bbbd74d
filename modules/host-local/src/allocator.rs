//! The allocator: pure logic over a [`Store`], one call per range set.

use std::collections::HashSet;
use std::net::IpAddr;

use wasm_cni_guest::{Attachment, IpConfig, IpNet};

use crate::range::{self, RangeSet};
use crate::store::{content, Entry, Owner, Store};

/// Why an allocation failed. Messages follow the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// Nothing left in the set.
    Exhausted(String),
    /// A requested address cannot be had, or the attachment already holds one.
    Refused(String),
    Io(String),
}

impl AllocError {
    pub fn message(&self) -> &str {
        match self {
            AllocError::Exhausted(m) | AllocError::Refused(m) | AllocError::Io(m) => m,
        }
    }
}

fn io_err(what: &str, e: std::io::Error) -> AllocError {
    AllocError::Io(format!("{what}: {e}"))
}

/// Does the file's owner hold it for (cid, ifname)? `legacy` also accepts
/// files that carry only the container ID.
fn owned_by(owner: &Owner, cid: &str, ifname: &str, legacy: bool) -> bool {
    let cid = cid.trim();
    match owner {
        Owner::Attachment {
            container_id,
            ifname: i,
        } => container_id == cid && i == ifname,
        Owner::Legacy { container_id } => legacy && container_id == cid,
        Owner::Nobody => false,
    }
}

/// Entries with their owners; an unreadable file counts as nobody's (the
/// reference skips it when looking for an owner) but is still taken.
fn owners<S: Store>(store: &S) -> Result<Vec<(Entry, Owner)>, AllocError> {
    let entries = store
        .list()
        .map_err(|e| io_err("failed to list allocations", e))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let owner = store
                .read(&e.name)
                .map(|c| Owner::parse(&c))
                .unwrap_or(Owner::Nobody);
            (e, owner)
        })
        .collect())
}

/// Allocates one address from range set `set_idx` for (cid, ifname).
///
/// With `requested`, exactly that address (it must lie in the set and not be
/// its gateway). Otherwise the next free address in round-robin order after
/// `last_reserved_ip.<set_idx>`, skipping gateway, network and IPv4
/// broadcast addresses; an attachment that already holds an address in the
/// set is refused, as duplicate allocation is not allowed.
pub fn allocate<S: Store>(
    store: &mut S,
    set: &RangeSet,
    set_idx: usize,
    cid: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> Result<IpConfig, AllocError> {
    let record = content(cid, ifname);
    if let Some(req) = requested {
        let req = range::canonical(req);
        let r = set
            .range_for(req)
            .ok_or_else(|| AllocError::Refused(format!("{req} not in range set {set}")))?;
        if req == r.gateway {
            return Err(AllocError::Refused(format!(
                "requested ip {req} is subnet's gateway"
            )));
        }
        if r.is_reserved(req) {
            return Err(AllocError::Refused(format!(
                "requested ip {req} is the network or broadcast address of {}",
                r.subnet
            )));
        }
        let taken = store
            .list()
            .map_err(|e| io_err("failed to list allocations", e))?
            .iter()
            .any(|e| e.ip == req);
        if taken
            || !store
                .create_exclusive(req, &record)
                .map_err(|e| io_err("failed to reserve address", e))?
        {
            return Err(AllocError::Refused(format!(
                "requested IP address {req} is not available in range set {set}"
            )));
        }
        store
            .set_last_reserved(set_idx, req)
            .map_err(|e| io_err("failed to record last reserved address", e))?;
        return Ok(IpConfig {
            address: IpNet {
                addr: req,
                prefix: r.subnet.prefix,
            },
            gateway: Some(r.gateway),
            interface: None,
        });
    }

    let held = owners(store)?;
    if let Some((e, _)) = held
        .iter()
        .find(|(e, o)| owned_by(o, cid, ifname, true) && set.contains(e.ip))
    {
        return Err(AllocError::Refused(format!(
            "{} has been allocated to {}, duplicate allocation is not allowed",
            e.ip,
            cid.trim()
        )));
    }
    // The listing `owners` made, under the same lock, serves again: every
    // directory walk costs a sandbox call per entry batch.
    let taken: HashSet<IpAddr> = held.iter().map(|(e, _)| e.ip).collect();
    let used = taken.iter().filter(|ip| set.allocatable(**ip)).count() as u128;
    let exhausted =
        || AllocError::Exhausted(format!("no IP addresses available in range set: {set}"));
    // Counting first keeps a full IPv6 set from being walked address by address.
    if used >= set.capacity() {
        return Err(exhausted());
    }
    let last = store.last_reserved(set_idx);
    for candidate in set.round_robin(last) {
        if taken.contains(&candidate) || !set.allocatable(candidate) {
            continue;
        }
        if store
            .create_exclusive(candidate, &record)
            .map_err(|e| io_err("failed to reserve address", e))?
        {
            store
                .set_last_reserved(set_idx, candidate)
                .map_err(|e| io_err("failed to record last reserved address", e))?;
            let r = set.range_for(candidate).ok_or_else(exhausted)?;
            return Ok(IpConfig {
                address: IpNet {
                    addr: candidate,
                    prefix: r.subnet.prefix,
                },
                gateway: Some(r.gateway),
                interface: None,
            });
        }
    }
    Err(exhausted())
}

/// Removes one allocation file by address (rollback of a failed ADD).
pub fn release_ip<S: Store>(store: &mut S, ip: IpAddr) -> Result<(), AllocError> {
    let name = store
        .list()
        .map_err(|e| io_err("failed to list allocations", e))?
        .into_iter()
        .find(|e| e.ip == ip)
        .map(|e| e.name);
    match name {
        Some(n) => store
            .remove(&n)
            .map_err(|e| io_err("failed to release address", e)),
        None => Ok(()),
    }
}

/// Releases everything (cid, ifname) holds, returning the released files.
/// Files written by pre-0.7 releases (container ID only) are released when
/// no current-format file matched, like the reference.
pub fn release<S: Store>(
    store: &mut S,
    cid: &str,
    ifname: &str,
) -> Result<Vec<String>, AllocError> {
    let held = owners(store)?;
    let mut names: Vec<String> = held
        .iter()
        .filter(|(_, o)| owned_by(o, cid, ifname, false))
        .map(|(e, _)| e.name.clone())
        .collect();
    if names.is_empty() {
        names = held
            .iter()
            .filter(|(_, o)| owned_by(o, cid, ifname, true))
            .map(|(e, _)| e.name.clone())
            .collect();
    }
    for n in &names {
        store
            .remove(n)
            .map_err(|e| io_err("failed to release address", e))?;
    }
    Ok(names)
}

/// Whether (cid, ifname) holds any address (legacy files count).
pub fn holds<S: Store>(store: &S, cid: &str, ifname: &str) -> Result<bool, AllocError> {
    Ok(owners(store)?
        .iter()
        .any(|(_, o)| owned_by(o, cid, ifname, true)))
}

/// Releases every allocation whose owner is not among `valid`: current
/// files match on (cid, ifname), legacy files on the container ID alone,
/// and empty files (a writer died before writing) match nobody. An empty
/// `valid` releases everything. Returns the released file names.
pub fn gc<S: Store>(store: &mut S, valid: &[Attachment]) -> Result<Vec<String>, AllocError> {
    let entries = store
        .list()
        .map_err(|e| io_err("failed to list allocations", e))?;
    let mut released = Vec::new();
    for e in entries {
        let owner = match store.read(&e.name) {
            Ok(c) => Owner::parse(&c),
            // Vanished or unreadable: leave it alone rather than guess.
            Err(_) => continue,
        };
        let keep = valid.iter().any(|a| match &owner {
            Owner::Attachment {
                container_id,
                ifname,
            } => *container_id == a.container_id.trim() && *ifname == a.ifname,
            Owner::Legacy { container_id } => *container_id == a.container_id.trim(),
            Owner::Nobody => false,
        });
        if !keep {
            store
                .remove(&e.name)
                .map_err(|err| io_err("failed to release address", err))?;
            released.push(e.name);
        }
    }
    Ok(released)
}

/// Whether range set `set` still has an address to hand out.
pub fn has_free<S: Store>(store: &S, set: &RangeSet) -> Result<bool, AllocError> {
    let taken: HashSet<IpAddr> = store
        .list()
        .map_err(|e| io_err("failed to list allocations", e))?
        .into_iter()
        .map(|e| e.ip)
        .collect();
    let used = taken.iter().filter(|ip| set.allocatable(**ip)).count() as u128;
    Ok(used < set.capacity())
}
