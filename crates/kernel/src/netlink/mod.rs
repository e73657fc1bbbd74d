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
    Addr, Dad, KResult, Kernel, KernelError, LinkDetails, LinkInfo, NetnsOps, PortFlags, PortVlan,
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

/// How long `recv_datagram` waits for a datagram.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all: `Ok(false)` when none is queued.
    No,
    /// Up to the socket's receive timeout; a read interrupted by a signal
    /// is retried until this instant.
    Until(Instant),
}

/// Receives one whole datagram into `buf`, sized to fit: its size is peeked
/// first, so a large dump datagram is never truncated. The one receive
/// path of every netlink socket here (rtnetlink and nf_tables).
/// `Ok(false)`: nothing was queued (`Wait::No`).
pub(crate) fn recv_datagram(
    socket: &Socket,
    buf: &mut Vec<u8>,
    op: &str,
    wait: Wait,
) -> KResult<bool> {
    let flags = match wait {
        Wait::No => nix::libc::MSG_DONTWAIT,
        Wait::Until(_) => 0,
    };
    loop {
        buf.clear();
        let size = match socket.recv(buf, flags | nix::libc::MSG_PEEK | nix::libc::MSG_TRUNC) {
            Ok(size) => size,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && matches!(wait, Wait::No) => {
                return Ok(false)
            }
            Err(e) => {
                recv_error(op, wait, &e)?;
                continue;
            }
        };
        buf.clear();
        buf.reserve(size.max(RECV_BUF));
        match socket.recv(buf, flags) {
            Ok(_) => return Ok(true),
            Err(e) => recv_error(op, wait, &e)?,
        }
    }
}

/// Ok to retry (EINTR before the deadline), or the error to return.
fn recv_error(op: &str, wait: Wait, e: &io::Error) -> KResult<()> {
    match (e.kind(), wait) {
        (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, _) => {
            Err(KernelError::Timeout(format!("{op}: no reply")))
        }
        (io::ErrorKind::Interrupted, Wait::Until(d)) if Instant::now() < d => Ok(()),
        (io::ErrorKind::Interrupted, _) => Err(KernelError::Timeout(format!("{op}: no reply"))),
        _ => Err(io_failed(op, e)),
    }
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
    fn address_list(&mut self, link: &str) -> KResult<Vec<(Addr, Option<Dad>)>> {
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
            let h = msg.header.flags;
            let (mut tentative, mut failed) = (
                h.contains(AddressHeaderFlags::Tentative),
                h.contains(AddressHeaderFlags::Dadfailed),
            );
            for attr in &msg.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    AddressAttribute::Flags(f) => {
                        tentative |= f.contains(AddressFlags::Tentative);
                        failed |= f.contains(AddressFlags::Dadfailed);
                    }
                    _ => {}
                }
            }
            // A failed address stays tentative too: failure is what counts.
            let unsettled = match (failed, tentative) {
                (true, _) => Some(Dad::Failed),
                (false, true) => Some(Dad::Tentative),
                _ => None,
            };
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
        recv_datagram(&self.socket, &mut self.buf, op, Wait::Until(deadline)).map(drop)
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
        src: None,
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
    if let Some(src) = route.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(route_addr(src)));
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

    fn unsettled_addresses(&mut self, link: &str) -> KResult<Vec<(Addr, Dad)>> {
        Ok(self
            .address_list(link)?
            .into_iter()
            .filter_map(|(a, unsettled)| Some((a, unsettled?)))
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

    fn add_route(&mut self, link: &str, route: &RouteInfo, exclusive: bool) -> KResult<()> {
        let index = self.index(link)?;
        let msg = route_message(index, route);
        let excl = if exclusive { NLM_F_EXCL } else { 0 };
        self.request(
            "add route",
            link,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | excl,
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

// Privileged: each test makes its own network namespace and checks the
// kernel's state with `ip`; they also prove the fake kernel's answers.
#[cfg(test)]
mod tests;
