//! The fake host side of the `tc` capability, for module unit tests.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::tc::*;
use crate::types::*;

#[derive(Debug, Default)]
struct State {
    /// the host link the fake host accepts (the veth peer of CNI_IFNAME)
    peer: Option<TcLink>,
    ifbs: BTreeMap<String, TcLink>,
    tbf: BTreeMap<String, Tbf>,
    redirect: BTreeSet<String>,
    calls: Vec<String>,
    netns_gone: bool,
    network: String,
    container_id: String,
    command_gc: bool,
}

/// The `tc` capability in memory: one veth peer, ifbs and their qdiscs.
/// Clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeTc(Rc<RefCell<State>>);

impl FakeTc {
    /// Sets the host link that is this attachment's veth peer, and the
    /// network and container the ifb name derives from.
    pub fn set_attachment(&self, host_link: &str, network: &str, container_id: &str) {
        let mut s = self.0.borrow_mut();
        s.peer = Some(TcLink {
            name: host_link.into(),
            index: 7,
            mac: "0a:58:00:00:00:01".into(),
            mtu: 1500,
        });
        s.network = network.into();
        s.container_id = container_id.into();
    }
    pub fn remove_netns(&self) {
        self.0.borrow_mut().netns_gone = true;
    }
    /// Lets `gc_ifb` through, as during a GC call.
    pub fn set_gc(&self, gc: bool) {
        self.0.borrow_mut().command_gc = gc;
    }
    /// Adds an ifb of this network as if an earlier ADD made it.
    pub fn add_stale_ifb(&self, name: &str) {
        self.0.borrow_mut().ifbs.insert(
            name.into(),
            TcLink {
                name: name.into(),
                index: 99,
                mac: String::new(),
                mtu: 1500,
            },
        );
    }
    pub fn ifb_names(&self) -> Vec<String> {
        self.0.borrow().ifbs.keys().cloned().collect()
    }
    /// The tbf on `link` (host link or ifb name).
    pub fn tbf_on(&self, link: &str) -> Option<Tbf> {
        self.0.borrow().tbf.get(link).copied()
    }
    pub fn has_redirect(&self) -> bool {
        !self.0.borrow().redirect.is_empty()
    }
    /// Changes a tbf behind the module's back (for CHECK tests).
    pub fn tamper_tbf(&self, link: &str, tbf: Option<Tbf>) {
        let mut s = self.0.borrow_mut();
        match tbf {
            Some(t) => s.tbf.insert(link.into(), t),
            None => s.tbf.remove(link),
        };
    }
    pub fn tamper_redirect(&self) {
        self.0.borrow_mut().redirect.clear();
    }
    pub fn calls(&self) -> Vec<String> {
        self.0.borrow().calls.clone()
    }
    fn derived(&self, cid: &str) -> String {
        // Not the real hash (no sha512 in the SDK): unique and 15 bytes.
        let s = self.0.borrow();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.network.bytes().chain(cid.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        format!("bwp{:012x}", h & 0xffff_ffff_ffff)
    }
    fn call(&self, c: String) {
        self.0.borrow_mut().calls.push(c);
    }
}

/// The fake `attachment` resource.
pub struct FakeTcAttachment {
    tc: FakeTc,
    host: TcLink,
    ifb: String,
}

impl FakeTcAttachment {
    fn link_name(&self, t: Target) -> CniResultOf<String> {
        match t {
            Target::HostLink => Ok(self.host.name.clone()),
            Target::Ifb if self.tc.0.borrow().ifbs.contains_key(&self.ifb) => Ok(self.ifb.clone()),
            Target::Ifb => Err(CniError::internal(format!(
                "ifb {} does not exist",
                self.ifb
            ))),
        }
    }
}

impl TcAttachment for FakeTcAttachment {
    fn host_link(&self) -> TcLink {
        self.host.clone()
    }
    fn add_ifb(&self) -> CniResultOf<TcLink> {
        self.tc.call(format!("add-ifb {}", self.ifb));
        let mut s = self.tc.0.borrow_mut();
        if s.ifbs.contains_key(&self.ifb) {
            return Err(CniError::internal(format!(
                "ifb {} already exists",
                self.ifb
            )));
        }
        let l = TcLink {
            name: self.ifb.clone(),
            index: 8,
            mac: "0a:58:00:00:00:02".into(),
            mtu: self.host.mtu,
        };
        s.ifbs.insert(self.ifb.clone(), l.clone());
        Ok(l)
    }
    fn ifb(&self) -> CniResultOf<Option<TcLink>> {
        Ok(self.tc.0.borrow().ifbs.get(&self.ifb).cloned())
    }
    fn add_tbf(&self, t: Target, tbf: Tbf) -> CniResultOf<()> {
        let name = self.link_name(t)?;
        self.tc.call(format!(
            "add-tbf {name} rate {} burst {} limit {}",
            tbf.rate, tbf.burst, tbf.limit
        ));
        let mut s = self.tc.0.borrow_mut();
        if s.tbf.contains_key(&name) {
            return Err(CniError::internal(format!(
                "{name} already has a root qdisc"
            )));
        }
        s.tbf.insert(name, tbf);
        Ok(())
    }
    fn tbf(&self, t: Target) -> CniResultOf<Option<TbfState>> {
        let name = self.link_name(t)?;
        Ok(self.tc.0.borrow().tbf.get(&name).map(|t| TbfState {
            rate: t.rate,
            limit: t.limit,
            buffer_ticks: fake_ticks(t.rate, t.burst),
        }))
    }
    fn add_redirect(&self) -> CniResultOf<()> {
        let ifb = self.link_name(Target::Ifb)?;
        self.tc
            .call(format!("add-redirect {} -> {ifb}", self.host.name));
        self.tc.0.borrow_mut().redirect.insert(ifb);
        Ok(())
    }
    fn redirect(&self) -> CniResultOf<bool> {
        Ok(self.tc.0.borrow().redirect.contains(&self.ifb))
    }
    fn clear(&self) -> CniResultOf<()> {
        self.tc.call(format!("clear {}", self.host.name));
        let mut s = self.tc.0.borrow_mut();
        s.tbf.remove(&self.host.name);
        s.redirect.clear();
        Ok(())
    }
}

fn fake_ticks(rate: u64, burst: u32) -> u32 {
    ((f64::from(burst) * 1e6 / rate.max(1) as f64) as i64 as u32).wrapping_mul(15)
}

impl TcCaps for super::FakeHost {
    type Attachment = FakeTcAttachment;

    fn tc_open(&mut self, host_link: &str) -> CniResultOf<FakeTcAttachment> {
        let tc = self.tc.clone();
        tc.call(format!("open {host_link}"));
        let s = tc.0.borrow();
        if s.netns_gone {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                "container network namespace is gone",
            ));
        }
        match &s.peer {
            Some(p) if p.name == host_link => {
                let host = p.clone();
                let cid = s.container_id.clone();
                drop(s);
                let ifb = tc.derived(&cid);
                Ok(FakeTcAttachment { tc, host, ifb })
            }
            _ => Err(CniError::config(format!(
                "link {host_link} is not the host side of this attachment"
            ))),
        }
    }
    fn ifb_name(&self, container_id: &str) -> String {
        self.tc.derived(container_id)
    }
    fn del_ifb(&mut self) -> CniResultOf<bool> {
        let cid = self.tc.0.borrow().container_id.clone();
        let name = self.tc.derived(&cid);
        self.tc.call(format!("del-ifb {name}"));
        let mut s = self.tc.0.borrow_mut();
        s.tbf.remove(&name);
        s.redirect.remove(&name);
        Ok(s.ifbs.remove(&name).is_some())
    }
    fn ifbs(&mut self) -> CniResultOf<Vec<String>> {
        Ok(self.tc.ifb_names())
    }
    fn gc_ifb(&mut self, name: &str) -> CniResultOf<()> {
        self.tc.call(format!("gc-ifb {name}"));
        let mut s = self.tc.0.borrow_mut();
        if !s.command_gc {
            return Err(CniError::config("gc-ifb is only allowed during GC"));
        }
        s.ifbs
            .remove(name)
            .map(drop)
            .ok_or_else(|| CniError::config(format!("{name} is not an ifb of this network")))
    }
    fn buffer_ticks(&self, rate: u64, burst: u32) -> u32 {
        fake_ticks(rate, burst)
    }
}
