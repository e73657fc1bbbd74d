//! The one place the host touches the kernel. Capability implementations are
//! thin adapters over these traits; `netlink` is the real implementation and
//! `fake` a recording one for unprivileged host tests (injected, never chosen
//! by `cfg!(test)`).

pub mod fake;
pub mod firewall;
pub mod netlink;
pub mod tc;

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
    /// Any other failure, with the kernel's message.
    Failed(String),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::NetnsGone(m) => write!(f, "network namespace is gone: {m}"),
            KernelError::NoSuchLink(m) => write!(f, "no such link: {m}"),
            KernelError::Timeout(m) => write!(f, "kernel operation timed out: {m}"),
            KernelError::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for KernelError {}

pub type KResult<T> = Result<T, KernelError>;

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

/// An address with prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ip: IpAddr,
    pub prefix: u8,
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
}

/// Operations inside one network namespace. Every call is bounded in time.
pub trait NetnsOps: Send {
    fn link(&mut self, name: &str) -> KResult<Option<LinkInfo>>;
    fn set_link_up(&mut self, name: &str, up: bool) -> KResult<()>;
    fn addresses(&mut self, link: &str) -> KResult<Vec<Addr>>;
    fn add_address(&mut self, link: &str, addr: Addr) -> KResult<()>;
    fn del_address(&mut self, link: &str, addr: Addr) -> KResult<()>;
    fn routes(&mut self, link: &str) -> KResult<Vec<RouteInfo>>;
    fn add_route(&mut self, link: &str, route: &RouteInfo) -> KResult<()>;
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
}

impl Kernels {
    /// The real kernel.
    pub fn system() -> Kernels {
        Kernels { netns: Arc::new(netlink::Netlink), firewall: Arc::new(firewall::System), tc: Arc::new(tc::System) }
    }

    /// Recording fakes, for unprivileged tests; replace fields as needed.
    pub fn fake() -> Kernels {
        Kernels { netns: Arc::new(fake::FakeKernel::new()), firewall: Arc::new(firewall::Fake), tc: Arc::new(tc::Fake) }
    }
}
