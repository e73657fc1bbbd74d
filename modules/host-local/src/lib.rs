//! host-local: allocates IPv4/IPv6 addresses from local ranges and records
//! them as files, in the same layout as the reference plugin so a node can
//! switch between the two with live pods.
//!
//! The host opens `<dataDir>/<network name>` (default dataDir
//! `/var/lib/cni/networks`), holds the flock on its `lock` file for the
//! whole call and hands the directory over as [`IpamHost::state_dir`]; the
//! module itself never sees `dataDir`.
//!
//! `resolvConf` is read by the host (the `resolv` capability: only the file
//! the configuration names) and parsed here into the result's DNS. CNI_ARGS
//! keys other than `IP` are refused unless `IgnoreUnknown` is set, as in the
//! reference.

pub mod allocator;
pub mod config;
pub mod dns;
pub mod range;
pub mod store;

use std::net::IpAddr;

use wasm_cni_guest::prelude::*;

use crate::allocator::AllocError;
use crate::store::FsStore;

pub struct HostLocal;

fn alloc_err(prefix: &str, e: AllocError) -> CniError {
    // The reference reports every allocation failure as an untyped error,
    // which reaches the runtime as code 999.
    CniError::internal(format!("{prefix}{}", e.message()))
}

/// The network's store; over the host's one-call read of the directory when
/// it offers one (a failed bulk read only costs the per-file reads).
fn store<H: IpamHost>(host: &H) -> FsStore<'_> {
    let fs = FsStore::new(host.state_dir()).creating_through(host);
    match host.state_files() {
        Ok(Some(files)) => fs.with_snapshot(files),
        Ok(None) => fs,
        Err(e) => {
            host.log(
                Level::Debug,
                &format!("bulk read of the state directory failed: {}", e.msg),
            );
            fs
        }
    }
}

impl<H: IpamHost> Plugin<H> for HostLocal {
    const KIND: PluginKind = PluginKind::Ipam;

    fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
        let cfg = config::load(inv)?;
        // The host reads the file the configuration names (this module has
        // no file access outside its state directory).
        let dns = match &cfg.resolv_conf {
            Some(_) => host
                .resolv_conf()?
                .map(|text| dns::parse_resolv_conf(&text))
                .unwrap_or_default(),
            None => Dns::default(),
        };
        let mut store = store(host);
        let mut requested = cfg.requested.clone();
        let mut allocated: Vec<IpAddr> = Vec::new();
        let mut ips = Vec::with_capacity(cfg.sets.len());

        let rollback = |store: &mut FsStore, allocated: &[IpAddr]| {
            // Only what this call reserved: addresses the attachment held
            // before stay where they are.
            for ip in allocated {
                let _ = allocator::release_ip(store, *ip);
            }
        };

        for (idx, set) in cfg.sets.iter().enumerate() {
            let req = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            match allocator::allocate(&mut store, set, idx, &inv.container_id, &inv.ifname, req) {
                Ok(ip) => {
                    allocated.push(ip.address.addr);
                    ips.push(ip);
                }
                Err(e) => {
                    rollback(&mut store, &allocated);
                    return Err(alloc_err(
                        &format!("failed to allocate for range {idx}: "),
                        e,
                    ));
                }
            }
        }
        if !requested.is_empty() {
            rollback(&mut store, &allocated);
            let list: Vec<String> = requested.iter().map(ToString::to_string).collect();
            return Err(CniError::internal(format!(
                "failed to allocate all requested IPs: {}",
                list.join(" ")
            )));
        }
        let summary: Vec<String> = ips.iter().map(|i| i.address.to_string()).collect();
        host.log(
            Level::Debug,
            &format!(
                "host-local: {} {} -> {}",
                inv.container_id,
                inv.ifname,
                summary.join(", ")
            ),
        );
        Ok(CniResult {
            interfaces: Vec::new(),
            ips,
            routes: cfg.routes,
            dns,
        })
    }

    /// Releases every address of (container, ifname). The configuration is
    /// not needed for that, so an invalid one does not block DEL.
    fn del(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let mut store = store(host);
        let released = allocator::release(&mut store, &inv.container_id, &inv.ifname)
            .map_err(|e| alloc_err("", e))?;
        if !released.is_empty() {
            host.log(
                Level::Debug,
                &format!(
                    "host-local: released {} for {} {}",
                    released.join(", "),
                    inv.container_id,
                    inv.ifname
                ),
            );
        }
        Ok(())
    }

    fn check(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        config::load(inv)?;
        let store = store(host);
        if allocator::holds(&store, &inv.container_id, &inv.ifname).map_err(|e| alloc_err("", e))? {
            Ok(())
        } else {
            Err(CniError::internal(format!(
                "host-local: Failed to find address added by container {}",
                inv.container_id
            )))
        }
    }

    fn gc(host: &mut H, _inv: &Invocation, valid: &[Attachment]) -> CniResultOf<()> {
        let mut store = store(host);
        let released = allocator::gc(&mut store, valid).map_err(|e| alloc_err("", e))?;
        if !released.is_empty() {
            host.log(
                Level::Info,
                &format!("host-local: GC released {}", released.join(", ")),
            );
        }
        Ok(())
    }

    /// Ready unless no ADD could succeed on this node: an invalid
    /// configuration, or a state directory that cannot be read. A full
    /// range is not a reason (upstream host-local has no STATUS at all):
    /// containerd reports a failed STATUS as NetworkReady=false, which
    /// takes the whole node NotReady; exhaustion is only ADD's error.
    fn status(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        config::load(inv)?;
        let dir = host.state_dir();
        std::fs::read_dir(dir).map(drop).map_err(|e| {
            CniError::new(
                code::NOT_AVAILABLE,
                format!("host-local: the state directory cannot be read: {e}"),
            )
            .with_details(
                "every ADD records its addresses there; check the dataDir's permissions and filesystem",
            )
        })
    }
}

wasm_cni_guest::export_plugin!(HostLocal);

#[cfg(test)]
mod tests;
