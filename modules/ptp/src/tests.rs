#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::{json, Value};
use wasm_cni_guest::testing::FakeHost;

fn setup(extra: Value) -> (FakeHost, Invocation) {
    let host = FakeHost::new();
    let mut conf = json!({"cniVersion": "1.0.0", "name": "ptpnet", "type": "ptp", "ipam": {"type": "host-local"}});
    if let (Some(o), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let mut inv = Invocation::new("p1", "eth0", conf);
    inv.netns = "/var/run/netns/fake".into();
    (host, inv)
}

fn ipam(addrs: &[(&str, &str)]) -> CniResult {
    CniResult {
        ips: addrs
            .iter()
            .map(|(a, g)| IpConfig {
                address: a.parse().unwrap(),
                gateway: Some(g.parse().unwrap()),
                interface: None,
            })
            .collect(),
        routes: vec![Route::new("0.0.0.0/0".parse().unwrap(), None)],
        ..Default::default()
    }
}

#[test]
fn add_routes_through_the_host_gateway() {
    let (mut host, inv) = setup(json!({"ipMasq": true, "mtu": 1450}));
    host.ipam_answers.push_back(Ok(Some(ipam(&[
        ("10.40.0.7/24", "10.40.0.1"),
        ("fd40::7/64", "fd40::1"),
    ]))));
    let r = Ptp::add(&mut host, &inv).unwrap();
    assert_eq!(r.interfaces.len(), 2);
    assert!(r.interfaces[0].name.starts_with("veth") && r.interfaces[0].sandbox.is_empty());
    assert_eq!(r.interfaces[1].name, "eth0");
    assert!(r.ips.iter().all(|i| i.interface == Some(1)));
    let hv = host.host_net.link_state(&r.interfaces[0].name).unwrap();
    let a: Vec<String> = hv.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(a, ["10.40.0.1/32", "fd40::1/128"]);
    let hr: Vec<String> = hv.routes.iter().map(|r| r.dst.to_string()).collect();
    assert_eq!(hr, ["10.40.0.7/32", "fd40::7/128"]);
    assert!(
        hv.routes.iter().all(|r| r.scope == Some(254)),
        "scope host, as upstream"
    );
    assert_eq!(hv.link.mtu, 1450);
    let calls = host.netns.calls();
    assert!(
        calls.contains(&"add-route eth0 10.40.0.1/32 src 10.40.0.7".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"add-route eth0 10.40.0.0/24 src 10.40.0.7".to_string()),
        "{calls:?}"
    );
    assert!(host
        .host_net
        .calls()
        .contains(&"del-container-route eth0 10.40.0.0/24".to_string()));
    assert_eq!(host.host_net.masqueraded().len(), 2);
    assert_eq!(
        host.host_net
            .sysctl_value(Side::Host, "net/ipv4/ip_forward")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn ipam_is_required_and_first() {
    let (mut host, mut inv) = setup(json!({}));
    inv.config.as_object_mut().unwrap().remove("ipam");
    assert_eq!(Ptp::add(&mut host, &inv).unwrap_err().code, 7);
    let (mut host, inv) = setup(json!({}));
    host.ipam_answers.push_back(Ok(Some(CniResult::default())));
    assert!(Ptp::add(&mut host, &inv)
        .unwrap_err()
        .msg
        .contains("missing IP config"));
    assert!(
        host.host_net.calls().is_empty(),
        "nothing created before IPAM answered"
    );
}

#[test]
fn del_is_idempotent_and_works_without_netns() {
    let (mut host, mut inv) = setup(json!({"ipMasq": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam(&[("10.40.0.7/24", "10.40.0.1")]))));
    let r = Ptp::add(&mut host, &inv).unwrap();
    Ptp::del(&mut host, &inv).unwrap();
    assert!(host.netns.link_state("eth0").is_none());
    assert!(host.host_net.link_state(&r.interfaces[0].name).is_none());
    assert!(host.host_net.masqueraded().is_empty());
    Ptp::del(&mut host, &inv).unwrap();
    inv.netns.clear();
    Ptp::del(&mut host, &inv).unwrap();
    assert_eq!(
        host.ipam_calls
            .iter()
            .filter(|c| **c == IpamCommand::Del)
            .count(),
        3
    );
}

#[test]
fn check_follows_prev_result() {
    let (mut host, mut inv) = setup(json!({}));
    host.ipam_answers
        .push_back(Ok(Some(ipam(&[("10.40.0.7/24", "10.40.0.1")]))));
    let r = Ptp::add(&mut host, &inv).unwrap();
    inv.prev_result = Some(r);
    Ptp::check(&mut host, &inv).unwrap();
    host.netns
        .del_address("eth0", "10.40.0.7/24".parse().unwrap())
        .unwrap();
    assert!(Ptp::check(&mut host, &inv)
        .unwrap_err()
        .msg
        .contains("not found"));
}

#[test]
fn ip_masq_backend_nftables_is_used_checked_and_removed() {
    let (mut host, mut inv) = setup(json!({"ipMasq": true, "ipMasqBackend": "nftables"}));
    host.ipam_answers
        .push_back(Ok(Some(ipam(&[("10.88.0.5/24", "10.88.0.1")]))));
    let r = Ptp::add(&mut host, &inv).unwrap();
    assert_eq!(
        host.host_net.masqueraded_nft(),
        ["10.88.0.5/24".parse().unwrap()]
    );
    assert!(host.host_net.masqueraded().is_empty());
    inv.prev_result = Some(r);
    Ptp::check(&mut host, &inv).unwrap();
    Ptp::del(&mut host, &inv).unwrap();
    assert!(host.host_net.masqueraded_nft().is_empty());

    let (mut host, inv) = setup(json!({"ipMasq": true, "ipMasqBackend": "pf"}));
    let e = Ptp::add(&mut host, &inv).unwrap_err();
    assert_eq!(e.code, 7, "{e}");
    assert!(e.msg.contains("unknown ipmasq backend"), "{e}");
}

#[test]
fn gc_removes_masquerade_of_unlisted_attachments_then_passes_gc_to_ipam() {
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0", "ipMasq": true}));
    Ptp::gc(&mut host, &inv, &[]).unwrap();
    assert_eq!(host.host_net.calls(), ["masquerade-gc"]);
    assert_eq!(host.ipam_calls, [IpamCommand::Gc]);
    // Without ipMasq too: an earlier configuration may have installed rules.
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0"}));
    Ptp::gc(&mut host, &inv, &[]).unwrap();
    assert_eq!(host.host_net.calls(), ["masquerade-gc"]);
    assert_eq!(host.ipam_calls, [IpamCommand::Gc]);
}

#[test]
fn status_checks_the_masquerade_backend_then_the_ipam() {
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0", "ipMasq": true}));
    Ptp::status(&mut host, &inv).unwrap();
    assert_eq!(
        host.host_net.calls(),
        ["backend-supported Iptables", "masquerade-status Iptables"]
    );
    assert_eq!(host.ipam_calls, [IpamCommand::Status]);
    host.host_net
        .set_masquerade_unusable(MasqBackend::Iptables, "cannot run iptables-save");
    // nftables works: the unset backend is nftables, ready.
    Ptp::status(&mut host, &inv).unwrap();
    host.host_net
        .set_masquerade_unusable(MasqBackend::Nftables, "cannot run nft");
    let e = Ptp::status(&mut host, &inv).unwrap_err();
    assert_eq!((e.code, e.msg.as_str()), (50, "cannot run iptables-save"));
    // without ipMasq the firewall is not needed
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0"}));
    host.host_net
        .set_masquerade_unusable(MasqBackend::Iptables, "cannot run iptables-save");
    Ptp::status(&mut host, &inv).unwrap();
}
