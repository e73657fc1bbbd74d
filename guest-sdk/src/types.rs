//! Typed CNI values. They mirror the WIT records but use std network types, so
//! module logic never handles address strings.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// CNI error codes from the specification: the model's, which the host uses too.
pub use cni_model::code;

/// A CNI error as the runtime will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Invalid network configuration (code 7).
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETWORK_CONFIG, msg)
    }

    /// Internal failure (code 999), the reference's code for untyped errors.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, msg)
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

pub type CniResultOf<T> = Result<T, CniError>;

/// An address with its prefix length, e.g. `10.1.2.3/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix length {prefix} is too long for {addr}"));
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        IpNet {
            addr: ip,
            prefix: self.prefix,
        }
        .network()
            == self.network()
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR notation (address/prefix)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} in {s:?} is not an IP address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| format!("{p:?} in {s:?} is not a prefix length"))?;
        IpNet::new(addr, prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub mtu: Option<u32>,
    /// netns path for container-side interfaces, empty for host-side ones
    pub sandbox: String,
    pub socket_path: String,
    pub pci_id: String,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// index into the result's interfaces
    pub interface: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: String,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// A success result, independent of cniVersion (the host renders it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// One container attachment, as listed in GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// What a module is; it decides the capabilities the host grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Ipam,
    Interface,
    Portmap,
    Bandwidth,
}

/// One CNI call.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub container_id: String,
    /// CNI_NETNS; may be empty on DEL, GC and STATUS
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS pairs in order
    pub args: Vec<(String, String)>,
    pub cni_version: String,
    pub network_name: String,
    /// The network configuration as the runtime sent it.
    pub config: serde_json::Value,
    /// prevResult, converted by the host.
    pub prev_result: Option<CniResult>,
}

impl Invocation {
    /// A CNI_ARGS value by key (keys are case-sensitive, as in the reference).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Refuses CNI_ARGS keys outside `known`, unless `IgnoreUnknown` is `1` or
    /// `true` — the reference plugins' rule (runtimes send IgnoreUnknown=1).
    pub fn check_args(&self, known: &[&str]) -> CniResultOf<()> {
        let ignore = self
            .args
            .iter()
            .any(|(k, v)| k == "IgnoreUnknown" && (v == "1" || v.eq_ignore_ascii_case("true")));
        let unknown: Vec<&str> = self
            .args
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != "IgnoreUnknown" && !known.contains(k))
            .collect();
        if ignore || unknown.is_empty() {
            return Ok(());
        }
        Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("ARGS: unknown args {unknown:?}"),
        )
        .with_details(format!(
            "CNI_ARGS keys this plugin knows: {known:?}; add IgnoreUnknown=1 to pass others"
        )))
    }

    /// A minimal invocation for tests and tools.
    pub fn new(container_id: &str, ifname: &str, config: serde_json::Value) -> Self {
        let cni_version = config
            .get("cniVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("1.0.0")
            .to_string();
        let network_name = config
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        Invocation {
            container_id: container_id.into(),
            netns: String::new(),
            ifname: ifname.into(),
            args: Vec::new(),
            cni_version,
            network_name,
            config,
            prev_result: None,
        }
    }
}

/// Log levels for [`crate::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_unknown_keys_need_ignore_unknown() {
        let mut inv = Invocation::new("c", "eth0", serde_json::json!({}));
        inv.args = vec![
            ("IP".into(), "10.0.0.1".into()),
            ("K8S_POD_NAME".into(), "p".into()),
        ];
        let e = inv.check_args(&["IP"]).expect_err("unknown key");
        assert!(e.msg.contains("K8S_POD_NAME"), "{e}");
        inv.args.push(("IgnoreUnknown".into(), "true".into()));
        inv.check_args(&["IP"]).expect("ignored");
    }

    #[test]
    fn ipnet_parses_and_masks() {
        let n: IpNet = "10.1.2.3/24".parse().expect("valid");
        assert_eq!(n.network().to_string(), "10.1.2.0");
        assert!(n.contains("10.1.2.200".parse().expect("ip")));
        assert!(!n.contains("10.1.3.1".parse().expect("ip")));
        let v6: IpNet = "fd00::5/64".parse().expect("valid");
        assert_eq!(v6.network().to_string(), "fd00::");
        assert_eq!(v6.to_string(), "fd00::5/64");
        assert!("10.0.0.1/33".parse::<IpNet>().is_err());
        assert!("10.0.0.1".parse::<IpNet>().is_err());
        assert!("nope/8".parse::<IpNet>().is_err());
    }
}
