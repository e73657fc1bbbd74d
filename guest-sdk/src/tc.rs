//! The `tc` capability (wit/tc.wit) as a trait, with the real
//! implementation on [`crate::__private::WasmHost`] and a fake on
//! `testing::FakeHost`.

use crate::types::CniResultOf;

/// A token bucket filter, in the reference plugin's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// bytes per second
    pub rate: u64,
    /// bucket size, bytes
    pub burst: u32,
    /// queue limit, bytes
    pub limit: u32,
}

/// A tbf as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TbfState {
    pub rate: u64,
    pub limit: u32,
    /// the bucket in scheduler ticks; compare with [`TcCaps::buffer_ticks`]
    pub buffer_ticks: u32,
}

/// A link of the attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcLink {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub mtu: u32,
}

/// Which link of the attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    HostLink,
    Ifb,
}

/// This attachment's verified host-side link and its ifb.
pub trait TcAttachment {
    fn host_link(&self) -> TcLink;
    /// Creates the ifb (host link's MTU, up). Fails when it exists.
    fn add_ifb(&self) -> CniResultOf<TcLink>;
    fn ifb(&self) -> CniResultOf<Option<TcLink>>;
    /// Adds a root tbf (handle 1:). Fails when a root qdisc exists.
    fn add_tbf(&self, target: Target, tbf: Tbf) -> CniResultOf<()>;
    /// The root tbf, none when the root qdisc is absent or not a tbf.
    fn tbf(&self, target: Target) -> CniResultOf<Option<TbfState>>;
    /// Ingress qdisc on the host link redirecting every packet to the ifb.
    fn add_redirect(&self) -> CniResultOf<()>;
    fn redirect(&self) -> CniResultOf<bool>;
    /// Removes the host link's root tbf and ingress qdisc.
    fn clear(&self) -> CniResultOf<()>;
}

/// Operations of the `tc` capability.
pub trait TcCaps {
    type Attachment: TcAttachment;

    /// Opens the attachment through its host-side link (from prevResult); the
    /// host refuses (code 7) a link that is not the veth peer of CNI_IFNAME.
    fn tc_open(&mut self, host_link: &str) -> CniResultOf<Self::Attachment>;
    /// The ifb name of a container of this network.
    fn ifb_name(&self, container_id: &str) -> String;
    /// Deletes this attachment's ifb; false when there was none.
    fn del_ifb(&mut self) -> CniResultOf<bool>;
    /// The ifbs the host created for this network.
    fn ifbs(&mut self) -> CniResultOf<Vec<String>>;
    /// GC only: deletes a stale ifb of this network.
    fn gc_ifb(&mut self, name: &str) -> CniResultOf<()>;
    /// What `add_tbf` writes as the bucket for `burst` bytes at `rate` bytes/s.
    fn buffer_ticks(&self, rate: u64, burst: u32) -> u32;
}

mod real {
    use super::*;
    use crate::__private::bindings::cni::plugin::{tc as wit, types as wt};
    use crate::types::CniError;

    fn err(e: wt::CniError) -> CniError {
        CniError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }
    }

    fn link(l: wit::TcLink) -> TcLink {
        TcLink {
            name: l.name,
            index: l.index,
            mac: l.mac,
            mtu: l.mtu,
        }
    }

    fn target(t: Target) -> wit::Target {
        match t {
            Target::HostLink => wit::Target::HostLink,
            Target::Ifb => wit::Target::Ifb,
        }
    }

    /// The host's `attachment` resource.
    pub struct WasmAttachment(wit::Attachment);

    impl TcAttachment for WasmAttachment {
        fn host_link(&self) -> TcLink {
            link(self.0.host_link())
        }
        fn add_ifb(&self) -> CniResultOf<TcLink> {
            self.0.add_ifb().map(link).map_err(err)
        }
        fn ifb(&self) -> CniResultOf<Option<TcLink>> {
            self.0.ifb().map(|l| l.map(link)).map_err(err)
        }
        fn add_tbf(&self, t: Target, tbf: Tbf) -> CniResultOf<()> {
            self.0
                .add_tbf(
                    target(t),
                    wit::Tbf {
                        rate: tbf.rate,
                        burst: tbf.burst,
                        limit: tbf.limit,
                    },
                )
                .map_err(err)
        }
        fn tbf(&self, t: Target) -> CniResultOf<Option<TbfState>> {
            self.0
                .tbf(target(t))
                .map(|s| {
                    s.map(|s| TbfState {
                        rate: s.rate,
                        limit: s.limit,
                        buffer_ticks: s.buffer_ticks,
                    })
                })
                .map_err(err)
        }
        fn add_redirect(&self) -> CniResultOf<()> {
            self.0.add_redirect().map_err(err)
        }
        fn redirect(&self) -> CniResultOf<bool> {
            self.0.redirect().map_err(err)
        }
        fn clear(&self) -> CniResultOf<()> {
            self.0.clear().map_err(err)
        }
    }

    impl TcCaps for crate::wasm_host::WasmHost {
        type Attachment = WasmAttachment;

        fn tc_open(&mut self, host_link: &str) -> CniResultOf<WasmAttachment> {
            wit::open(host_link).map(WasmAttachment).map_err(err)
        }
        fn ifb_name(&self, container_id: &str) -> String {
            wit::ifb_name(container_id)
        }
        fn del_ifb(&mut self) -> CniResultOf<bool> {
            wit::del_ifb().map_err(err)
        }
        fn ifbs(&mut self) -> CniResultOf<Vec<String>> {
            wit::ifbs().map_err(err)
        }
        fn gc_ifb(&mut self, name: &str) -> CniResultOf<()> {
            wit::gc_ifb(name).map_err(err)
        }
        fn buffer_ticks(&self, rate: u64, burst: u32) -> u32 {
            wit::buffer_ticks(rate, burst)
        }
    }
}

pub use real::WasmAttachment;
