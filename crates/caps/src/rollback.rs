//! Carrying out the undo journal (`undo`) of a failed ADD. Apart from the
//! journal because the inverses call back into the capabilities that
//! recorded them (IPAM release, port mappings, the ifb, masquerade).

use crate::kernel::{KResult, KernelError, NetnsOps};
use crate::protocol::env::Command;
use crate::undo::{LinkRef, Undo};
use crate::{host_net, ipam, nat, tc, CallContext, Deadline};

/// The time the undo of a failed ADD may take, whatever was left of the
/// call's own deadline (which may be what ran out): a rollback cut short
/// would leave the very state it exists to remove.
pub const UNDO_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

impl CallContext {
    /// Runs one undo step on the namespace at `netns`.
    fn in_netns(
        &self,
        netns: &str,
        step: impl FnOnce(&mut dyn NetnsOps) -> KResult<()>,
    ) -> Result<(), String> {
        self.kernels
            .netns
            .open_netns(netns)
            .and_then(|mut ns| step(ns.as_mut()))
            .map_err(|e| e.to_string())
    }

    /// Runs one undo step on the link `link` names, under its current
    /// name; a link that is gone took the state to undo with it.
    fn on_link(
        &self,
        link: &LinkRef,
        step: impl FnOnce(&mut dyn NetnsOps, &str) -> KResult<()>,
    ) -> Result<(), String> {
        self.in_netns(&link.netns, |ns| match ns.link_by_index(link.index)? {
            Some(now) => step(ns, &now.info.name),
            None => Ok(()),
        })
    }

    /// Applies the journal in reverse. Best effort: every step is tried and
    /// failures are logged, since the ADD error is what the runtime needs.
    pub fn rollback(&self) {
        let steps: Vec<Undo> = match self.undo.lock() {
            Ok(mut j) => j.drain(..).rev().collect(),
            Err(_) => return,
        };
        for step in steps {
            let r = match &step {
                Undo::SetLinkUp { link, up } => self.on_link(link, |ns, l| ns.set_link_up(l, *up)),
                Undo::DelAddress { link, addr } => {
                    self.on_link(link, |ns, l| ns.del_address(l, *addr))
                }
                Undo::AddAddress { link, addr } => {
                    self.on_link(link, |ns, l| ns.add_address(l, *addr))
                }
                Undo::DelRoute { link, route } => {
                    self.on_link(link, |ns, l| ns.del_route(l, route))
                }
                Undo::SetMac { link, mac } => self.on_link(link, |ns, l| ns.set_mac(l, *mac)),
                Undo::Sysctl {
                    netns,
                    key,
                    value,
                    link,
                } => self.in_netns(netns, |ns| {
                    if let Some(l) = link {
                        match ns.link_by_index(l.index)? {
                            Some(now) if now.info.name == l.name => {}
                            _ => return Ok(()),
                        }
                    }
                    ns.sysctl(key, Some(value)).map(drop)
                }),
                Undo::IpamDel => ipam::delegate_until(
                    self,
                    Command::Del,
                    std::sync::Arc::new(Deadline::new(std::time::Instant::now() + UNDO_BUDGET)),
                )
                .map(|_| ())
                .map_err(|e| format!("{}: {}", e.msg, e.details)),
                Undo::NatRemove { backend } => {
                    nat::owner(self, true).map_err(|e| e.msg).and_then(|o| {
                        self.kernels
                            .firewall
                            .portmap_remove(&o, *backend)
                            .map_err(|e| e.to_string())
                    })
                }
                Undo::DelIfb { name, index } => tc::undo_del_ifb(self, name, *index),
                Undo::DelQdisc { index, parent } => tc::undo_del_qdisc(self, *index, *parent),
                Undo::DelHostLink { link } => self.on_link(link, |ns, l| match ns.del_link(l) {
                    Err(KernelError::NoSuchLink(_)) => Ok(()),
                    r => r,
                }),
                Undo::Unmasquerade { chain } => {
                    self.kernels.masq.teardown(chain).map_err(|e| e.to_string())
                }
                Undo::UnmasqueradeNft => host_net::nft_unmasquerade(self)
                    .map_err(|e| format!("{}: {}", e.msg, e.details)),
                Undo::SpoofcheckDel => {
                    host_net::spoofcheck_del(self).map_err(|e| format!("{}: {}", e.msg, e.details))
                }
            };
            match r {
                Ok(()) => {
                    tracing::info!(module = %self.module, container_id = %self.invocation.container_id, ?step, "undone after failed ADD")
                }
                Err(e) => {
                    tracing::warn!(module = %self.module, container_id = %self.invocation.container_id, ?step, error = %e, "could not undo after failed ADD")
                }
            }
        }
    }
}
