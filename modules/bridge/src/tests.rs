#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;
use wasm_cni_guest::testing::FakeHost;

fn ipam_result(addrs: &[&str]) -> CniResult {
    CniResult {
        ips: addrs
            .iter()
            .map(|a| IpConfig {
                address: a.parse().unwrap(),
                gateway: None,
                interface: None,
            })
            .collect(),
        routes: vec![Route::new("0.0.0.0/0".parse().unwrap(), None)],
        dns: Dns {
            nameservers: vec!["10.0.0.53".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn setup(extra: Value) -> (FakeHost, Invocation) {
    let host = FakeHost::new();
    let mut conf = json!({"cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}});
    if let (Some(o), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let mut inv = Invocation::new("c1", "eth0", conf);
    inv.netns = "/var/run/netns/fake".into();
    (host, inv)
}

#[test]
fn add_builds_bridge_veth_addresses_gateway_and_masq() {
    let (mut host, inv) = setup(
        json!({"isGateway": true, "ipMasq": true, "hairpinMode": true, "portIsolation": true, "mtu": 1400}),
    );
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.22.0.5/16", "fd00::5/64"]))));
    let r = Bridge::add(&mut host, &inv).unwrap();

    assert_eq!(r.interfaces.len(), 3);
    assert_eq!(r.interfaces[0].name, "cni0");
    assert!(
        r.interfaces[1].name.starts_with("veth") && r.interfaces[1].name.len() == 12,
        "{:?}",
        r.interfaces[1]
    );
    assert_eq!(r.interfaces[2].name, "eth0");
    assert_eq!(r.interfaces[2].sandbox, "/var/run/netns/fake");
    assert!(r.ips.iter().all(|i| i.interface == Some(2)));
    assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.22.0.1");
    assert_eq!(r.ips[1].gateway.unwrap().to_string(), "fd00::1");
    assert_eq!(r.dns.nameservers, ["10.0.0.53"]);

    let hv = host.host_net.link_state(&r.interfaces[1].name).unwrap();
    let br = host.host_net.link_state("cni0").unwrap();
    assert_eq!(hv.link.master, Some(br.link.index));
    assert_eq!(
        hv.port,
        PortConfig {
            hairpin: true,
            isolated: true
        }
    );
    assert_eq!(hv.link.mtu, 1400);
    let gws: Vec<String> = br.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(gws, ["10.22.0.1/16", "fd00::1/64"]);
    assert_eq!(
        host.host_net
            .sysctl_value(Side::Host, "net/ipv4/ip_forward")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        host.host_net
            .sysctl_value(Side::Host, "net/ipv6/conf/all/forwarding")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        host.host_net
            .sysctl_value(Side::Container, "net/ipv6/conf/eth0/accept_dad")
            .as_deref(),
        Some("0")
    );
    assert_eq!(host.host_net.masqueraded().len(), 2);
    let addrs: Vec<String> = host
        .netns
        .link_addresses("eth0")
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, ["10.22.0.5/16", "fd00::5/64"]);
    assert!(host.netns.link_state("eth0").unwrap().up);
    // The IPAM default route got the first v4 gateway.
    assert!(host
        .netns
        .calls()
        .iter()
        .any(|c| c == "add-route eth0 0.0.0.0/0"));
}

#[test]
fn default_gateway_route_is_added_once_per_family() {
    let (mut host, inv) = setup(json!({"isDefaultGateway": true}));
    let mut ipam = ipam_result(&["10.1.0.5/24"]);
    ipam.routes.clear();
    host.ipam_answers.push_back(Ok(Some(ipam)));
    let r = Bridge::add(&mut host, &inv).unwrap();
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
    assert_eq!(r.routes[0].gw.unwrap().to_string(), "10.1.0.1");
}

#[test]
fn existing_different_bridge_address_needs_force_address() {
    let (mut host, inv) = setup(json!({"isGateway": true}));
    let scope = host.host_net().unwrap();
    scope.ensure_bridge(&BridgeConfig::default()).unwrap();
    host.host_net
        .put_address("cni0", "10.9.0.1/24".parse().unwrap());
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.22.0.5/16"]))));
    let e = Bridge::add(&mut host, &inv).unwrap_err();
    assert!(
        e.msg
            .contains("already has an IP address different from 10.22.0.1/16"),
        "{e}"
    );

    let (mut host2, inv2) = setup(json!({"isGateway": true, "forceAddress": true}));
    let scope = host2.host_net().unwrap();
    scope.ensure_bridge(&BridgeConfig::default()).unwrap();
    host2
        .host_net
        .put_address("cni0", "10.9.0.1/24".parse().unwrap());
    host2
        .ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.22.0.5/16"]))));
    Bridge::add(&mut host2, &inv2).unwrap();
    let a: Vec<String> = host2
        .host_net
        .link_state("cni0")
        .unwrap()
        .addresses
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(a, ["10.22.0.1/16"]);
}

#[test]
fn l2_only_without_ipam_brings_container_up_or_leaves_it_down() {
    let (mut host, mut inv) = setup(json!({}));
    inv.config.as_object_mut().unwrap().remove("ipam");
    let r = Bridge::add(&mut host, &inv).unwrap();
    assert!(r.ips.is_empty());
    assert!(host.netns.link_state("eth0").unwrap().up);
    assert!(host.ipam_calls.is_empty());

    let (mut host, mut inv) = setup(json!({"disableContainerInterface": true}));
    inv.config.as_object_mut().unwrap().remove("ipam");
    Bridge::add(&mut host, &inv).unwrap();
    assert!(!host.netns.link_state("eth0").unwrap().up);

    let (mut host, inv) = setup(json!({"disableContainerInterface": true}));
    assert_eq!(Bridge::add(&mut host, &inv).unwrap_err().code, 7);
}

#[test]
fn mac_precedence_cni_args_then_args_then_runtime_config() {
    let (mut host, mut inv) = setup(json!({"args": {"cni": {"mac": "02:00:00:00:00:02"}}}));
    inv.args = vec![("MAC".into(), "02:00:00:00:00:01".into())];
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    Bridge::add(&mut host, &inv).unwrap();
    assert!(
        host.host_net
            .calls()
            .iter()
            .any(|c| c.contains("mac=Some(\"02:00:00:00:00:02\")")),
        "{:?}",
        host.host_net.calls()
    );

    let (mut host, mut inv) = setup(
        json!({"args": {"cni": {"mac": "02:00:00:00:00:02"}}, "runtimeConfig": {"mac": "02:00:00:00:00:03"}}),
    );
    inv.args = vec![("MAC".into(), "02:00:00:00:00:01".into())];
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    Bridge::add(&mut host, &inv).unwrap();
    assert!(host
        .host_net
        .calls()
        .iter()
        .any(|c| c.contains("mac=Some(\"02:00:00:00:00:03\")")));
}

#[test]
fn vlan_access_and_trunk_ports() {
    let (mut host, inv) = setup(json!({"vlan": 100, "preserveDefaultVlan": false}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    let r = Bridge::add(&mut host, &inv).unwrap();
    let v = host
        .host_net
        .link_state(&r.interfaces[1].name)
        .unwrap()
        .vlans;
    assert_eq!(
        v,
        vec![Vlan {
            vid: 100,
            pvid: true,
            untagged: true
        }]
    );
    assert!(host
        .host_net
        .calls()
        .iter()
        .any(|c| c.contains("vlan_filtering=true")));

    let (mut host, inv) = setup(json!({"vlanTrunk": [{"minID": 10, "maxID": 12}, {"id": 20}]}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    let r = Bridge::add(&mut host, &inv).unwrap();
    let v: Vec<u16> = host
        .host_net
        .link_state(&r.interfaces[1].name)
        .unwrap()
        .vlans
        .iter()
        .map(|v| v.vid)
        .collect();
    assert_eq!(v, [10, 11, 12, 20]);
}

#[test]
fn bad_configs_get_code_7_with_what_to_fix() {
    for (extra, needle) in [
        (json!({"vlan": 5000}), "invalid VLAN ID"),
        (
            json!({"vlan": 5, "vlanTrunk": [{"id": 6}]}),
            "vlan and vlanTrunk",
        ),
        (json!({"vlanTrunk": [{"minID": 6}]}), "maxID is missing"),
        (
            json!({"vlanTrunk": [{"minID": 9, "maxID": 6}]}),
            "minID is greater",
        ),
        (
            json!({"hairpinMode": true, "promiscMode": true}),
            "hairpin mode and promiscuous mode",
        ),
        (
            json!({"ipMasqBackend": "ebtables"}),
            "unknown ipmasq backend",
        ),
        (json!({"mtu": "big"}), "invalid bridge configuration"),
        (json!({"vlan": 5, "isGateway": true}), "isGateway with vlan"),
    ] {
        let (mut host, inv) = setup(extra.clone());
        let e = Bridge::add(&mut host, &inv).unwrap_err();
        assert_eq!(e.code, 7, "{extra}: {e}");
        assert!(e.msg.contains(needle), "{extra}: {e}");
    }
}

#[test]
fn ipam_without_ips_fails() {
    let (mut host, inv) = setup(json!({}));
    host.ipam_answers.push_back(Ok(Some(CniResult::default())));
    let e = Bridge::add(&mut host, &inv).unwrap_err();
    assert!(e.msg.contains("missing IP config"), "{e}");
}

#[test]
fn del_removes_link_releases_ipam_and_masq_even_without_netns() {
    let (mut host, inv) = setup(json!({"ipMasq": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    Bridge::add(&mut host, &inv).unwrap();
    Bridge::del(&mut host, &inv).unwrap();
    assert!(host.netns.link_state("eth0").is_none());
    assert!(host.host_net.masqueraded().is_empty());
    assert_eq!(host.ipam_calls, [IpamCommand::Add, IpamCommand::Del]);
    // Again: idempotent.
    Bridge::del(&mut host, &inv).unwrap();
    // No netns at all: IPAM and masquerade are still released.
    let mut inv2 = inv.clone();
    inv2.netns.clear();
    Bridge::del(&mut host, &inv2).unwrap();
    assert!(
        host.host_net
            .calls()
            .iter()
            .filter(|c| *c == "masquerade-del")
            .count()
            == 3
    );
}

#[test]
fn check_passes_after_add_and_fails_when_things_go_missing() {
    let (mut host, mut inv) = setup(json!({"isGateway": true, "ipMasq": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    let r = Bridge::add(&mut host, &inv).unwrap();
    inv.prev_result = Some(r.clone());
    Bridge::check(&mut host, &inv).unwrap();

    let no_prev = Invocation {
        prev_result: None,
        ..inv.clone()
    };
    assert_eq!(Bridge::check(&mut host, &no_prev).unwrap_err().code, 7);

    host.netns
        .del_address("eth0", "10.1.0.5/24".parse().unwrap())
        .unwrap();
    let e = Bridge::check(&mut host, &inv).unwrap_err();
    assert!(e.msg.contains("address 10.1.0.5/24 not found"), "{e}");
    host.netns
        .add_address("eth0", "10.1.0.5/24".parse().unwrap())
        .unwrap();
    host.netns
        .remove_route("eth0", "0.0.0.0/0".parse().unwrap());
    let e = Bridge::check(&mut host, &inv).unwrap_err();
    assert!(e.msg.contains("route 0.0.0.0/0 not found"), "{e}");
    host.netns.remove_link("eth0");
    assert!(Bridge::check(&mut host, &inv).is_err());
}

#[test]
fn fake_scope_refuses_foreign_host_links() {
    let (mut host, _inv) = setup(json!({}));
    host.host_net.add_foreign_link("lo", "");
    host.host_net.add_foreign_link("vethother", "veth");
    let scope = host.host_net().unwrap();
    for name in ["lo", "vethother"] {
        let e = scope.set_link_up(name, false).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("outside this invocation's scope"), "{e}");
    }
}

#[test]
fn macspoofchk_installs_checks_and_deletes_the_spoof_check() {
    let (mut host, mut inv) = setup(json!({"macspoofchk": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    let r = Bridge::add(&mut host, &inv).unwrap();
    let (veth, mac) = host.host_net.spoofcheck().expect("spoof check installed");
    assert_eq!(veth, r.interfaces[1].name);
    assert_eq!(mac, r.interfaces[2].mac);
    // Before IPAM, as the reference.
    let calls = host.host_net.calls();
    assert!(calls.iter().any(|c| c == "spoofcheck-add"), "{calls:?}");

    inv.prev_result = Some(r);
    Bridge::check(&mut host, &inv).unwrap();
    host.host_net.spoofcheck_del_for_test();
    let e = Bridge::check(&mut host, &inv).unwrap_err();
    assert!(e.msg.contains("spoof check"), "{e}");

    // DEL without netns still removes it.
    inv.netns.clear();
    Bridge::del(&mut host, &inv).unwrap();
    assert!(host.host_net.calls().iter().any(|c| c == "spoofcheck-del"));
    assert!(host.host_net.spoofcheck().is_none());
}

#[test]
fn no_spoof_check_unless_asked() {
    let (mut host, inv) = setup(json!({}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    Bridge::add(&mut host, &inv).unwrap();
    Bridge::del(&mut host, &inv).unwrap();
    assert!(!host
        .host_net
        .calls()
        .iter()
        .any(|c| c.starts_with("spoofcheck")));
}

#[test]
fn ip_masq_backend_nftables_and_del_of_both_backends() {
    let (mut host, mut inv) = setup(json!({"ipMasq": true, "ipMasqBackend": "nftables"}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    let r = Bridge::add(&mut host, &inv).unwrap();
    assert_eq!(
        host.host_net.masqueraded_nft(),
        ["10.1.0.5/24".parse().unwrap()]
    );
    assert!(host.host_net.masqueraded().is_empty(), "not in iptables");
    inv.prev_result = Some(r);
    Bridge::check(&mut host, &inv).unwrap();
    // The same attachment read as iptables-backed: its rules are not there.
    let mut ipt = inv.clone();
    ipt.config["ipMasqBackend"] = json!("iptables");
    assert!(Bridge::check(&mut host, &ipt).is_err());
    Bridge::del(&mut host, &inv).unwrap();
    assert!(host.host_net.masqueraded_nft().is_empty());
}

/// ipMasqBackend unset on a node without usable iptables but with
/// nftables: the masquerade goes to nftables, as upstream's
/// SetupIPMasqForNetworks chooses; CHECK looks there too.
#[test]
fn unset_ip_masq_backend_takes_nftables_when_only_nftables_works() {
    let (mut host, mut inv) = setup(json!({"ipMasq": true}));
    host.host_net
        .set_masquerade_unusable(MasqBackend::Iptables, "cannot run iptables-save");
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    let r = Bridge::add(&mut host, &inv).unwrap();
    assert_eq!(
        host.host_net.masqueraded_nft(),
        ["10.1.0.5/24".parse().unwrap()]
    );
    assert!(host.host_net.masqueraded().is_empty(), "not in iptables");
    inv.prev_result = Some(r);
    Bridge::check(&mut host, &inv).unwrap();
    Bridge::del(&mut host, &inv).unwrap();
    assert!(host.host_net.masqueraded_nft().is_empty());
    // With iptables usable the unset backend stays iptables.
    let (mut host, inv) = setup(json!({"ipMasq": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.6/24"]))));
    Bridge::add(&mut host, &inv).unwrap();
    assert_eq!(
        host.host_net.masqueraded(),
        ["10.1.0.6/24".parse().unwrap()]
    );
}

#[test]
fn enabledad_keeps_dad_and_waits_for_it_bounded() {
    for (dad, accept_dad) in [(true, "1"), (false, "0")] {
        let (mut host, inv) = setup(json!({"isGateway": true, "enabledad": dad}));
        host.ipam_answers
            .push_back(Ok(Some(ipam_result(&["fd00::5/64"]))));
        Bridge::add(&mut host, &inv).unwrap();
        assert_eq!(
            host.host_net
                .sysctl_value(Side::Container, "net/ipv6/conf/eth0/accept_dad")
                .as_deref(),
            Some(accept_dad)
        );
        let calls = host.host_net.calls();
        assert!(
            calls.iter().any(|c| c == "settle-addresses 5000"),
            "{calls:?}"
        );
        assert_eq!(
            host.host_net
                .sysctl_value(Side::Container, "net/ipv6/conf/eth0/enhanced_dad")
                .is_some(),
            dad
        );
    }
    // DAD still under way after upstream's 5 s, or failed: the ADD fails
    // as upstream's does (the reference 1.1.1 ignored both).
    let (mut host, inv) = setup(json!({"isGateway": true, "enabledad": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["fd00::5/64"]))));
    host.host_net.set_dad_pending(1);
    let e = Bridge::add(&mut host, &inv).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (
            999,
            "failed to settle addresses for \"eth0\": link eth0 still has tentative addresses after 5 seconds"
        )
    );
    let (mut host, inv) = setup(json!({"isGateway": true, "enabledad": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["fd00::5/64"]))));
    host.host_net.set_dad_failed("fd00::5");
    let e = Bridge::add(&mut host, &inv).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (
            999,
            "failed to settle addresses for \"eth0\": link eth0 has address fd00::5 in DADFAILED state"
        )
    );
    // IPv4 only: nothing to wait for.
    let (mut host, inv) = setup(json!({"isGateway": true, "enabledad": true}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    Bridge::add(&mut host, &inv).unwrap();
    assert!(!host
        .host_net
        .calls()
        .iter()
        .any(|c| c.starts_with("settle")));
}

#[test]
fn gc_removes_masquerade_of_unlisted_attachments_then_passes_gc_to_ipam() {
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0", "ipMasq": true}));
    host.host_net
        .set_masquerade_gc_answer(vec!["iptables chain CNI-x of gone".into()]);
    let valid = [Attachment {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    }];
    Bridge::gc(&mut host, &inv, &valid).unwrap();
    assert_eq!(host.host_net.calls(), ["masquerade-gc"]);
    assert_eq!(host.ipam_calls, [IpamCommand::Gc]);
    assert!(host
        .logs
        .borrow()
        .iter()
        .any(|(_, m)| m.contains("GC removed iptables chain CNI-x of gone")));

    // Both steps run even when the first fails; the first error is reported.
    host.ipam_answers
        .push_back(Err(CniError::internal("ipam gc failed")));
    let e = Bridge::gc(&mut host, &inv, &valid).unwrap_err();
    assert_eq!(e.msg, "ipam gc failed");
    assert_eq!(host.host_net.calls(), ["masquerade-gc", "masquerade-gc"]);

    // L2 only: no IPAM, no masquerade, nothing to collect.
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0"}));
    let mut c = inv.config.clone();
    c.as_object_mut().unwrap().remove("ipam");
    let inv = Invocation::new("c1", "eth0", c);
    Bridge::gc(&mut host, &inv, &[]).unwrap();
    assert!(host.host_net.calls().is_empty());
    assert!(host.ipam_calls.is_empty());
}

#[test]
fn status_checks_the_masquerade_backend_in_use_then_the_ipam() {
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0", "ipMasq": true}));
    Bridge::status(&mut host, &inv).unwrap();
    assert_eq!(
        host.host_net.calls(),
        ["backend-supported Iptables", "masquerade-status Iptables"]
    );
    assert_eq!(host.ipam_calls, [IpamCommand::Status]);

    // Backend unset, iptables unusable, nftables works: nftables is the
    // backend ADD would use (upstream's default), so STATUS is ready.
    host.host_net.set_masquerade_unusable(
        MasqBackend::Iptables,
        "the iptables masquerade backend is unusable on this node: cannot run iptables-save",
    );
    Bridge::status(&mut host, &inv).unwrap();
    assert!(host
        .host_net
        .calls()
        .ends_with(&["masquerade-status Nftables".to_string()]));
    // Neither works: iptables, and its error.
    host.host_net
        .set_masquerade_unusable(MasqBackend::Nftables, "cannot run nft");
    let e = Bridge::status(&mut host, &inv).unwrap_err();
    assert_eq!(e.code, code::NOT_AVAILABLE);
    assert!(e.msg.contains("iptables-save"), "{}", e.msg);
    // the nftables backend is the one asked about when configured
    let (mut host, inv) =
        setup(json!({"cniVersion": "1.1.0", "ipMasq": true, "ipMasqBackend": "nftables"}));
    host.host_net
        .set_masquerade_unusable(MasqBackend::Iptables, "no iptables");
    Bridge::status(&mut host, &inv).unwrap();
    assert_eq!(host.host_net.calls(), ["masquerade-status Nftables"]);

    // No ipMasq: the firewall is not needed for ADD, so not asked about.
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0"}));
    host.host_net
        .set_masquerade_unusable(MasqBackend::Iptables, "no iptables");
    Bridge::status(&mut host, &inv).unwrap();
    assert!(host.host_net.calls().is_empty());
    // An IPAM that cannot serve fails STATUS; a config no ADD accepts too.
    host.ipam_answers
        .push_back(Err(CniError::new(code::NOT_AVAILABLE, "state unusable")));
    assert_eq!(Bridge::status(&mut host, &inv).unwrap_err().code, 50);
    let (mut host, inv) = setup(json!({"cniVersion": "1.1.0", "vlan": 5000}));
    assert_eq!(Bridge::status(&mut host, &inv).unwrap_err().code, 7);
}

/// CNI_ARGS: unknown keys fail ADD and CHECK without IgnoreUnknown, as
/// upstream's types.LoadArgs ("ARGS: unknown args"); MAC is known; DEL goes on.
#[test]
fn unknown_cni_args_need_ignore_unknown() {
    let (mut host, mut inv) = setup(json!({}));
    inv.args = vec![("K8S_POD_NAME".into(), "p".into())];
    let e = Bridge::add(&mut host, &inv).unwrap_err();
    assert!(e.msg.contains("ARGS: unknown args"), "{}", e.msg);
    assert!(
        host.host_net.calls().is_empty(),
        "refused before any change"
    );
    assert!(Bridge::check(&mut host, &inv).is_err());
    Bridge::del(&mut host, &inv).unwrap();
    inv.args.push(("IgnoreUnknown".into(), "1".into()));
    inv.args.push(("MAC".into(), "0a:58:0a:01:00:05".into()));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.1.0.5/24"]))));
    Bridge::add(&mut host, &inv).unwrap();
}

/// The fake host applies the host's own scope rules (cni_model::scope): a
/// module's unit test meets the refusal the node would give.
#[test]
fn the_fake_host_refuses_what_the_ipam_result_does_not_derive() {
    let (mut host, _inv) = setup(json!({}));
    host.ipam_answers
        .push_back(Ok(Some(ipam_result(&["10.22.0.5/24"]))));
    host.ipam(IpamCommand::Add).unwrap();
    let scope = host.host_net().unwrap();
    scope.ensure_bridge(&BridgeConfig::default()).unwrap();
    scope
        .add_address("cni0", "10.22.0.1/24".parse().unwrap())
        .unwrap();
    let e = scope
        .add_address("cni0", "192.0.2.1/24".parse().unwrap())
        .unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (7, "host address 192.0.2.1/24 is not this attachment's")
    );
    let e = scope
        .add_route("cni0", &Route::new("0.0.0.0/1".parse().unwrap(), None))
        .unwrap_err();
    assert!(e.msg.contains("host route 0.0.0.0/1"), "{e}");
    let e = host
        .masquerade_add(&["0.0.0.0/0".parse().unwrap()])
        .unwrap_err();
    assert!(e.msg.contains("masquerade for 0.0.0.0/0"), "{e}");
    host.masquerade_add(&["10.22.0.5/24".parse().unwrap()])
        .unwrap();
}
