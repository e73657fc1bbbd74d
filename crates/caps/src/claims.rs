//! What a module's ADD result may claim. The runtime trusts a result (the
//! next plugin of the chain acts on it: portmap DNATs a host port to its
//! address), so a module's result is checked against what this call did
//! before it reaches anyone:
//!
//! * a chained module (portmap, bandwidth) passes its prevResult on
//!   unchanged: it has no authority over interfaces or addresses;
//! * an interface module's interfaces are in this call's netns (or on the
//!   host, with an empty sandbox), and its addresses are ones this call's
//!   IPAM issued or the module configured in the container (or a loopback
//!   address on `lo`, which the kernel gives it);
//! * every result: text without control characters, a MAC that is a MAC,
//!   bounded sizes.

use std::net::IpAddr;

use crate::bindings::wit::PluginKind;
use crate::protocol::error::{code, CniError};
use crate::protocol::result::{render, CniResult};

/// Bounds on one result: far above any real attachment, far below what
/// would make a runtime's stdout reader or the next plugin suffer.
pub const MAX_INTERFACES: usize = 64;
pub const MAX_IPS: usize = 256;
pub const MAX_ROUTES: usize = 1024;
pub const MAX_DNS_ENTRIES: usize = 64;
pub const MAX_TEXT: usize = 4096;

fn refuse(what: String) -> CniError {
    CniError::new(
        code::INTERNAL,
        format!("plugin module returned a result it may not claim: {what}"),
    )
    .with_details("a result may only describe what this call configured")
}

fn text(field: &str, s: &str) -> Result<(), CniError> {
    if s.len() > MAX_TEXT {
        return Err(refuse(format!("{field} is longer than {MAX_TEXT} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(refuse(format!("{field} contains a control character")));
    }
    Ok(())
}

/// A hardware address as the kernel reports one: 6 (Ethernet), 8 or 20
/// (InfiniBand) hex bytes separated by ':'.
fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    matches!(parts.len(), 6 | 8 | 20)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn addr_of(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

/// Shape checks every result gets, whatever the module's kind.
fn shape(r: &CniResult) -> Result<(), CniError> {
    if r.interfaces.len() > MAX_INTERFACES || r.ips.len() > MAX_IPS || r.routes.len() > MAX_ROUTES {
        return Err(refuse(format!(
            "{} interfaces, {} ips, {} routes (at most {MAX_INTERFACES}, {MAX_IPS}, {MAX_ROUTES})",
            r.interfaces.len(),
            r.ips.len(),
            r.routes.len()
        )));
    }
    for (i, f) in r.interfaces.iter().enumerate() {
        text(&format!("interfaces[{i}].name"), &f.name)?;
        text(&format!("interfaces[{i}].sandbox"), &f.sandbox)?;
        text(&format!("interfaces[{i}].socketPath"), &f.socket_path)?;
        text(&format!("interfaces[{i}].pciID"), &f.pci_id)?;
        if !f.mac.is_empty() && !is_mac(&f.mac) {
            return Err(refuse(format!(
                "interfaces[{i}].mac {:?} is not a hardware address",
                crate::protocol::error::bounded(&f.mac, 64)
            )));
        }
    }
    let d = &r.dns;
    for (field, list) in [
        ("dns.nameservers", &d.nameservers),
        ("dns.search", &d.search),
        ("dns.options", &d.options),
    ] {
        if list.len() > MAX_DNS_ENTRIES {
            return Err(refuse(format!(
                "{field} has more than {MAX_DNS_ENTRIES} entries"
            )));
        }
        for s in list {
            text(field, s)?;
        }
    }
    text("dns.domain", &d.domain)
}

/// What one call did that its result may mention.
#[derive(Debug, Default)]
pub struct Done {
    /// Addresses its IPAM issued or its module configured in the container.
    pub issued: Vec<IpAddr>,
    /// Host links it created (veths, an ifb).
    pub created: Vec<String>,
}

/// Checks `result`, returned by a module of `kind` for an ADD of the
/// attachment in `netns`, given the call's `prev` result and what it did.
pub fn check(
    kind: PluginKind,
    netns: &str,
    prev: Option<&CniResult>,
    done: &Done,
    result: &CniResult,
) -> Result<(), CniError> {
    let (issued, created) = (&done.issued, &done.created);
    shape(result)?;
    match kind {
        PluginKind::Ipam => Ok(()),
        PluginKind::Portmap | PluginKind::Bandwidth => {
            let empty = CniResult::default();
            let prev = prev.unwrap_or(&empty);
            // It may append host-side links it created (bandwidth's ifb,
            // as the reference lists it), nothing else.
            let kept = result.interfaces.len().min(prev.interfaces.len());
            for (i, f) in result.interfaces.iter().enumerate().skip(kept) {
                if !f.sandbox.is_empty() || !created.contains(&f.name) {
                    return Err(refuse(format!(
                        "interfaces[{i}] {:?} is not a host link this call created",
                        crate::protocol::error::bounded(&f.name, 64)
                    )));
                }
            }
            let mut passed_on = result.clone();
            passed_on.interfaces.truncate(kept);
            // Compared as rendered: the module sees addresses as parsed
            // values, so "2001:db8::0005/64" may come back "2001:db8::5/64".
            let same = &passed_on == prev
                || matches!(
                    (render(&passed_on, "1.1.0"), render(prev, "1.1.0")),
                    (Ok(a), Ok(b)) if a == b
                );
            if !same {
                return Err(refuse(
                    "a chained module's result differs from its prevResult".into(),
                ));
            }
            Ok(())
        }
        PluginKind::Interface => {
            for (i, f) in result.interfaces.iter().enumerate() {
                if !f.sandbox.is_empty() && f.sandbox != netns {
                    return Err(refuse(format!(
                        "interfaces[{i}].sandbox {:?} is not this call's netns",
                        crate::protocol::error::bounded(&f.sandbox, 256)
                    )));
                }
            }
            let prev_ips: Vec<IpAddr> = prev
                .map(|p| p.ips.iter().filter_map(|ip| addr_of(&ip.address)).collect())
                .unwrap_or_default();
            for (i, ip) in result.ips.iter().enumerate() {
                let Some(a) = addr_of(&ip.address) else {
                    continue; // rendering refuses it with its own message
                };
                let on_lo = ip
                    .interface
                    .and_then(|k| result.interfaces.get(k as usize))
                    .is_some_and(|f| f.name == "lo");
                if issued.contains(&a) || prev_ips.contains(&a) || (on_lo && a.is_loopback()) {
                    continue;
                }
                return Err(refuse(format!(
                    "ips[{i}] {a} was neither issued by this call's IPAM nor configured by it"
                )));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::result::{Interface, IpConfig};

    fn iface(name: &str, sandbox: &str) -> Interface {
        Interface {
            name: name.into(),
            mac: "0a:58:0a:01:00:05".into(),
            sandbox: sandbox.into(),
            ..Default::default()
        }
    }

    fn ip(a: &str, i: u32) -> IpConfig {
        IpConfig {
            address: a.into(),
            gateway: None,
            interface: Some(i),
        }
    }

    fn pod() -> CniResult {
        CniResult {
            interfaces: vec![iface("cni0", ""), iface("eth0", "/run/netns/p")],
            ips: vec![ip("10.1.0.5/24", 1)],
            ..Default::default()
        }
    }

    const NS: &str = "/run/netns/p";

    fn none() -> Done {
        Done::default()
    }

    fn issued(a: &str) -> Done {
        Done {
            issued: vec![a.parse().unwrap()],
            ..Default::default()
        }
    }

    #[test]
    fn an_interface_module_claims_what_its_call_did() {
        let issued = issued("10.1.0.5");
        check(PluginKind::Interface, NS, None, &issued, &pod()).unwrap();
        // loopback's own addresses
        let lo = CniResult {
            interfaces: vec![iface("lo", NS)],
            ips: vec![ip("127.0.0.1/8", 0), ip("::1/128", 0)],
            ..Default::default()
        };
        check(PluginKind::Interface, NS, None, &none(), &lo).unwrap();
        // another pod's address, another netns, a bad MAC, a newline
        let e = check(PluginKind::Interface, NS, None, &none(), &pod()).unwrap_err();
        assert!(e.msg.contains("10.1.0.5"), "{e:?}");
        let mut r = pod();
        r.interfaces[1].sandbox = "/proc/1/ns/net".into();
        assert!(check(PluginKind::Interface, NS, None, &issued, &r).is_err());
        let mut r = pod();
        r.interfaces[1].mac = "not-a-mac".into();
        assert!(check(PluginKind::Interface, NS, None, &issued, &r).is_err());
        let mut r = pod();
        r.dns.search = vec!["a\nnameserver 6.6.6.6".into()];
        assert!(check(PluginKind::Interface, NS, None, &issued, &r).is_err());
        // 127.0.0.1 on eth0 is not lo's
        let r = CniResult {
            interfaces: vec![iface("eth0", NS)],
            ips: vec![ip("127.0.0.1/8", 0)],
            ..Default::default()
        };
        assert!(check(PluginKind::Interface, NS, None, &none(), &r).is_err());
        // bounded
        let mut r = pod();
        r.ips = (0..300).map(|_| ip("10.1.0.5/24", 1)).collect();
        assert!(check(PluginKind::Interface, NS, None, &issued, &r).is_err());
    }

    #[test]
    fn a_chained_module_passes_its_prev_result_on_unchanged() {
        let prev = pod();
        check(PluginKind::Portmap, NS, Some(&prev), &none(), &prev).unwrap();
        check(PluginKind::Bandwidth, NS, Some(&prev), &none(), &prev).unwrap();
        let mut forged = prev.clone();
        forged.ips[0].address = "10.1.0.99/24".into();
        let e = check(PluginKind::Portmap, NS, Some(&prev), &none(), &forged).unwrap_err();
        assert!(e.msg.contains("prevResult"), "{e:?}");
        assert!(check(PluginKind::Bandwidth, NS, None, &none(), &prev).is_err());
        // bandwidth lists the ifb it created, and only that
        let mut with_ifb = prev.clone();
        with_ifb.interfaces.push(iface("bwp0123456789ab", ""));
        let made = Done {
            created: vec!["bwp0123456789ab".into()],
            ..Default::default()
        };
        check(PluginKind::Bandwidth, NS, Some(&prev), &made, &with_ifb).unwrap();
        assert!(check(PluginKind::Bandwidth, NS, Some(&prev), &none(), &with_ifb).is_err());
        // the same addresses, written another way
        let mut spelled = prev.clone();
        spelled.ips[0].address = "10.1.0.5/24".into();
        let mut long = prev.clone();
        long.ips = vec![ip("2001:db8:0::0005/64", 1)];
        let mut short = prev.clone();
        short.ips = vec![ip("2001:db8::5/64", 1)];
        check(PluginKind::Portmap, NS, Some(&long), &none(), &short).unwrap();
        check(PluginKind::Portmap, NS, Some(&prev), &none(), &spelled).unwrap();
    }

    #[test]
    fn macs() {
        for good in [
            "0a:58:0a:01:00:05",
            "AA:BB:CC:DD:EE:FF",
            &["00"; 20].join(":"),
        ] {
            assert!(is_mac(good), "{good}");
        }
        for bad in [
            "",
            "not-a-mac",
            "0a:58:0a:01:00",
            "0a:58:0a:01:00:5",
            "zz:58:0a:01:00:05",
        ] {
            assert!(!is_mac(bad), "{bad}");
        }
    }
}
