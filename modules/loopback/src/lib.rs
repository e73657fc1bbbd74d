//! loopback: brings `lo` up in the container (ADD), verifies it (CHECK) and
//! takes it down (DEL). `CNI_IFNAME` is ignored, as in the reference: the
//! loopback device is always `lo`.

use wasm_cni_guest::prelude::*;

const LO: &str = "lo";

pub struct Loopback;

/// Addresses on `lo` that the kernel does not own by itself mean somebody
/// configured it: the reference refuses those, and so do we.
fn check_loopback_only(addrs: &[IpNet]) -> CniResultOf<()> {
    match addrs.iter().find(|a| !a.addr.is_loopback()) {
        Some(a) => Err(
            CniError::internal("loopback interface found with non-loopback address").with_details(
                format!("lo carries {a}; remove it or use another plugin for this address"),
            ),
        ),
        None => Ok(()),
    }
}

impl<H: InterfaceHost> Plugin<H> for Loopback {
    const KIND: PluginKind = PluginKind::Interface;

    fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
        let ns = host.container_netns()?;
        ns.set_link_up(LO, true)?;
        let addrs = ns.addresses(LO)?;
        check_loopback_only(&addrs)?;

        // A chained loopback passes the previous result through unchanged.
        if let Some(prev) = &inv.prev_result {
            return Ok(prev.clone());
        }
        let link = ns
            .link(LO)?
            .ok_or_else(|| CniError::internal("lo is missing in the container namespace"))?;
        let first = |v4: bool| addrs.iter().find(|a| a.is_ipv4() == v4).copied();
        let ips = [first(true), first(false)]
            .into_iter()
            .flatten()
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: Some(0),
            })
            .collect();
        Ok(CniResult {
            interfaces: vec![Interface {
                name: LO.into(),
                mac: link.mac,
                sandbox: ns.path(),
                ..Default::default()
            }],
            ips,
            ..Default::default()
        })
    }

    fn del(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        // DEL must succeed when the namespace is already gone.
        if inv.netns.is_empty() {
            return Ok(());
        }
        let ns = match host.container_netns() {
            Ok(ns) => ns,
            Err(e) if e.code == code::UNKNOWN_CONTAINER => return Ok(()),
            Err(e) => return Err(e),
        };
        if ns.link(LO)?.is_some() {
            ns.set_link_up(LO, false)?;
        }
        Ok(())
    }

    fn check(host: &mut H, _inv: &Invocation) -> CniResultOf<()> {
        let ns = host.container_netns()?;
        let link = ns
            .link(LO)?
            .ok_or_else(|| CniError::internal("lo is missing in the container namespace"))?;
        if !link.up {
            return Err(CniError::internal("loopback interface is down")
                .with_details("lo must be up; run ADD again"));
        }
        check_loopback_only(&ns.addresses(LO)?)
    }
}

wasm_cni_guest::export_plugin!(Loopback);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasm_cni_guest::testing::FakeHost;

    fn setup() -> (FakeHost, Invocation) {
        let host = FakeHost::new();
        host.netns.add_link("lo", false);
        let mut inv = Invocation::new(
            "c1",
            "eth0",
            json!({"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}),
        );
        inv.netns = "/var/run/netns/fake".into();
        (host, inv)
    }

    #[test]
    fn add_brings_lo_up_and_reports_it() {
        let (mut host, inv) = setup();
        let r = Loopback::add(&mut host, &inv).expect("add");
        assert!(host.netns.link_state("lo").expect("lo").up);
        assert_eq!(r.interfaces[0].name, "lo");
        assert_eq!(r.interfaces[0].sandbox, "/var/run/netns/fake");
        let ips: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
        assert_eq!(ips, ["127.0.0.1/8", "::1/128"]);
        assert!(r.ips.iter().all(|i| i.interface == Some(0)));
        Loopback::check(&mut host, &inv).expect("check after add");
    }

    #[test]
    fn add_passes_prev_result_through() {
        let (mut host, mut inv) = setup();
        let prev = CniResult {
            ips: vec![IpConfig {
                address: "10.0.0.2/24".parse().expect("net"),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        };
        inv.prev_result = Some(prev.clone());
        assert_eq!(Loopback::add(&mut host, &inv).expect("add"), prev);
    }

    #[test]
    fn add_refuses_foreign_address() {
        let (mut host, inv) = setup();
        host.netns.set_link_up("lo", true).expect("up");
        host.netns
            .add_address("lo", "10.9.9.9/32".parse().expect("net"))
            .expect("addr");
        let e = Loopback::add(&mut host, &inv).expect_err("must refuse");
        assert!(e.msg.contains("non-loopback"), "{e}");
    }

    #[test]
    fn del_downs_lo_and_tolerates_missing_netns() {
        let (mut host, mut inv) = setup();
        Loopback::add(&mut host, &inv).expect("add");
        Loopback::del(&mut host, &inv).expect("del");
        assert!(!host.netns.link_state("lo").expect("lo").up);
        assert!(
            Loopback::check(&mut host, &inv).is_err(),
            "check must fail when lo is down"
        );
        host.netns.remove();
        Loopback::del(&mut host, &inv).expect("del with netns gone");
        inv.netns.clear();
        Loopback::del(&mut host, &inv).expect("del without netns");
    }
}
