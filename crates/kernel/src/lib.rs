//! The one place the host touches the kernel. Capability implementations are
//! thin adapters over these traits; `netlink` is the real implementation and
//! `fake` a recording one for unprivileged host tests (injected, never chosen
//! by `cfg!(test)`).

pub mod exec;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod firewall;
pub mod hostfw;
pub mod masq;
pub mod masq_scan;
pub mod netlink;
pub mod nfnl;
pub mod nft_json;
pub mod process;
pub mod tc;
#[cfg(test)]
pub mod testns;
pub mod timing;
pub mod xtnft;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A failed kernel operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// The network namespace path does not exist or is not a netns.
    NetnsGone(String),
    /// The named link does not exist.
    NoSuchLink(String),
    /// The operation did not complete within the host-call bound.
    Timeout(String),
    /// The kernel refused `op` with `errno` (matched by value, never by
    /// its text: see `errno`).
    Os {
        op: String,
        errno: nix::errno::Errno,
    },
    /// A firewall tool could not be run at all (not installed): nothing
    /// of that backend can exist on the node.
    ToolMissing { tool: String, reason: String },
    /// A firewall tool ran and failed; `failure` says how (read from its
    /// words once, in `exec`, the only place a tool's text is read).
    Tool {
        /// The command line that was run.
        command: String,
        /// The exit code (None: killed by a signal).
        status: Option<i32>,
        failure: exec::ToolFailure,
        message: String,
    },
    /// A check found the state it verifies not in place (what is missing).
    NotInPlace(String),
    /// Any other failure (a malformed reply, an out-of-range value).
    Failed(String),
}

impl KernelError {
    pub fn os(op: impl Into<String>, errno: nix::errno::Errno) -> KernelError {
        KernelError::Os {
            op: op.into(),
            errno,
        }
    }

    /// The errno the kernel answered, if this is a kernel refusal.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            KernelError::Os { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::NetnsGone(m) => write!(f, "network namespace is gone: {m}"),
            KernelError::NoSuchLink(m) => write!(f, "no such link: {m}"),
            KernelError::Timeout(m) => write!(f, "kernel operation timed out: {m}"),
            KernelError::Os { op, errno } => write!(f, "{op}: {}", errno.desc()),
            KernelError::ToolMissing { tool, reason } => {
                write!(f, "cannot run {tool}: {reason} (is it installed?)")
            }
            KernelError::Tool {
                command,
                status,
                message,
                ..
            } => match status {
                Some(code) => write!(f, "{command} failed (exit status: {code}): {message}"),
                None => write!(f, "{command} failed (killed by a signal): {message}"),
            },
            KernelError::NotInPlace(m) | KernelError::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for KernelError {}

pub type KResult<T> = Result<T, KernelError>;

/// A hardware address as `aa:bb:cc:dd:ee:ff` (lower case; empty for none).
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    /// `aa:bb:cc:dd:ee:ff`, lower case; all zeros for `lo`
    pub mac: String,
    pub mtu: u32,
    /// administratively up (IFF_UP)
    pub up: bool,
}

/// An address with prefix length: the model's, shared with the guest SDK.
pub use cni_model::scope::Cidr as Addr;

/// `"10.0.0.2/24"` as an `Addr`, for tests (panics on bad input).
#[cfg(test)]
pub fn cidr(s: &str) -> Addr {
    s.parse().expect("ip/prefix")
}

/// A route in the main table through one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: Addr,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u8>,
    /// The preferred source address (`src`), an address of the link; set
    /// on adding, not read back (the kernel's own routes carry one too).
    pub src: Option<IpAddr>,
}

/// Where an address's duplicate address detection stands, when not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dad {
    /// Under way: the address is not usable yet.
    Tentative,
    /// Another node answered for the address: it never becomes usable.
    Failed,
}

/// A link with the attributes host-side plugins look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDetails {
    pub info: LinkInfo,
    /// rtnetlink kind (`bridge`, `veth`, ...), empty when none
    pub kind: String,
    /// ifindex of the master (bridge) device
    pub master: Option<u32>,
    /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace)
    pub peer: Option<u32>,
    pub promisc: bool,
    /// operationally up (IF_OPER_UP)
    pub oper_up: bool,
}

/// A veth pair to create from this namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// the end created in this namespace
    pub name: String,
    pub peer_name: String,
    /// namespace path for the peer end; None keeps it here
    pub peer_netns: Option<String>,
    pub mtu: Option<u32>,
    pub peer_mac: Option<[u8; 6]>,
}

/// Bridge port flags (IFLA_BRPORT_*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortFlags {
    pub hairpin: bool,
    pub isolated: bool,
}

/// One vlan of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVlan {
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
}

/// Operations inside one network namespace. Every call is bounded in time.
pub trait NetnsOps: Send {
    fn link(&mut self, name: &str) -> KResult<Option<LinkInfo>>;
    fn set_link_up(&mut self, name: &str, up: bool) -> KResult<()>;
    fn addresses(&mut self, link: &str) -> KResult<Vec<Addr>>;
    /// Addresses of `link` still tentative (IPv6 duplicate address detection
    /// under way) or whose DAD failed.
    fn unsettled_addresses(&mut self, link: &str) -> KResult<Vec<(Addr, Dad)>>;
    fn add_address(&mut self, link: &str, addr: Addr) -> KResult<()>;
    fn del_address(&mut self, link: &str, addr: Addr) -> KResult<()>;
    fn routes(&mut self, link: &str) -> KResult<Vec<RouteInfo>>;
    /// Adds `route`; `exclusive` refuses one to the same destination (and
    /// metric) already there (`NLM_F_EXCL`, netlink's `RouteAdd`), else it
    /// goes beside it (`RouteAddEcmp`: IPv6 makes them one multipath
    /// route), and only an identical route is refused.
    fn add_route(&mut self, link: &str, route: &RouteInfo, exclusive: bool) -> KResult<()>;
    fn del_route(&mut self, link: &str, route: &RouteInfo) -> KResult<()>;
    fn link_details(&mut self, name: &str) -> KResult<Option<LinkDetails>>;
    fn link_by_index(&mut self, index: u32) -> KResult<Option<LinkDetails>>;
    /// Creates a bridge; `Os { errno: EEXIST, .. }` when the name is taken.
    fn add_bridge(&mut self, name: &str, mtu: Option<u32>, vlan_filtering: bool) -> KResult<()>;
    fn set_bridge_vlan_filtering(&mut self, name: &str, on: bool) -> KResult<()>;
    fn add_veth(&mut self, spec: &VethSpec) -> KResult<()>;
    /// Moves a link to the namespace at `netns` (by fd).
    fn move_link(&mut self, name: &str, netns: &str) -> KResult<()>;
    fn del_link(&mut self, name: &str) -> KResult<()>;
    /// Enslaves `name` to `master`, or releases it with None.
    fn set_master(&mut self, name: &str, master: Option<&str>) -> KResult<()>;
    fn set_promisc(&mut self, name: &str, on: bool) -> KResult<()>;
    fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> KResult<()>;
    fn set_bridge_port(&mut self, name: &str, flags: PortFlags) -> KResult<()>;
    fn port_vlans(&mut self, name: &str) -> KResult<Vec<PortVlan>>;
    fn add_port_vlan(&mut self, name: &str, vlan: PortVlan) -> KResult<()>;
    fn del_port_vlan(&mut self, name: &str, vid: u16) -> KResult<()>;
    /// Reads (value None) or writes a sysctl under /proc/sys of this
    /// namespace; `key` is relative (`net/ipv4/ip_forward`). Returns the value
    /// before the call.
    fn sysctl(&mut self, key: &str, value: Option<&str>) -> KResult<String>;
}

/// Entry point to the kernel.
pub trait Kernel: Send + Sync {
    /// Opens the namespace at `path` (e.g. `/var/run/netns/x`, `/proc/<pid>/ns/net`).
    fn open_netns(&self, path: &str) -> KResult<Box<dyn NetnsOps>>;
}

/// Every kernel-access implementation a runtime uses, injected together.
#[derive(Clone)]
pub struct Kernels {
    pub netns: Arc<dyn Kernel>,
    pub firewall: Arc<dyn firewall::Firewall>,
    pub tc: Arc<dyn tc::TrafficControl>,
    pub masq: Arc<dyn masq::Masquerade>,
    /// nftables rules of bridge/ptp attachments (spoof check, nft masquerade).
    pub hostfw: Arc<dyn hostfw::HostFirewall>,
}

impl Kernels {
    /// The real kernel.
    pub fn system() -> Kernels {
        Kernels {
            netns: Arc::new(netlink::Netlink),
            firewall: Arc::new(firewall::System),
            tc: Arc::new(tc::System),
            masq: Arc::new(masq::System),
            hostfw: Arc::new(hostfw::System),
        }
    }

    /// Recording fakes, for unprivileged tests; replace fields as needed.
    #[cfg(any(test, feature = "fake"))]
    pub fn fake() -> Kernels {
        Kernels {
            netns: Arc::new(fake::FakeKernel::new()),
            firewall: Arc::new(firewall::Fake::default()),
            tc: Arc::new(tc::Fake),
            masq: Arc::new(masq::Fake::default()),
            hostfw: Arc::new(hostfw::Fake::default()),
        }
    }
}

/// Runs `f` for IPv4 (`false`) and IPv6 (`true`) at the same time and
/// returns `[v4, v6]`: the families are separate tables, and each step is an
/// exec that mostly waits on the kernel, so a DEL pays one family's latency.
pub fn both_families<T: Send>(f: impl Fn(bool) -> T + Sync) -> [T; 2] {
    std::thread::scope(|s| {
        // No thread to be had (resource limits): one family after the other.
        let Ok(v6) = std::thread::Builder::new().spawn_scoped(s, || f(true)) else {
            return [f(false), f(true)];
        };
        let v4 = f(false);
        let v6 = v6.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        [v4, v6]
    })
}
