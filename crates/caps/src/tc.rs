//! `tc`: traffic control on this attachment's host-side link and its ifb
//! (see wit/tc.wit). The module names the host link (it reads prevResult);
//! the host accepts it only when it is the veth peer of CNI_IFNAME inside
//! CNI_NETNS, and derives the ifb's name itself, so nothing else is reachable.

use std::sync::Arc;

use nix::errno::Errno;
use sha2::{Digest, Sha512};
use wasmtime::component::Resource;

use super::bindings::cni::plugin::tc::{Host, HostAttachment, Target, Tbf, TbfState, TcLink};
use super::bindings::wit::CniError;
use super::resources::AttachmentHandle;
use super::undo::Undo;
use super::CapsView;
use super::{cap_error, kernel_error, CallContext};
use crate::kernel::tc::{self as ktc, TrafficControl, INGRESS_PARENT, ROOT};
use crate::kernel::KernelError;
use crate::protocol::env::Command;
use crate::protocol::error::code;

/// The reference's ifb names: `bwp` + hash, 15 bytes (IFNAMSIZ - 1).
const IFB_PREFIX: &str = "bwp";
const IFB_NAME_LEN: usize = 15;

/// `bwp` + the first 12 hex digits of sha512(network name + container id),
/// as the reference plugin names its ifb.
pub fn ifb_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{IFB_PREFIX}{}", &hex[..IFB_NAME_LEN - IFB_PREFIX.len()])
}

/// The alias that marks an ifb as created for `network`, so GC of one
/// network never takes another network's ifbs.
fn ifb_alias(network: &str) -> String {
    let mut a = format!("wasm-cni bandwidth {network}");
    // IFALIASZ is 256 with the NUL.
    while a.len() > 255 {
        a.pop();
    }
    a
}

fn refused(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    cap_error(code::INVALID_NETWORK_CONFIG, msg, details)
}

fn to_wit_link(l: &ktc::TcLink) -> TcLink {
    TcLink {
        name: l.name.clone(),
        index: l.index,
        mac: l.mac.clone(),
        mtu: l.mtu,
    }
}

fn tc(call: &CallContext) -> &Arc<dyn TrafficControl> {
    &call.kernels.tc
}

/// The ifb of this invocation, when it exists and really is an ifb.
fn existing_ifb(call: &CallContext, name: &str) -> Result<Option<ktc::TcLink>, CniError> {
    match tc(call)
        .link(name)
        .map_err(|e| kernel_error("reading the ifb", e))?
    {
        Some(l) if l.kind == "ifb" => Ok(Some(l)),
        Some(l) => Err(refused(
            format!("link {name} is not an ifb"),
            format!(
                "it is a {:?} link; it is not this attachment's and is left alone",
                l.kind
            ),
        )),
        None => Ok(None),
    }
}

/// Verifies `host_link` is the veth peer of CNI_IFNAME in CNI_NETNS.
fn open_attachment(call: &CallContext, host_link: &str) -> Result<AttachmentHandle, CniError> {
    let inv = &call.invocation;
    if host_link.is_empty() || host_link.len() > 15 || host_link.contains(['/', ':', ' ', '\0']) {
        return Err(refused(
            format!("invalid link name {host_link:?}"),
            "a link name is 1-15 bytes without '/', ':' or spaces",
        ));
    }
    if inv.netns.is_empty() {
        return Err(cap_error(
            code::INVALID_ENVIRONMENT,
            "this invocation has no network namespace",
            "CNI_NETNS is empty; the host link is verified through it",
        ));
    }
    let k = tc(call);
    let inner = k
        .container_link(&inv.netns, &inv.ifname)
        .map_err(|e| kernel_error("reading the container interface", e))?
        .ok_or_else(|| {
            refused(
                format!("container interface {} not found", inv.ifname),
                format!("there is no {} in {}", inv.ifname, inv.netns),
            )
        })?;
    let peer = match (inner.kind.as_str(), inner.peer) {
        ("veth", Some(p)) if p > 0 => p,
        _ => {
            return Err(refused(
                format!("container interface {} has no veth peer", inv.ifname),
                format!(
                "it is a {:?} link; bandwidth shaping needs a veth-based main plugin (bridge, ptp)",
                inner.kind
            ),
            ))
        }
    };
    let host = k
        .link(host_link)
        .map_err(|e| kernel_error("reading the host link", e))?
        .ok_or_else(|| {
            refused(
                format!("host link {host_link} not found"),
                "the prevResult names a host interface that does not exist",
            )
        })?;
    if host.index != peer || host.kind != "veth" || host.peer != Some(inner.index) {
        return Err(refused(
            format!("link {host_link} is not the host side of this attachment"),
            format!("tc is only allowed on the veth peer of {} in {} (host ifindex {peer}); {host_link} is ifindex {}", inv.ifname, inv.netns, host.index),
        ));
    }
    Ok(AttachmentHandle {
        host,
        ifb: ifb_name(&inv.network_name, &inv.container_id),
    })
}

/// Undo step: the ifb a failed ADD created, if `name` is still that link
/// (by ifindex) and not one made since under the same name.
pub fn undo_del_ifb(call: &CallContext, name: &str, index: u32) -> Result<(), String> {
    let k = tc(call);
    match k.link(name) {
        Ok(Some(l)) if l.index == index => {}
        Ok(_) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    }
    match k.del_link(name) {
        Ok(()) | Err(KernelError::NoSuchLink(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Undo step: a qdisc added by a failed ADD.
pub fn undo_del_qdisc(call: &CallContext, index: u32, parent: u32) -> Result<(), String> {
    match tc(call).del_qdisc(index, parent) {
        Ok(()) | Err(KernelError::NoSuchLink(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

impl CapsView<'_> {
    fn tc_att(&mut self, r: &Resource<AttachmentHandle>) -> wasmtime::Result<&AttachmentHandle> {
        Ok(self.table.get(r)?)
    }

    /// The ifindex of a target: the host link, or the ifb (which must exist).
    fn tc_target_index(
        call: &CallContext,
        a: &AttachmentHandle,
        target: Target,
    ) -> Result<(u32, String), CniError> {
        match target {
            Target::HostLink => Ok((a.host.index, a.host.name.clone())),
            Target::Ifb => existing_ifb(call, &a.ifb)?
                .map(|l| (l.index, l.name))
                .ok_or_else(|| {
                    cap_error(
                        code::INTERNAL,
                        format!("ifb {} does not exist", a.ifb),
                        "create it with add-ifb first",
                    )
                }),
        }
    }
}

impl HostAttachment for CapsView<'_> {
    fn host_link(&mut self, r: Resource<AttachmentHandle>) -> wasmtime::Result<TcLink> {
        Ok(to_wit_link(&self.tc_att(&r)?.host))
    }

    fn add_ifb(
        &mut self,
        r: Resource<AttachmentHandle>,
    ) -> wasmtime::Result<Result<TcLink, CniError>> {
        let (host_name, ifb) = {
            let a = self.tc_att(&r)?;
            (a.host.name.clone(), a.ifb.clone())
        };
        let call = self.call.clone();
        let k = tc(&call);
        // The ifb takes the host link's current MTU, as the reference.
        let mtu = match k.link(&host_name) {
            Ok(Some(l)) => l.mtu,
            Ok(None) => {
                return Ok(Err(cap_error(
                    code::INTERNAL,
                    format!("host link {host_name} disappeared"),
                    "it was deleted during this call",
                )))
            }
            Err(e) => return Ok(Err(kernel_error("reading the host link", e))),
        };
        let res = k
            .add_ifb(&ifb, mtu, &ifb_alias(&call.invocation.network_name))
            .map_err(|e| match e {
                e if e.errno() == Some(Errno::EEXIST) => cap_error(
                    code::INTERNAL,
                    format!("ifb {ifb} already exists"),
                    format!("{e}; run DEL for this container before ADD"),
                ),
                e => kernel_error("creating the ifb", e),
            });
        if let Ok(l) = &res {
            call.journal(Undo::DelIfb {
                name: ifb,
                index: l.index,
            });
        }
        Ok(res.map(|l| to_wit_link(&l)))
    }

    fn ifb(
        &mut self,
        r: Resource<AttachmentHandle>,
    ) -> wasmtime::Result<Result<Option<TcLink>, CniError>> {
        let ifb = self.tc_att(&r)?.ifb.clone();
        Ok(existing_ifb(&self.call, &ifb).map(|l| l.as_ref().map(to_wit_link)))
    }

    fn add_tbf(
        &mut self,
        r: Resource<AttachmentHandle>,
        target: Target,
        t: Tbf,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        if t.rate == 0 {
            return Ok(Err(refused(
                "tbf rate must be at least 1 byte/s",
                "a rate of 0 would stop all traffic; leave the limit unset instead",
            )));
        }
        let (index, name) = match Self::tc_target_index(&call, self.tc_att(&r)?, target) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let res = tc(&call)
            .add_tbf(
                index,
                &ktc::Tbf {
                    rate: t.rate,
                    burst: t.burst,
                    limit: t.limit,
                },
            )
            .map_err(|e| match e {
                e if e.errno() == Some(Errno::EEXIST) => cap_error(
                    code::INTERNAL,
                    format!("{name} already has a root qdisc"),
                    format!("{e}; run DEL for this container before ADD"),
                ),
                e => kernel_error("adding the tbf qdisc", e),
            });
        if res.is_ok() {
            call.journal(Undo::DelQdisc {
                index,
                parent: ROOT,
            });
        }
        Ok(res)
    }

    fn tbf(
        &mut self,
        r: Resource<AttachmentHandle>,
        target: Target,
    ) -> wasmtime::Result<Result<Option<TbfState>, CniError>> {
        let call = self.call.clone();
        let index = match Self::tc_target_index(&call, self.tc_att(&r)?, target) {
            Ok((i, _)) => i,
            Err(e) => return Ok(Err(e)),
        };
        Ok(tc(&call)
            .qdiscs(index)
            .map(|qs| {
                qs.into_iter()
                    .find(|q| q.parent == ROOT)
                    .and_then(|q| if q.kind == "tbf" { q.tbf } else { None })
                    .map(|s| TbfState {
                        rate: s.rate,
                        limit: s.limit,
                        buffer_ticks: s.buffer,
                    })
            })
            .map_err(|e| kernel_error("reading qdiscs", e)))
    }

    fn add_redirect(
        &mut self,
        r: Resource<AttachmentHandle>,
    ) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        let a = self.tc_att(&r)?;
        let host = a.host.index;
        let to = match Self::tc_target_index(&call, a, Target::Ifb) {
            Ok((i, _)) => i,
            Err(e) => return Ok(Err(e)),
        };
        let res = tc(&call).add_redirect(host, to).map_err(|e| match e {
            e if e.errno() == Some(Errno::EEXIST) => cap_error(
                code::INTERNAL,
                "the host link already has an ingress qdisc",
                format!("{e}; run DEL for this container before ADD"),
            ),
            e => kernel_error("adding the redirect to the ifb", e),
        });
        if res.is_ok() {
            call.journal(Undo::DelQdisc {
                index: host,
                parent: INGRESS_PARENT,
            });
        }
        Ok(res)
    }

    fn redirect(
        &mut self,
        r: Resource<AttachmentHandle>,
    ) -> wasmtime::Result<Result<bool, CniError>> {
        let call = self.call.clone();
        let a = self.tc_att(&r)?;
        let host = a.host.index;
        let ifb = match existing_ifb(&call, &a.ifb) {
            Ok(Some(l)) => l.index,
            Ok(None) => return Ok(Ok(false)),
            Err(e) => return Ok(Err(e)),
        };
        Ok(tc(&call)
            .ingress_filters(host)
            .map(|fs| {
                fs.iter()
                    .any(|f| f.match_all && f.protocol == 3 && f.redirects_to.contains(&ifb))
            })
            .map_err(|e| kernel_error("reading filters", e)))
    }

    fn clear(&mut self, r: Resource<AttachmentHandle>) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        let host = self.tc_att(&r)?.host.index;
        let k = tc(&call);
        let qs = match k.qdiscs(host) {
            Ok(q) => q,
            Err(KernelError::NoSuchLink(_)) => return Ok(Ok(())),
            Err(e) => return Ok(Err(kernel_error("reading qdiscs", e))),
        };
        // Only what this plugin adds: a root tbf and the ingress qdisc.
        for q in qs {
            let ours = (q.parent == ROOT && q.kind == "tbf")
                || (q.parent == INGRESS_PARENT && q.kind == "ingress");
            if !ours {
                continue;
            }
            match k.del_qdisc(host, q.parent) {
                Ok(()) | Err(KernelError::NoSuchLink(_)) => {}
                Err(e) => return Ok(Err(kernel_error("deleting a qdisc", e))),
            }
        }
        Ok(Ok(()))
    }

    fn drop(&mut self, r: Resource<AttachmentHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl Host for CapsView<'_> {
    fn open(
        &mut self,
        host_link: String,
    ) -> wasmtime::Result<Result<Resource<AttachmentHandle>, CniError>> {
        let h = match open_attachment(&self.call, &host_link) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(h)?))
    }

    fn ifb_name(&mut self, container_id: String) -> wasmtime::Result<String> {
        let network = self.call.invocation.network_name.clone();
        Ok(ifb_name(&network, &container_id))
    }

    fn del_ifb(&mut self) -> wasmtime::Result<Result<bool, CniError>> {
        let call = self.call.clone();
        let name = ifb_name(&call.invocation.network_name, &call.invocation.container_id);
        let delete = |call: &CallContext, name: &str| match tc(call).del_link(name) {
            Ok(()) => Ok(true),
            Err(KernelError::NoSuchLink(_)) => Ok(false),
            Err(e) => Err(kernel_error("deleting the ifb", e)),
        };
        Ok(match existing_ifb(&call, &name) {
            // In a DEL nothing else waits for the ifb to be gone: its grace
            // period overlaps the rest of the teardown.
            Ok(Some(_)) if call.command == Command::Del => {
                let c = call.clone();
                call.defer(move || delete(&c, &name).map(drop));
                Ok(true)
            }
            Ok(Some(_)) => delete(&call, &name),
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn ifbs(&mut self) -> wasmtime::Result<Result<Vec<String>, CniError>> {
        let call = self.call.clone();
        Ok(network_ifbs(&call).map(|v| v.into_iter().map(|l| l.name).collect()))
    }

    fn gc_ifb(&mut self, name: String) -> wasmtime::Result<Result<(), CniError>> {
        let call = self.call.clone();
        Ok(gc_ifb(&call, &name))
    }

    fn buffer_ticks(&mut self, rate: u64, burst: u32) -> wasmtime::Result<u32> {
        let call = self.call.clone();
        // Only /proc/net/psched can fail here; the empty fake's clock is the usual one.
        Ok(tc(&call)
            .buffer_ticks(rate.max(1), burst)
            .unwrap_or_else(|_| {
                ktc::tbf::buffer_ticks(rate.max(1), burst, ktc::tbf::DEFAULT_TICK_IN_USEC)
            }))
    }
}

/// The host's ifbs tagged for this invocation's network.
fn network_ifbs(call: &CallContext) -> Result<Vec<ktc::TcLink>, CniError> {
    let alias = ifb_alias(&call.invocation.network_name);
    let links = tc(call)
        .links()
        .map_err(|e| kernel_error("listing links", e))?;
    Ok(links
        .into_iter()
        .filter(|l| {
            l.kind == "ifb"
                && l.alias == alias
                && l.name.starts_with(IFB_PREFIX)
                && l.name.len() == IFB_NAME_LEN
        })
        .collect())
}

fn gc_ifb(call: &CallContext, name: &str) -> Result<(), CniError> {
    if call.command != Command::Gc {
        return Err(refused(
            "gc-ifb is only allowed during GC",
            "use del-ifb for this attachment's own ifb",
        ));
    }
    if !network_ifbs(call)?.iter().any(|l| l.name == name) {
        return Err(refused(
            format!(
                "{name} is not an ifb of network {}",
                call.invocation.network_name
            ),
            "GC may only delete ifbs this host created for this network",
        ));
    }
    // The host checks the valid list itself: a module cannot GC a live attachment.
    let valid = call.gc_valid()?;
    if let Some((cid, _)) = valid
        .iter()
        .find(|(cid, _)| ifb_name(&call.invocation.network_name, cid) == name)
    {
        return Err(refused(
            format!("{name} belongs to valid attachment {cid}"),
            "GC may not delete the ifb of an attachment in cni.dev/valid-attachments",
        ));
    }
    match tc(call).del_link(name) {
        Ok(()) | Err(KernelError::NoSuchLink(_)) => Ok(()),
        Err(e) => Err(kernel_error("deleting the ifb", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifb_name_matches_the_reference() {
        // Read from the kernel after /usr/lib/cni/bandwidth ran with
        // name "mynet" and CNI_CONTAINERID "abc123".
        assert_eq!(ifb_name("mynet", "abc123"), "bwp70a29d9dc18b");
        assert_eq!(ifb_name("mynet", "abc123").len(), 15);
    }

    #[test]
    fn alias_fits_ifaliasz() {
        assert!(ifb_alias(&"n".repeat(400)).len() <= 255);
        assert_eq!(ifb_alias("net1"), "wasm-cni bandwidth net1");
    }
}
