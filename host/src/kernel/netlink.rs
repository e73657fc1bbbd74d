//! The real kernel: synchronous rtnetlink over a blocking `netlink_sys::Socket`.
//!
//! A handle is one NETLINK_ROUTE socket created *inside* the target network
//! namespace: the calling thread `setns`es into the namespace, creates the
//! socket and `setns`es back. The socket stays bound to the namespace it was
//! created in, so later calls need no namespace switching and work from any
//! thread. Every receive is bounded by `SO_RCVTIMEO`.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort, InfoData,
    InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkInfo as NlLinkInfo, LinkMessage, State,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

use super::timing;
use super::{
    Addr, KResult, Kernel, KernelError, LinkDetails, LinkInfo, NetnsOps, PortFlags, PortVlan,
    RouteInfo, VethSpec,
};

/// Upper bound for waiting on one kernel reply.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);
/// Initial receive buffer; grown when the kernel sends a larger datagram.
const RECV_BUF: usize = 64 * 1024;
const RT_TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// The real kernel, reached over rtnetlink.
#[derive(Debug, Clone, Copy, Default)]
pub struct Netlink;

impl Kernel for Netlink {
    fn open_netns(&self, path: &str) -> KResult<Box<dyn NetnsOps>> {
        Ok(Box::new(NetlinkNs::open(path)?))
    }
}

/// `"<op>: <strerror>"` for a kernel errno.
fn errno_failed(op: &str, errno: i32) -> KernelError {
    KernelError::os(op, Errno::from_raw(errno))
}

fn io_failed(op: &str, e: &io::Error) -> KernelError {
    match e.raw_os_error() {
        Some(code) => errno_failed(op, code),
        None => KernelError::Failed(format!("{op}: {e}")),
    }
}

/// The calling thread's network namespace.
pub const CURRENT_NETNS: &str = "/proc/thread-self/ns/net";

/// Creates a NETLINK_ROUTE socket bound to the network namespace at `path`.
/// The calling thread's namespace is restored before returning, on every path.
fn socket_in_netns(path: &str) -> KResult<Socket> {
    let target = open_netns_file(path)?;
    let original = File::open(CURRENT_NETNS).map_err(|e| io_failed("open current netns", &e))?;

    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
        // Not a network namespace file (or not a namespace at all).
        Errno::EINVAL => KernelError::NetnsGone(path.to_string()),
        e => errno_failed(&format!("enter netns {path}"), e as i32),
    })?;
    let created = new_socket();
    // Always go back, whether or not the socket was created.
    if let Err(e) = setns(&original, CloneFlags::CLONE_NEWNET) {
        return Err(KernelError::Failed(format!(
            "restore original netns after entering {path}: {}",
            e.desc()
        )));
    }
    created
}

fn new_socket() -> KResult<Socket> {
    let op = "open netlink socket";
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| io_failed(op, &e))?;
    socket.bind_auto().map_err(|e| io_failed(op, &e))?;
    set_recv_timeout(&socket, RECV_TIMEOUT).map_err(|e| io_failed(op, &e))?;
    // Lets the kernel filter dumps by the link asked for (addresses, routes)
    // instead of sending the whole namespace's: on a node with hundreds of
    // pods that is hundreds of veths' addresses per call. Kernels without it
    // (< 4.20) send everything; the replies are filtered here as well.
    let _ = socket.set_netlink_get_strict_chk(true);
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| io_failed(op, &e))?;
    Ok(socket)
}

pub(crate) fn set_recv_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    use nix::libc;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: the fd is a live socket owned by `socket`; the option value is a
    // properly initialised `timeval` whose exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One NETLINK_ROUTE socket bound to a network namespace. Shared with the
/// other netlink users of the kernel layer (tc).
pub(crate) struct NetlinkNs {
    /// the namespace path, for sysctls (which need entering it)
    path: String,
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NetlinkNs {
    /// Addresses of `link`, each with whether it is still tentative (IPv6
    /// DAD under way) or failed DAD.
    fn address_list(&mut self, link: &str) -> KResult<Vec<(Addr, bool)>> {
        let index = self.index(link)?;
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        let replies = self.request(
            "get addresses",
            link,
            RouteNetlinkMessage::GetAddress(msg),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for reply in &replies {
            let RouteNetlinkMessage::NewAddress(msg) = reply else {
                continue;
            };
            if msg.header.index != index {
                continue;
            }
            let mut local = None;
            let mut address = None;
            let mut unsettled = msg
                .header
                .flags
                .intersects(AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed);
            for attr in &msg.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    AddressAttribute::Flags(f) => {
                        unsettled |= f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed)
                    }
                    _ => {}
                }
            }
            // IFA_LOCAL is the own address when present (IFA_ADDRESS is then
            // the peer); IPv6 without a peer only sends IFA_ADDRESS.
            if let Some(ip) = local.or(address) {
                out.push((
                    Addr {
                        ip,
                        prefix: msg.header.prefix_len,
                    },
                    unsettled,
                ));
            }
        }
        Ok(out)
    }

    /// A socket in the namespace at `path` (`/proc/self/ns/net` for the host's).
    pub(crate) fn open(path: &str) -> KResult<NetlinkNs> {
        Ok(NetlinkNs {
            path: path.to_string(),
            socket: socket_in_netns(path)?,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Sends one request and collects the replies until the ACK (or DONE for
    /// dumps). Kernel errors come back as `Failed("<op>: <strerror>")`, except
    /// ENODEV which becomes `NoSuchLink(link)`.
    pub(crate) fn request(
        &mut self,
        op: &str,
        link: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> KResult<Vec<RouteNetlinkMessage>> {
        let _timer = timing::time("netlink", op);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;

        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0).map_err(|e| io_failed(op, &e))?;

        let deadline = Instant::now() + RECV_TIMEOUT;
        let mut replies = Vec::new();
        loop {
            self.recv_datagram(op, deadline)?;
            let mut offset = 0;
            while offset < self.buf.len() {
                let bytes = &self.buf[offset..];
                let (len, msg_seq) = match NetlinkBuffer::new_checked(bytes) {
                    Ok(b) => (b.length() as usize, b.sequence_number()),
                    Err(e) => return Err(KernelError::Failed(format!("{op}: bad reply: {e}"))),
                };
                if len == 0 || len > bytes.len() {
                    return Err(KernelError::Failed(format!("{op}: bad reply length {len}")));
                }
                offset += (len + 3) & !3;
                if msg_seq != seq {
                    // A late reply to an earlier (timed out) request.
                    continue;
                }
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..len])
                    .map_err(|e| KernelError::Failed(format!("{op}: bad reply: {e}")))?;
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) if -code.get() == Errno::ENODEV as i32 => {
                                Err(KernelError::NoSuchLink(link.to_string()))
                            }
                            Some(code) => Err(errno_failed(op, code.get().saturating_abs())),
                        };
                    }
                    NetlinkPayload::Done(d) => {
                        if d.code < 0 {
                            return Err(errno_failed(op, d.code.saturating_abs()));
                        }
                        if dump {
                            return Ok(replies);
                        }
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(KernelError::Failed(format!("{op}: netlink overrun")))
                    }
                    _ => {}
                }
            }
        }
    }

    /// Receives one whole datagram into `self.buf`.
    fn recv_datagram(&mut self, op: &str, deadline: Instant) -> KResult<()> {
        loop {
            // Peek the real size first so a large dump datagram is never truncated.
            self.buf.clear();
            let peeked = self
                .socket
                .recv_from(&mut self.buf, nix::libc::MSG_PEEK | nix::libc::MSG_TRUNC);
            let size = match peeked {
                Ok((size, _)) => size,
                Err(e) => {
                    self.recv_error(op, deadline, &e)?;
                    continue;
                }
            };
            self.buf.clear();
            self.buf.reserve(size.max(RECV_BUF));
            match self.socket.recv_from(&mut self.buf, 0) {
                Ok(_) => return Ok(()),
                Err(e) => self.recv_error(op, deadline, &e)?,
            }
        }
    }

    /// Ok to retry (EINTR before the deadline), or the error to return.
    fn recv_error(&self, op: &str, deadline: Instant, e: &io::Error) -> KResult<()> {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Err(KernelError::Timeout(op.to_string()))
            }
            io::ErrorKind::Interrupted if Instant::now() < deadline => Ok(()),
            io::ErrorKind::Interrupted => Err(KernelError::Timeout(op.to_string())),
            _ => Err(io_failed(op, e)),
        }
    }

    fn index(&mut self, name: &str) -> KResult<u32> {
        match self.link(name)? {
            Some(l) => Ok(l.index),
            None => Err(KernelError::NoSuchLink(name.to_string())),
        }
    }
}

/// A link's MAC as plugins see it: all zeros when it has none (`lo`).
fn link_mac(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "00:00:00:00:00:00".to_string();
    }
    super::format_mac(bytes)
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        name: String::new(),
        index: msg.header.index,
        mac: link_mac(&[]),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Address(a) => info.mac = link_mac(a),
            LinkAttribute::Mtu(m) => info.mtu = *m,
            _ => {}
        }
    }
    info
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// An address message as `ip addr add|del` builds it.
fn address_message(index: u32, addr: Addr, with_broadcast: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(&addr.ip);
    msg.header.prefix_len = addr.prefix;
    msg.header.index = index;
    if let IpAddr::V4(v4) = addr.ip {
        if v4.is_loopback() {
            // iproute2's default_scope(): host scope for 127.0.0.0/8.
            msg.header.scope = AddressScope::Host;
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer, which is
    // the same address on non point-to-point links.
    msg.attributes.push(AddressAttribute::Local(addr.ip));
    msg.attributes.push(AddressAttribute::Address(addr.ip));
    if let IpAddr::V4(v4) = addr.ip {
        if with_broadcast && addr.prefix < 31 {
            let host_mask = u32::MAX.checked_shr(u32::from(addr.prefix)).unwrap_or(0);
            let brd = Ipv4Addr::from(u32::from(v4) | host_mask);
            msg.attributes.push(AddressAttribute::Broadcast(brd));
        }
    }
    msg
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

/// A main-table unicast route through link `index`, as `RouteInfo`.
fn route_info(msg: &RouteMessage, index: u32) -> Option<RouteInfo> {
    if msg.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(msg.header.table);
    let mut oif = None;
    let mut dst = None;
    let mut gw = None;
    let mut mtu = None;
    let mut priority = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Destination(a) => dst = route_ip(a),
            RouteAttribute::Gateway(a) => gw = route_ip(a),
            RouteAttribute::Priority(p) => priority = Some(*p),
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    if let RouteMetric::Mtu(v) = m {
                        mtu = Some(*v);
                    }
                }
            }
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN || oif != Some(index) {
        return None;
    }
    let ip = match (dst, msg.header.address_family) {
        (Some(ip), _) => ip,
        (None, AddressFamily::Inet) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, AddressFamily::Inet6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (None, _) => return None,
    };
    Some(RouteInfo {
        dst: Addr {
            ip,
            prefix: msg.header.destination_prefix_length,
        },
        gw,
        mtu,
        priority,
        table: Some(table),
        scope: Some(u8::from(msg.header.scope)),
    })
}

fn route_message(index: u32, route: &RouteInfo) -> RouteMessage {
    let table = route.table.unwrap_or(RT_TABLE_MAIN);
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(&route.dst.ip);
    msg.header.destination_prefix_length = route.dst.prefix;
    msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = match (route.scope, route.gw) {
        (Some(s), _) => RouteScope::from(s),
        (None, Some(_)) => RouteScope::Universe,
        (None, None) => RouteScope::Link,
    };
    if table > 255 {
        msg.attributes.push(RouteAttribute::Table(table));
    }
    if route.dst.prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route_addr(route.dst.ip)));
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    if let Some(gw) = route.gw {
        msg.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
    }
    if let Some(p) = route.priority {
        msg.attributes.push(RouteAttribute::Priority(p));
    }
    if let Some(m) = route.mtu {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(m)]));
    }
    msg
}

/// The name of the link the calling thread's namespace routes `ip` through
/// (what `ip route get` prints after `dev`), by one RTM_GETROUTE lookup.
pub fn route_dev(ip: IpAddr) -> KResult<String> {
    let mut ns = NetlinkNs::open(CURRENT_NETNS)?;
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(&ip);
    msg.header.destination_prefix_length = if ip.is_ipv4() { 32 } else { 128 };
    msg.attributes
        .push(RouteAttribute::Destination(route_addr(ip)));
    let op = format!("route to {ip}");
    let replies = ns.request(&op, "", RouteNetlinkMessage::GetRoute(msg), 0)?;
    let oif = replies.iter().find_map(|r| match r {
        RouteNetlinkMessage::NewRoute(m) => m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }),
        _ => None,
    });
    let oif = oif.ok_or_else(|| KernelError::Failed(format!("no route to {ip}")))?;
    ns.link_by_index(oif)?
        .map(|l| l.info.name)
        .ok_or_else(|| KernelError::Failed(format!("{op}: link {oif} is gone")))
}

impl NetnsOps for NetlinkNs {
    fn link(&mut self, name: &str) -> KResult<Option<LinkInfo>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request("get link", name, RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(link_info(l)),
                _ => None,
            })),
            Err(KernelError::NoSuchLink(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_link_up(&mut self, name: &str, up: bool) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.request("set link", name, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    fn addresses(&mut self, link: &str) -> KResult<Vec<Addr>> {
        Ok(self
            .address_list(link)?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    fn unsettled_addresses(&mut self, link: &str) -> KResult<Vec<Addr>> {
        Ok(self
            .address_list(link)?
            .into_iter()
            .filter_map(|(a, unsettled)| unsettled.then_some(a))
            .collect())
    }

    fn add_address(&mut self, link: &str, addr: Addr) -> KResult<()> {
        let index = self.index(link)?;
        let msg = address_message(index, addr, true);
        self.request(
            "add address",
            link,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    fn del_address(&mut self, link: &str, addr: Addr) -> KResult<()> {
        let index = self.index(link)?;
        let msg = address_message(index, addr, false);
        self.request("del address", link, RouteNetlinkMessage::DelAddress(msg), 0)
            .map(drop)
    }

    fn routes(&mut self, link: &str) -> KResult<Vec<RouteInfo>> {
        let index = self.index(link)?;
        let mut msg = RouteMessage::default();
        msg.attributes.push(RouteAttribute::Oif(index));
        let replies = self.request(
            "get routes",
            link,
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m) => route_info(m, index),
                _ => None,
            })
            .collect())
    }

    fn add_route(&mut self, link: &str, route: &RouteInfo) -> KResult<()> {
        let index = self.index(link)?;
        let msg = route_message(index, route);
        self.request(
            "add route",
            link,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    fn del_route(&mut self, link: &str, route: &RouteInfo) -> KResult<()> {
        let index = self.index(link)?;
        let mut msg = route_message(index, route);
        // Match any protocol and scope, as `ip route del` does.
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        self.request("del route", link, RouteNetlinkMessage::DelRoute(msg), 0)
            .map(drop)
    }

    fn link_details(&mut self, name: &str) -> KResult<Option<LinkDetails>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(name, msg)
    }

    fn link_by_index(&mut self, index: u32) -> KResult<Option<LinkDetails>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(&format!("ifindex {index}"), msg)
    }

    fn add_bridge(&mut self, name: &str, mtu: Option<u32>, vlan_filtering: bool) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        let mut info = vec![NlLinkInfo::Kind(InfoKind::Bridge)];
        if vlan_filtering {
            info.push(NlLinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.request(
            "add bridge",
            name,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    fn set_bridge_vlan_filtering(&mut self, name: &str, on: bool) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Bridge),
            NlLinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)])),
        ]));
        self.request(
            "set bridge vlan filtering",
            name,
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
        .map(drop)
    }

    fn add_veth(&mut self, spec: &VethSpec) -> KResult<()> {
        // Held open until the request is answered: the kernel reads the fd then.
        let peer_ns = match &spec.peer_netns {
            Some(p) => Some(open_netns_file(p)?),
            None => None,
        };
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(spec.peer_name.clone()));
        if let Some(m) = spec.mtu {
            peer.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = spec.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(f) = &peer_ns {
            peer.attributes.push(LinkAttribute::NetNsFd(f.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.clone()));
        if let Some(m) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let r = self.request(
            "add veth",
            &spec.name,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        drop(peer_ns);
        r.map(drop)
    }

    fn move_link(&mut self, name: &str, netns: &str) -> KResult<()> {
        let target = open_netns_file(netns)?;
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        msg.attributes
            .push(LinkAttribute::NetNsFd(target.as_raw_fd()));
        let r = self.request("move link", name, RouteNetlinkMessage::SetLink(msg), 0);
        drop(target);
        r.map(drop)
    }

    fn del_link(&mut self, name: &str) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        self.request("del link", name, RouteNetlinkMessage::DelLink(msg), 0)
            .map(drop)
    }

    fn set_master(&mut self, name: &str, master: Option<&str>) -> KResult<()> {
        let master_index = match master {
            Some(m) => self.index(m)?,
            None => 0,
        };
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        msg.attributes.push(LinkAttribute::Controller(master_index));
        self.request("set master", name, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    fn set_promisc(&mut self, name: &str, on: bool) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        msg.header.flags = if on {
            LinkFlags::Promisc
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Promisc;
        self.request("set promisc", name, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> KResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request("set mac", name, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    fn set_bridge_port(&mut self, name: &str, flags: PortFlags) -> KResult<()> {
        // `ip link set <name> type bridge_slave hairpin .. isolated ..`
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::PortKind(InfoPortKind::Bridge),
            NlLinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(flags.hairpin),
                InfoBridgePort::Isolated(flags.isolated),
            ])),
        ]));
        self.request(
            "set bridge port",
            name,
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
        .map(drop)
    }

    fn port_vlans(&mut self, name: &str) -> KResult<Vec<PortVlan>> {
        let index = self.index(name)?;
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let replies = self.request(
            "get bridge vlans",
            name,
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for r in &replies {
            let RouteNetlinkMessage::NewLink(l) = r else {
                continue;
            };
            if l.header.index != index {
                continue;
            }
            for attr in &l.attributes {
                if let LinkAttribute::AfSpecBridge(specs) = attr {
                    for spec in specs {
                        if let AfSpecBridge::VlanInfo(v) = spec {
                            out.push(PortVlan {
                                vid: v.vid,
                                pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                                untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn add_port_vlan(&mut self, name: &str, vlan: PortVlan) -> KResult<()> {
        let mut flags = BridgeVlanInfoFlags::empty();
        if vlan.pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if vlan.untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let msg = self.vlan_message(name, flags, vlan.vid)?;
        self.request(
            "add bridge vlan",
            name,
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
        .map(drop)
    }

    fn del_port_vlan(&mut self, name: &str, vid: u16) -> KResult<()> {
        // AF_BRIDGE family: RTM_DELLINK removes the vlan, not the link.
        let msg = self.vlan_message(name, BridgeVlanInfoFlags::empty(), vid)?;
        self.request(
            "del bridge vlan",
            name,
            RouteNetlinkMessage::DelLink(msg),
            0,
        )
        .map(drop)
    }

    fn sysctl(&mut self, key: &str, value: Option<&str>) -> KResult<String> {
        sysctl_in_netns(&self.path, key, value)
    }
}

impl NetlinkNs {
    fn get_link(&mut self, what: &str, msg: LinkMessage) -> KResult<Option<LinkDetails>> {
        match self.request("get link", what, RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(link_details(l)),
                _ => None,
            })),
            Err(KernelError::NoSuchLink(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn vlan_message(
        &mut self,
        name: &str,
        flags: BridgeVlanInfoFlags,
        vid: u16,
    ) -> KResult<LinkMessage> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = self.index(name)?;
        msg.attributes
            .push(LinkAttribute::AfSpecBridge(vec![AfSpecBridge::VlanInfo(
                BridgeVlanInfo { flags, vid },
            )]));
        Ok(msg)
    }
}

fn link_details(msg: &LinkMessage) -> LinkDetails {
    let mut d = LinkDetails {
        info: link_info(msg),
        kind: String::new(),
        master: None,
        peer: None,
        promisc: msg.header.flags.contains(LinkFlags::Promisc),
        oper_up: false,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Controller(m) if *m != 0 => d.master = Some(*m),
            LinkAttribute::Link(l) if *l != 0 => d.peer = Some(*l),
            LinkAttribute::OperState(s) => d.oper_up = *s == State::Up,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        d.kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    d
}

/// A path that cannot name a file (missing, through a non-directory, too
/// long, a symlink loop) names no namespace: it is gone, which a DEL accepts.
fn open_netns_file(path: &str) -> KResult<File> {
    const NAMES_NOTHING: [Errno; 4] = [
        Errno::ENOENT,
        Errno::ENOTDIR,
        Errno::ENAMETOOLONG,
        Errno::ELOOP,
    ];
    File::open(path).map_err(|e| match e.raw_os_error() {
        Some(code) if NAMES_NOTHING.iter().any(|n| *n as i32 == code) => {
            KernelError::NetnsGone(path.to_string())
        }
        _ => io_failed(&format!("open netns {path}"), &e),
    })
}

/// Opens `/proc/sys/<key>` from inside the namespace at `path` (net sysctl
/// files belong to the namespace of the thread that opens them), then reads
/// and optionally writes it from here.
fn sysctl_in_netns(path: &str, key: &str, value: Option<&str>) -> KResult<String> {
    use std::io::{Read, Seek, Write};
    let _timer = timing::time("sysctl", key);
    if !key.starts_with("net/")
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(KernelError::Failed(format!("invalid sysctl key {key:?}")));
    }
    let target = open_netns_file(path)?;
    let original = File::open(CURRENT_NETNS).map_err(|e| io_failed("open current netns", &e))?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
        Errno::EINVAL => KernelError::NetnsGone(path.to_string()),
        e => errno_failed(&format!("enter netns {path}"), e as i32),
    })?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(value.is_some())
        .open(format!("/proc/sys/{key}"));
    if let Err(e) = setns(&original, CloneFlags::CLONE_NEWNET) {
        return Err(KernelError::Failed(format!(
            "restore original netns after entering {path}: {}",
            e.desc()
        )));
    }
    let op = format!("sysctl {key}");
    let mut file = file.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => KernelError::Failed(format!("{op}: no such sysctl")),
        _ => io_failed(&op, &e),
    })?;
    let mut old = String::new();
    file.read_to_string(&mut old)
        .map_err(|e| io_failed(&op, &e))?;
    if let Some(v) = value {
        file.rewind().map_err(|e| io_failed(&op, &e))?;
        file.write_all(v.as_bytes())
            .map_err(|e| io_failed(&op, &e))?;
    }
    Ok(old.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    // These tests need root (they create network namespaces) and fail without it.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    static COUNTER: AtomicU32 = AtomicU32::new(0);

    /// A throwaway named netns, deleted on drop.
    struct TestNs {
        name: String,
    }

    impl TestNs {
        fn new() -> Self {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let name = format!("wcni-nl-{}-{n}", std::process::id());
            ip(&["netns", "add", &name]);
            TestNs { name }
        }

        fn path(&self) -> String {
            format!("/run/netns/{}", self.name)
        }

        fn ip(&self, args: &[&str]) -> String {
            let mut all = vec!["-n", self.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn current_netns() -> std::path::PathBuf {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    }

    fn a(s: &str) -> Addr {
        crate::kernel::cidr(s)
    }

    #[test]
    fn lo_up_down_and_addresses() {
        let ns = TestNs::new();
        let before = current_netns();
        let mut ops = Netlink.open_netns(&ns.path()).unwrap();
        assert_eq!(current_netns(), before, "thread must be back in its netns");

        let lo = ops.link("lo").unwrap().unwrap();
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.index, 1);
        assert_eq!(lo.mac, "00:00:00:00:00:00");
        assert_eq!(lo.mtu, 65536);
        assert!(!lo.up, "lo starts down in a fresh netns");
        assert!(ops.addresses("lo").unwrap().is_empty());

        ops.set_link_up("lo", true).unwrap();
        assert!(ops.link("lo").unwrap().unwrap().up);
        assert!(ip(&["-n", &ns.name, "link", "show", "lo"]).contains(",UP"));
        let addrs = ops.addresses("lo").unwrap();
        assert!(addrs.contains(&a("127.0.0.1/8")), "{addrs:?}");
        assert!(addrs.contains(&a("::1/128")), "{addrs:?}");

        ops.set_link_up("lo", false).unwrap();
        assert!(!ops.link("lo").unwrap().unwrap().up);
        // The kernel keeps IPv4 addresses but drops IPv6 ones on down.
        assert_eq!(ops.addresses("lo").unwrap(), vec![a("127.0.0.1/8")]);
        assert_eq!(current_netns(), before);
    }

    #[test]
    fn add_and_del_addresses_on_lo() {
        let ns = TestNs::new();
        let mut ops = Netlink.open_netns(&ns.path()).unwrap();
        ops.set_link_up("lo", true).unwrap();
        for s in ["10.123.0.1/32", "fd00::1/128", "10.123.1.1/24"] {
            ops.add_address("lo", a(s)).unwrap();
        }
        let addrs = ops.addresses("lo").unwrap();
        for s in ["10.123.0.1/32", "fd00::1/128", "10.123.1.1/24"] {
            assert!(addrs.contains(&a(s)), "{s} in {addrs:?}");
        }
        let shown = ns.ip(&["addr", "show", "dev", "lo"]);
        assert!(shown.contains("inet 10.123.0.1/32"), "{shown}");
        assert!(shown.contains("10.123.1.1/24 brd 10.123.1.255"), "{shown}");
        assert!(shown.contains("inet6 fd00::1/128"), "{shown}");

        assert_eq!(
            ops.add_address("lo", a("10.123.0.1/32")),
            Err(KernelError::os("add address", Errno::EEXIST))
        );
        assert_eq!(
            ops.add_address("lo", a("fd00::1/128")),
            Err(KernelError::os("add address", Errno::EEXIST))
        );

        ops.del_address("lo", a("10.123.0.1/32")).unwrap();
        ops.del_address("lo", a("fd00::1/128")).unwrap();
        let addrs = ops.addresses("lo").unwrap();
        assert!(!addrs.contains(&a("10.123.0.1/32")), "{addrs:?}");
        assert!(!addrs.contains(&a("fd00::1/128")), "{addrs:?}");
        assert!(addrs.contains(&a("127.0.0.1/8")), "{addrs:?}");
        assert_eq!(
            ops.del_address("lo", a("10.123.0.1/32")),
            Err(KernelError::os("del address", Errno::EADDRNOTAVAIL))
        );
    }

    #[test]
    fn routes_via_veth() {
        let ns = TestNs::new();
        ns.ip(&["link", "add", "wv0", "type", "veth", "peer", "name", "wv1"]);
        let mut ops = Netlink.open_netns(&ns.path()).unwrap();
        let wv0 = ops.link("wv0").unwrap().unwrap();
        assert_eq!(wv0.mtu, 1500);
        assert_eq!(wv0.mac.len(), 17);
        assert_ne!(wv0.mac, "00:00:00:00:00:00");
        assert_eq!(wv0.mac, wv0.mac.to_lowercase());

        ops.add_address("wv0", a("10.124.0.2/24")).unwrap();
        ops.add_address("wv0", a("fd00:124::2/64")).unwrap();
        let linkroute = RouteInfo {
            dst: a("10.126.0.0/16"),
            gw: None,
            mtu: None,
            priority: None,
            table: None,
            scope: None,
        };
        // Mirrored by the fake: no routes through a down link.
        assert_eq!(
            ops.add_route("wv0", &linkroute),
            Err(KernelError::os("add route", Errno::ENETDOWN))
        );
        ops.set_link_up("wv0", true).unwrap();
        ops.set_link_up("wv1", true).unwrap();

        let via = RouteInfo {
            dst: a("10.125.0.0/16"),
            gw: Some("10.124.0.1".parse().unwrap()),
            mtu: Some(1400),
            priority: Some(50),
            table: None,
            scope: None,
        };
        let via6 = RouteInfo {
            dst: a("fd00:125::/64"),
            gw: Some("fd00:124::1".parse().unwrap()),
            mtu: None,
            priority: None,
            table: None,
            scope: None,
        };
        let default = RouteInfo {
            dst: a("0.0.0.0/0"),
            gw: Some("10.124.0.1".parse().unwrap()),
            mtu: None,
            priority: None,
            table: None,
            scope: None,
        };
        ops.add_route("wv0", &via).unwrap();
        ops.add_route("wv0", &linkroute).unwrap();
        ops.add_route("wv0", &via6).unwrap();
        ops.add_route("wv0", &default).unwrap();
        assert_eq!(
            ops.add_route("wv0", &via),
            Err(KernelError::os("add route", Errno::EEXIST))
        );
        // Unreachable gateways (mirrored by the fake).
        let mut bad = via.clone();
        bad.dst = a("10.127.0.0/16");
        bad.gw = Some("10.200.0.1".parse().unwrap());
        assert_eq!(
            ops.add_route("wv0", &bad),
            Err(KernelError::os("add route", Errno::ENETUNREACH))
        );
        let mut bad6 = via6.clone();
        bad6.gw = Some("fd00:200::1".parse().unwrap());
        bad6.dst = a("fd00:127::/64");
        assert_eq!(
            ops.add_route("wv0", &bad6),
            Err(KernelError::os("add route", Errno::EHOSTUNREACH))
        );

        let routes = ops.routes("wv0").unwrap();
        let find = |dst: &str| routes.iter().find(|r| r.dst == a(dst)).cloned();
        assert_eq!(
            find("10.125.0.0/16"),
            Some(RouteInfo {
                table: Some(254),
                scope: Some(0),
                ..via.clone()
            }),
            "{routes:?}"
        );
        assert_eq!(
            find("10.126.0.0/16"),
            Some(RouteInfo {
                table: Some(254),
                scope: Some(253),
                ..linkroute.clone()
            })
        );
        assert_eq!(
            find("0.0.0.0/0"),
            Some(RouteInfo {
                table: Some(254),
                scope: Some(0),
                ..default.clone()
            })
        );
        assert_eq!(
            find("fd00:125::/64"),
            Some(RouteInfo {
                table: Some(254),
                scope: Some(0),
                priority: Some(1024),
                ..via6.clone()
            })
        );
        // Connected routes appear too.
        assert_eq!(
            find("10.124.0.0/24"),
            Some(RouteInfo {
                dst: a("10.124.0.0/24"),
                gw: None,
                mtu: None,
                priority: None,
                table: Some(254),
                scope: Some(253),
            })
        );
        assert_eq!(
            find("fd00:124::/64"),
            Some(RouteInfo {
                dst: a("fd00:124::/64"),
                gw: None,
                mtu: None,
                priority: Some(256),
                table: Some(254),
                scope: Some(0),
            })
        );
        // Nothing from the local table, nothing through other links.
        assert!(routes.iter().all(|r| r.table == Some(254)));
        assert!(find("10.124.0.2/32").is_none(), "{routes:?}");
        assert!(ops.routes("lo").unwrap().is_empty());

        // iproute2 omits "proto boot" (its default); filter on it instead.
        let shown = ns.ip(&["route", "show", "10.125.0.0/16", "proto", "boot"]);
        assert!(
            shown.contains("via 10.124.0.1 dev wv0 metric 50 mtu 1400"),
            "{shown}"
        );

        ops.set_link_up("wv0", false).unwrap();
        assert!(
            ops.routes("wv0").unwrap().is_empty(),
            "routes go with the link"
        );
    }

    #[test]
    fn route_dev_names_the_link_a_lookup_takes() {
        let ns = TestNs::new();
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "add", "rd0", "type", "veth", "peer", "name", "rd1"]);
        ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "rd0"]);
        ns.ip(&["link", "set", "rd0", "up"]);
        ns.ip(&["link", "set", "rd1", "up"]);
        let path = ns.path();
        let (veth, lo, none) = std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap();
                setns(fd, CloneFlags::CLONE_NEWNET).unwrap();
                (
                    route_dev("10.77.0.9".parse().unwrap()),
                    route_dev("127.0.0.1".parse().unwrap()),
                    route_dev("192.0.2.1".parse().unwrap()),
                )
            })
            .join()
            .unwrap()
        });
        assert_eq!(veth, Ok("rd0".to_string()));
        assert_eq!(lo, Ok("lo".to_string()));
        // no default route in a fresh namespace: an error, not a guess
        assert!(none.is_err(), "{none:?}");
    }

    #[test]
    fn missing_namespace_is_gone() {
        let before = current_netns();
        let too_long = "a".repeat(4096);
        for path in [
            "/run/netns/wcni-nl-does-not-exist",
            "/etc/hostname/x",
            too_long.as_str(),
        ] {
            match Netlink.open_netns(path) {
                Err(KernelError::NetnsGone(p)) => assert_eq!(p, path),
                Err(e) => panic!("{path}: {e:?}"),
                Ok(_) => panic!("{path}: opened"),
            }
        }
        // Exists, but is not a network namespace: setns fails and we stay put.
        for path in ["/etc/hostname", "/proc/self/ns/uts"] {
            match Netlink.open_netns(path) {
                Err(KernelError::NetnsGone(_)) => {}
                Err(e) => panic!("{path}: {e:?}"),
                Ok(_) => panic!("{path}: opened"),
            }
            assert_eq!(current_netns(), before);
        }
    }

    #[test]
    fn missing_link() {
        let ns = TestNs::new();
        let mut ops = Netlink.open_netns(&ns.path()).unwrap();
        assert_eq!(ops.link("nope0").unwrap(), None);
        let gone = Err(KernelError::NoSuchLink("nope0".into()));
        assert_eq!(ops.set_link_up("nope0", true), gone);
        assert_eq!(ops.addresses("nope0"), gone.clone().map(|()| vec![]));
        assert_eq!(ops.add_address("nope0", a("10.0.0.1/32")), gone);
        assert_eq!(ops.routes("nope0"), gone.clone().map(|()| vec![]));
    }

    #[test]
    fn socket_works_from_other_threads() {
        let ns = TestNs::new();
        let mut ops = NetlinkNs {
            path: ns.path(),
            socket: socket_in_netns(&ns.path()).unwrap(),
            seq: 0,
            buf: Vec::new(),
        };
        // The socket is bound to the namespace, not to the opening thread.
        let handle = std::thread::spawn(move || {
            ops.set_link_up("lo", true).unwrap();
            ops
        });
        let mut ops = handle.join().unwrap();
        assert!(ops.link("lo").unwrap().unwrap().up);
        assert!(ns.ip(&["link", "show", "lo"]).contains(",UP"));
    }

    /// Runs the same calls against the real kernel and the fake and compares
    /// every observable result (the fake documents what it does not model:
    /// link-local IPv6, ifindex/mac values, route order).
    #[test]
    fn fake_kernel_mirrors_netlink() {
        use crate::kernel::fake::FakeKernel;

        let ns = TestNs::new();
        let path = ns.path();
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ]);
        ns.ip(&["link", "set", "peer0", "up"]);
        let fake = FakeKernel::new();
        fake.add_netns(&path);
        fake.add_link(&path, "eth0", false).unwrap();
        let mut real = Netlink.open_netns(&path).unwrap();
        let mut fk = fake.open_netns(&path).unwrap();

        fn norm<T: std::fmt::Debug>(r: KResult<Vec<T>>) -> String {
            match r {
                Ok(v) => {
                    let mut v: Vec<String> = v
                        .iter()
                        .map(|x| format!("{x:?}"))
                        .filter(|s| !s.contains("fe80::"))
                        .collect();
                    v.sort();
                    format!("Ok({v:?})")
                }
                Err(e) => format!("Err({e:?})"),
            }
        }
        let link = |ops: &mut dyn NetnsOps, n: &str| {
            format!(
                "{:?}",
                ops.link(n).map(|l| l.map(|l| (l.name, l.mtu, l.up)))
            )
        };
        let rt = |dst: &str, gw: Option<&str>, prio: Option<u32>, mtu: Option<u32>| RouteInfo {
            dst: a(dst),
            gw: gw.map(|g| g.parse().unwrap()),
            mtu,
            priority: prio,
            table: None,
            scope: None,
        };
        type Step<'a> = (&'a str, Box<dyn Fn(&mut dyn NetnsOps) -> String + 'a>);
        let steps: Vec<Step> = vec![
            ("link lo", Box::new(|o| link(o, "lo"))),
            ("link eth0", Box::new(|o| link(o, "eth0"))),
            ("link nope", Box::new(|o| link(o, "nope"))),
            (
                "lo up",
                Box::new(|o| format!("{:?}", o.set_link_up("lo", true))),
            ),
            ("lo addrs", Box::new(|o| norm(o.addresses("lo")))),
            ("lo routes", Box::new(|o| norm(o.routes("lo")))),
            (
                "add v4 lo",
                Box::new(|o| format!("{:?}", o.add_address("lo", a("10.123.0.1/32")))),
            ),
            (
                "add v4 lo again",
                Box::new(|o| format!("{:?}", o.add_address("lo", a("10.123.0.1/32")))),
            ),
            (
                "add v6 lo",
                Box::new(|o| format!("{:?}", o.add_address("lo", a("fd00::1/128")))),
            ),
            (
                "add v6 lo other prefix",
                Box::new(|o| format!("{:?}", o.add_address("lo", a("fd00::1/64")))),
            ),
            ("lo addrs 2", Box::new(|o| norm(o.addresses("lo")))),
            (
                "add v4 eth0",
                Box::new(|o| format!("{:?}", o.add_address("eth0", a("10.124.0.2/24")))),
            ),
            (
                "add v6 eth0",
                Box::new(|o| format!("{:?}", o.add_address("eth0", a("fd00:124::2/64")))),
            ),
            (
                "route while down",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route("eth0", &rt("10.126.0.0/16", None, None, None))
                    )
                }),
            ),
            ("eth0 routes down", Box::new(|o| norm(o.routes("eth0")))),
            (
                "eth0 up",
                Box::new(|o| format!("{:?}", o.set_link_up("eth0", true))),
            ),
            ("link eth0 up", Box::new(|o| link(o, "eth0"))),
            ("eth0 routes up", Box::new(|o| norm(o.routes("eth0")))),
            (
                "route via",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route(
                            "eth0",
                            &rt("10.125.0.0/16", Some("10.124.0.1"), Some(50), Some(1400))
                        )
                    )
                }),
            ),
            (
                "route link",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route("eth0", &rt("10.126.0.0/16", None, None, None))
                    )
                }),
            ),
            (
                "route via link route",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route("eth0", &rt("0.0.0.0/0", Some("10.126.3.4"), None, None))
                    )
                }),
            ),
            (
                "route v6",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route(
                            "eth0",
                            &rt("fd00:125::/64", Some("fd00:124::1"), None, None)
                        )
                    )
                }),
            ),
            (
                "route v6 ll",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route("eth0", &rt("::/0", Some("fe80::1"), None, Some(1450)))
                    )
                }),
            ),
            (
                "route v6 metric",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route("eth0", &rt("fd00:126::/64", None, Some(7), None))
                    )
                }),
            ),
            (
                "route dup",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route(
                            "eth0",
                            &rt("10.125.0.0/16", Some("10.124.0.1"), Some(50), None)
                        )
                    )
                }),
            ),
            (
                "route dup other metric",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route(
                            "eth0",
                            &rt("10.125.0.0/16", Some("10.124.0.1"), Some(51), None)
                        )
                    )
                }),
            ),
            (
                "route dup connected",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route("eth0", &rt("10.124.0.0/24", None, None, None))
                    )
                }),
            ),
            (
                "route unreachable",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route("eth0", &rt("10.127.0.0/16", Some("10.200.0.1"), None, None))
                    )
                }),
            ),
            (
                "route unreachable v6",
                Box::new(|o| {
                    format!(
                        "{:?}",
                        o.add_route(
                            "eth0",
                            &rt("fd00:127::/64", Some("fd00:200::1"), None, None)
                        )
                    )
                }),
            ),
            ("eth0 routes", Box::new(|o| norm(o.routes("eth0")))),
            ("eth0 addrs", Box::new(|o| norm(o.addresses("eth0")))),
            (
                "del v4 lo",
                Box::new(|o| format!("{:?}", o.del_address("lo", a("10.123.0.1/32")))),
            ),
            (
                "del v4 lo again",
                Box::new(|o| format!("{:?}", o.del_address("lo", a("10.123.0.1/32")))),
            ),
            ("lo addrs 3", Box::new(|o| norm(o.addresses("lo")))),
            (
                "eth0 down",
                Box::new(|o| format!("{:?}", o.set_link_up("eth0", false))),
            ),
            (
                "eth0 routes after down",
                Box::new(|o| norm(o.routes("eth0"))),
            ),
            (
                "eth0 addrs after down",
                Box::new(|o| norm(o.addresses("eth0"))),
            ),
            (
                "lo down",
                Box::new(|o| format!("{:?}", o.set_link_up("lo", false))),
            ),
            ("lo addrs down", Box::new(|o| norm(o.addresses("lo")))),
            (
                "missing up",
                Box::new(|o| format!("{:?}", o.set_link_up("nope", true))),
            ),
            ("missing addrs", Box::new(|o| norm(o.addresses("nope")))),
            (
                "missing add",
                Box::new(|o| format!("{:?}", o.add_address("nope", a("10.0.0.1/32")))),
            ),
            ("missing routes", Box::new(|o| norm(o.routes("nope")))),
        ];
        let mut diffs = Vec::new();
        for (name, step) in &steps {
            let r = step(real.as_mut());
            let f = step(fk.as_mut());
            if r != f {
                diffs.push(format!("{name}:\n  real: {r}\n  fake: {f}"));
            }
        }
        assert!(diffs.is_empty(), "fake diverges:\n{}", diffs.join("\n"));
    }

    #[test]
    fn host_side_ops_bridge_veth_vlans_sysctl() {
        let host = TestNs::new();
        let cont = TestNs::new();
        let mut h = NetlinkNs::open(&host.path()).unwrap();
        // This kernel may lack CONFIG_BRIDGE_VLAN_FILTERING: vlans are checked only where it has it.
        let vlan_filtering = match h.add_bridge("br-t", Some(1400), true) {
            Ok(()) => true,
            Err(e) if e.errno() == Some(Errno::EOPNOTSUPP) => {
                println!("kernel without bridge vlan filtering: vlan ops not exercised");
                h.add_bridge("br-t", Some(1400), false).unwrap();
                false
            }
            Err(e) => panic!("{e}"),
        };
        assert!(
            h.add_bridge("br-t", None, false)
                .err()
                .and_then(|e| e.errno())
                == Some(Errno::EEXIST)
        );
        let br = h.link_details("br-t").unwrap().unwrap();
        assert_eq!((br.kind.as_str(), br.info.mtu), ("bridge", 1400));
        h.set_promisc("br-t", true).unwrap();
        assert!(h.link_details("br-t").unwrap().unwrap().promisc);
        h.set_link_up("br-t", true).unwrap();
        h.set_mac("br-t", [0x02, 0, 0, 0, 0, 0x42]).unwrap();
        assert_eq!(
            h.link_details("br-t").unwrap().unwrap().info.mac,
            "02:00:00:00:00:42"
        );

        let spec = VethSpec {
            name: "vethtest0".into(),
            peer_name: "eth0".into(),
            peer_netns: Some(cont.path()),
            mtu: Some(1400),
            peer_mac: Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]),
        };
        h.add_veth(&spec).unwrap();
        let mut c = NetlinkNs::open(&cont.path()).unwrap();
        let ce = c.link_details("eth0").unwrap().unwrap();
        assert_eq!(
            (ce.kind.as_str(), ce.info.mac.as_str(), ce.info.mtu),
            ("veth", "02:11:22:33:44:55", 1400)
        );
        let hv = h.link_details("vethtest0").unwrap().unwrap();
        assert_eq!(
            ce.peer,
            Some(hv.info.index),
            "container end points at the host end"
        );
        assert_eq!(hv.peer, Some(ce.info.index));
        assert_eq!(
            h.link_by_index(hv.info.index).unwrap().unwrap().info.name,
            "vethtest0"
        );

        h.set_master("vethtest0", Some("br-t")).unwrap();
        assert_eq!(
            h.link_details("vethtest0").unwrap().unwrap().master,
            Some(br.info.index)
        );
        h.set_bridge_port(
            "vethtest0",
            PortFlags {
                hairpin: true,
                isolated: true,
            },
        )
        .unwrap();
        let detail = host.ip(&["-d", "link", "show", "vethtest0"]);
        assert!(
            detail.contains("hairpin on") && detail.contains("isolated on"),
            "{detail}"
        );
        if vlan_filtering {
            h.add_port_vlan(
                "vethtest0",
                PortVlan {
                    vid: 100,
                    pvid: true,
                    untagged: true,
                },
            )
            .unwrap();
            h.del_port_vlan("vethtest0", 1).unwrap();
            assert_eq!(
                h.port_vlans("vethtest0").unwrap(),
                vec![PortVlan {
                    vid: 100,
                    pvid: true,
                    untagged: true
                }]
            );
        }

        assert_eq!(
            h.sysctl("net/ipv6/conf/vethtest0/accept_ra", Some("0"))
                .unwrap(),
            "1"
        );
        assert_eq!(
            h.sysctl("net/ipv6/conf/vethtest0/accept_ra", None).unwrap(),
            "0"
        );
        c.sysctl("net/ipv4/conf/eth0/arp_notify", Some("1"))
            .unwrap();
        assert!(h.sysctl("net/../kernel/hostname", None).is_err());

        // Container route deletion (ptp replaces the connected route).
        c.set_link_up("eth0", true).unwrap();
        c.add_address("eth0", a("10.9.0.2/24")).unwrap();
        let connected = RouteInfo {
            dst: a("10.9.0.0/24"),
            gw: None,
            mtu: None,
            priority: None,
            table: None,
            scope: None,
        };
        c.del_route("eth0", &connected).unwrap();
        assert!(c
            .routes("eth0")
            .unwrap()
            .iter()
            .all(|r| r.dst != a("10.9.0.0/24")));

        // Deleting the container end takes the host end along.
        c.del_link("eth0").unwrap();
        assert_eq!(h.link_details("vethtest0").unwrap(), None);
    }

    /// Prints the cost of creating the veth straight in the target netns
    /// versus creating both ends here and moving one (the reference's way,
    /// mirrored). Run with --nocapture to see the figures.
    #[test]
    fn veth_direct_versus_move_timing() {
        let host = TestNs::new();
        let cont = TestNs::new();
        let mut h = NetlinkNs::open(&host.path()).unwrap();
        let rounds = 50;
        let mut direct = Duration::ZERO;
        let mut moved = Duration::ZERO;
        for i in 0..rounds {
            let spec = VethSpec {
                name: format!("vd{i}"),
                peer_name: format!("cd{i}"),
                peer_netns: Some(cont.path()),
                mtu: None,
                peer_mac: None,
            };
            let t = Instant::now();
            h.add_veth(&spec).unwrap();
            direct += t.elapsed();
            let spec = VethSpec {
                name: format!("vm{i}"),
                peer_name: format!("cm{i}"),
                peer_netns: None,
                mtu: None,
                peer_mac: None,
            };
            let t = Instant::now();
            h.add_veth(&spec).unwrap();
            h.move_link(&format!("cm{i}"), &cont.path()).unwrap();
            moved += t.elapsed();
        }
        let per = |d: Duration| d.as_micros() as f64 / f64::from(rounds);
        println!(
            "veth creation: direct into netns {:.0} us, create+move {:.0} us (mean of {rounds})",
            per(direct),
            per(moved)
        );
        let mut c = NetlinkNs::open(&cont.path()).unwrap();
        assert!(c.link("cd0").unwrap().is_some() && c.link("cm0").unwrap().is_some());
    }
}
