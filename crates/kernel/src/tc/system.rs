//! `TrafficControl` over rtnetlink, with the shared synchronous socket of
//! `kernel::netlink`. Host operations use a socket in this process's network
//! namespace; `container_link` opens one in CNI_NETNS for a single lookup.

use netlink_packet_core::{DefaultNla, Nla, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterMatchAllOption, TcFilterU32Option, TcHandle, TcMessage,
    TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::{
    tbf, Filter, Qdisc, Tbf, TcLink, TrafficControl, INGRESS_HANDLE, INGRESS_PARENT, ROOT,
    TBF_HANDLE,
};
use crate::netlink::NetlinkNs;
use crate::{KResult, KernelError};

/// The calling thread's netns, the host's (see `caps::host_net::HOST_NETNS`).
const HOST_NETNS: &str = crate::netlink::CURRENT_NETNS;
/// ETH_P_ALL in network byte order, as tc filters carry the protocol.
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

fn host() -> KResult<NetlinkNs> {
    NetlinkNs::open(HOST_NETNS)
}

use crate::format_mac;

fn tc_link(msg: &LinkMessage) -> TcLink {
    let mut l = TcLink {
        name: String::new(),
        index: msg.header.index,
        mac: String::new(),
        mtu: 0,
        kind: String::new(),
        peer: None,
        alias: String::new(),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(a) => l.mac = format_mac(a),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::Link(p) => l.peer = Some(*p),
            LinkAttribute::IfAlias(a) => l.alias = a.clone(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn get_link(nl: &mut NetlinkNs, name: &str) -> KResult<Option<TcLink>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    match nl.request("get link", name, RouteNetlinkMessage::GetLink(msg), 0) {
        Ok(replies) => Ok(replies.iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(tc_link(l)),
            _ => None,
        })),
        Err(KernelError::NoSuchLink(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn index_i32(index: u32) -> KResult<i32> {
    i32::try_from(index).map_err(|_| KernelError::Failed(format!("ifindex {index} out of range")))
}

/// A tc message for link `index` with handle and parent.
fn tc_message(index: u32, handle: u32, parent: u32) -> KResult<TcMessage> {
    let mut m = TcMessage::with_index(index_i32(index)?);
    m.header.handle = TcHandle::from(handle);
    m.header.parent = TcHandle::from(parent);
    Ok(m)
}

/// The raw value of a TCA_OPTIONS the library does not model (tbf's).
fn raw_options(opts: &[TcOption]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in opts {
        if let TcOption::Other(nla) = o {
            let mut v = vec![0u8; nla.value_len()];
            nla.emit_value(&mut v);
            out.extend_from_slice(&v);
        }
    }
    out
}

fn mirred_targets(actions: &[TcAction]) -> Vec<u32> {
    let mut out = Vec::new();
    for a in actions {
        for attr in &a.attributes {
            if let TcActionAttribute::Options(opts) = attr {
                for o in opts {
                    if let TcActionOption::Mirror(TcActionMirrorOption::Parms(m)) = o {
                        if m.eaction == TcMirrorActionType::EgressRedir {
                            out.push(m.ifindex);
                        }
                    }
                }
            }
        }
    }
    out
}

fn filter(msg: &TcMessage) -> Option<Filter> {
    let mut f = Filter {
        kind: String::new(),
        protocol: u16::from_be((msg.header.info & 0xffff) as u16),
        match_all: false,
        redirects_to: Vec::new(),
    };
    let mut has_selector = false;
    for attr in &msg.attributes {
        match attr {
            TcAttribute::Kind(k) => f.kind = k.clone(),
            TcAttribute::Options(opts) => {
                for o in opts {
                    match o {
                        TcOption::U32(TcFilterU32Option::Selector(sel)) => {
                            has_selector = true;
                            f.match_all = sel.keys.iter().all(|k| k.mask == 0);
                        }
                        TcOption::U32(TcFilterU32Option::Action(acts)) => {
                            f.redirects_to.extend(mirred_targets(acts))
                        }
                        TcOption::MatchAll(TcFilterMatchAllOption::Action(acts)) => {
                            f.redirects_to.extend(mirred_targets(acts))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if f.kind == "matchall" {
        f.match_all = true;
    } else if !has_selector {
        // A u32 hash-table node, not a rule.
        return None;
    }
    Some(f)
}

impl TrafficControl for System {
    fn container_link(&self, netns: &str, name: &str) -> KResult<Option<TcLink>> {
        get_link(&mut NetlinkNs::open(netns)?, name)
    }

    fn link(&self, name: &str) -> KResult<Option<TcLink>> {
        get_link(&mut host()?, name)
    }

    fn links(&self) -> KResult<Vec<TcLink>> {
        let replies = host()?.request(
            "list links",
            "",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(tc_link(l)),
                _ => None,
            })
            .collect())
    }

    fn add_ifb(&self, name: &str, mtu: u32, alias: &str) -> KResult<TcLink> {
        let mut nl = host()?;
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::TxQueueLen(0));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
        nl.request(
            "add ifb",
            name,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        // The kernel ignores IFLA_IFALIAS at creation; set it on the new link.
        let mut set = LinkMessage::default();
        set.attributes.push(LinkAttribute::IfName(name.to_string()));
        set.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        let tagged = nl.request("tag ifb", name, RouteNetlinkMessage::SetLink(set), 0);
        let link = get_link(&mut nl, name);
        match (tagged, link) {
            (Ok(_), Ok(Some(l))) => Ok(l),
            (Err(e), _) | (_, Err(e)) => {
                let _ = self.del_link(name);
                Err(e)
            }
            (Ok(_), Ok(None)) => Err(KernelError::NoSuchLink(name.to_string())),
        }
    }

    fn del_link(&self, name: &str) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        host()?
            .request("delete link", name, RouteNetlinkMessage::DelLink(msg), 0)
            .map(drop)
    }

    fn add_tbf(&self, index: u32, t: &Tbf) -> KResult<()> {
        let buffer = self.buffer_ticks(t.rate, t.burst)?;
        let mut m = tc_message(index, TBF_HANDLE, ROOT)?;
        m.attributes.push(TcAttribute::Kind("tbf".into()));
        let opts = tbf::encode(t, buffer)
            .into_iter()
            .map(|(k, v)| TcOption::Other(DefaultNla::new(k, v)))
            .collect();
        m.attributes.push(TcAttribute::Options(opts));
        host()?
            .request(
                "add tbf qdisc",
                &format!("ifindex {index}"),
                RouteNetlinkMessage::NewQueueDiscipline(m),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map(drop)
    }

    fn qdiscs(&self, index: u32) -> KResult<Vec<Qdisc>> {
        let m = tc_message(index, 0, 0)?;
        let replies = host()?.request(
            "list qdiscs",
            &format!("ifindex {index}"),
            RouteNetlinkMessage::GetQueueDiscipline(m),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewQueueDiscipline(q) = r else {
                continue;
            };
            if u32::try_from(q.header.index).ok() != Some(index) {
                continue;
            }
            let mut qd = Qdisc {
                kind: String::new(),
                handle: q.header.handle.into(),
                parent: q.header.parent.into(),
                tbf: None,
            };
            let mut options = None;
            for a in &q.attributes {
                match a {
                    TcAttribute::Kind(k) => qd.kind = k.clone(),
                    TcAttribute::Options(o) => options = Some(raw_options(o)),
                    _ => {}
                }
            }
            if qd.kind == "tbf" {
                qd.tbf = options.as_deref().and_then(tbf::decode);
            }
            out.push(qd);
        }
        Ok(out)
    }

    fn del_qdisc(&self, index: u32, parent: u32) -> KResult<()> {
        let handle = if parent == INGRESS_PARENT {
            INGRESS_HANDLE
        } else {
            0
        };
        let m = tc_message(index, handle, parent)?;
        host()?
            .request(
                "delete qdisc",
                &format!("ifindex {index}"),
                RouteNetlinkMessage::DelQueueDiscipline(m),
                0,
            )
            .map(drop)
    }

    fn add_redirect(&self, index: u32, to: u32) -> KResult<()> {
        let mut nl = host()?;
        let what = format!("ifindex {index}");
        let mut q = tc_message(index, INGRESS_HANDLE, INGRESS_PARENT)?;
        q.attributes.push(TcAttribute::Kind("ingress".into()));
        q.attributes.push(TcAttribute::Options(Vec::new()));
        nl.request(
            "add ingress qdisc",
            &what,
            RouteNetlinkMessage::NewQueueDiscipline(q),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;

        // u32, prio 1, protocol all, one zero-mask key (match everything),
        // flowid 1:1, mirred egress redirect (stolen): the reference's filter.
        let mut f = tc_message(index, 0, INGRESS_HANDLE)?;
        f.header.info = (1u32 << 16) | u32::from(ETH_P_ALL_BE);
        f.attributes.push(TcAttribute::Kind("u32".into()));
        let mut sel = TcU32Selector::default();
        sel.flags = TcU32SelectorFlags::Terminal;
        sel.nkeys = 1;
        sel.keys = vec![TcU32Key::default()];
        let mut mirror = TcMirror::default();
        mirror.generic = TcActionGeneric::default();
        mirror.generic.action = TcActionType::Stolen;
        mirror.eaction = TcMirrorActionType::EgressRedir;
        mirror.ifindex = to;
        let mut action = TcAction::default();
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirror,
            ))]),
        ];
        f.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::ClassId(TcHandle::from(0x0001_0001u32))),
            TcOption::U32(TcFilterU32Option::Selector(sel)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]));
        let added = nl.request(
            "add redirect filter",
            &what,
            RouteNetlinkMessage::NewTrafficFilter(f),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        if let Err(e) = added {
            // Leave no half-made redirect: the ingress qdisc goes too.
            let _ = self.del_qdisc(index, INGRESS_PARENT);
            return Err(e);
        }
        Ok(())
    }

    fn ingress_filters(&self, index: u32) -> KResult<Vec<Filter>> {
        let m = tc_message(index, 0, INGRESS_HANDLE)?;
        let replies = match host()?.request(
            "list filters",
            &format!("ifindex {index}"),
            RouteNetlinkMessage::GetTrafficFilter(m),
            NLM_F_DUMP,
        ) {
            Ok(r) => r,
            // No ingress qdisc: no filters.
            Err(e) if matches!(e.errno(), Some(Errno::EINVAL | Errno::ENOENT)) => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewTrafficFilter(f) => filter(f),
                _ => None,
            })
            .collect())
    }

    fn buffer_ticks(&self, rate: u64, burst: u32) -> KResult<u32> {
        let psched = std::fs::read_to_string("/proc/net/psched")
            .map_err(|e| KernelError::Failed(format!("read /proc/net/psched: {e}")))?;
        let tick = tbf::tick_in_usec(&psched).ok_or_else(|| {
            KernelError::Failed(format!("cannot parse /proc/net/psched: {psched:?}"))
        })?;
        Ok(tbf::buffer_ticks(rate, burst, tick))
    }
}
