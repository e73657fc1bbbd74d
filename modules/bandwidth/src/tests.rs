use serde_json::json;
use wasm_cni_guest::testing::FakeHost;

use super::*;

fn prev() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "cni0".into(),
                ..Default::default()
            },
            Interface {
                name: "veth1234".into(),
                ..Default::default()
            },
            Interface {
                name: "eth0".into(),
                sandbox: "/var/run/netns/fake".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn setup(config: serde_json::Value) -> (FakeHost, Invocation) {
    let host = FakeHost::new();
    host.tc.set_attachment("veth1234", "net1", "c1");
    let mut inv = Invocation::new("c1", "eth0", config);
    inv.netns = "/var/run/netns/fake".into();
    inv.prev_result = Some(prev());
    (host, inv)
}

fn conf(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "net1", "type": "bandwidth"});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    c
}

#[test]
fn tbf_math_matches_the_reference() {
    // The reference's unit test: 8 bits/s and an 8-bit burst.
    assert_eq!(
        tbf(8, 8),
        Tbf {
            rate: 1,
            burst: 1,
            limit: 1
        }
    );
    assert_eq!(tbf(16, 8).rate, 2);
    // containerd's burst at 20 Mbit/s: limit = 62500 + 536870911.
    assert_eq!(
        tbf(20_000_000, 4_294_967_295),
        Tbf {
            rate: 2_500_000,
            burst: 536_870_911,
            limit: 536_933_411
        }
    );
    // CRI-O's burst wraps the 32-bit limit exactly as the kernel shows after the reference.
    assert_eq!(
        tbf(20_000_000, 34_359_738_359),
        Tbf {
            rate: 2_500_000,
            burst: 4_294_967_294,
            limit: 62_498
        }
    );
}

#[test]
fn limits_from_top_level_or_runtime_config_any_case() {
    let rc = conf(
        json!({"runtimeConfig": {"bandwidth": {"IngressRate": 1000, "IngressBurst": 4294967295u64, "EgressRate": 2000, "EgressBurst": 34359738359u64}}}),
    );
    assert_eq!(
        limits(&rc).expect("limits"),
        Limits {
            ingress_rate: 1000,
            ingress_burst: 4_294_967_295,
            egress_rate: 2000,
            egress_burst: 34_359_738_359
        }
    );
    let lower =
        conf(json!({"RuntimeConfig": {"BandWidth": {"ingressrate": 80, "ingressburst": 80}}}));
    assert_eq!(limits(&lower).expect("limits").ingress_rate, 80);
    // Any top-level key wins over runtimeConfig as a whole (the reference's embedded struct).
    let both = conf(
        json!({"egressRate": 800, "egressBurst": 800, "runtimeConfig": {"bandwidth": {"ingressRate": 8, "ingressBurst": 8}}}),
    );
    assert_eq!(
        limits(&both).expect("limits"),
        Limits {
            egress_rate: 800,
            egress_burst: 800,
            ..Default::default()
        }
    );
    assert!(limits(&conf(json!({}))).expect("limits").is_zero());
}

#[test]
fn reference_validation_with_clear_errors() {
    let cases = [
        (
            json!({"ingressRate": 1000}),
            "ingressRate is set but ingressBurst is not",
        ),
        (
            json!({"egressBurst": 1000}),
            "egressBurst is set but egressRate is not",
        ),
        (
            json!({"ingressRate": 1000, "ingressBurst": 34359738360u64}),
            "too large",
        ),
        (json!({"egressRate": 7, "egressBurst": 100}), "too small"),
        (
            json!({"ingressRate": -5, "ingressBurst": 100}),
            "invalid ingressRate",
        ),
        (
            json!({"ingressRate": "10M", "ingressBurst": 100}),
            "invalid ingressRate",
        ),
        (
            json!({"runtimeConfig": {"bandwidth": 5}}),
            "invalid runtimeConfig.bandwidth",
        ),
    ];
    for (extra, want) in cases {
        let (mut host, inv) = setup(conf(extra.clone()));
        let e = Bandwidth::add(&mut host, &inv).expect_err("must refuse");
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{extra}: {e}");
        assert!(e.msg.contains(want), "{extra}: {e}");
        assert!(!e.details.is_empty(), "{extra}: {e}");
        assert!(
            host.tc.calls().is_empty(),
            "nothing touched on bad config: {:?}",
            host.tc.calls()
        );
    }
    // The CRI-O edge value is accepted.
    let (mut host, inv) = setup(conf(
        json!({"ingressRate": 1000, "ingressBurst": 34359738359u64}),
    ));
    Bandwidth::add(&mut host, &inv).expect("CRI-O burst");
}

#[test]
fn add_shapes_both_directions_and_reports_the_ifb() {
    let (mut host, inv) = setup(conf(
        json!({"runtimeConfig": {"bandwidth": {"IngressRate": 20000000, "IngressBurst": 4294967295u64, "EgressRate": 10000000, "EgressBurst": 4294967295u64}}}),
    ));
    let r = Bandwidth::add(&mut host, &inv).expect("add");
    let ifb = host.ifb_name("c1");
    assert_eq!(r.interfaces.len(), 4);
    assert_eq!(r.interfaces[3].name, ifb);
    assert!(r.interfaces[3].sandbox.is_empty());
    assert_eq!(
        host.tc.tbf_on("veth1234"),
        Some(tbf(20_000_000, 4_294_967_295))
    );
    assert_eq!(host.tc.tbf_on(&ifb), Some(tbf(10_000_000, 4_294_967_295)));
    assert!(host.tc.has_redirect());
    // cni0 was tried and refused by the host before the veth.
    assert_eq!(
        host.tc.calls()[..2],
        ["open cni0".to_string(), "open veth1234".to_string()]
    );
    Bandwidth::check(&mut host, &inv).expect("check after add");
}

#[test]
fn no_limits_is_a_pass_through() {
    let (mut host, inv) = setup(conf(json!({})));
    assert_eq!(Bandwidth::add(&mut host, &inv).expect("add"), prev());
    assert!(host.tc.calls().is_empty());
}

#[test]
fn refuses_clearly_without_prev_result_or_host_interface() {
    let (mut host, mut inv) = setup(conf(json!({"ingressRate": 800, "ingressBurst": 800})));
    inv.prev_result = None;
    let e = Bandwidth::add(&mut host, &inv).expect_err("no prevResult");
    assert!(e.msg.contains("chained"), "{e}");
    inv.prev_result = Some(CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            sandbox: "/x".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let e = Bandwidth::add(&mut host, &inv).expect_err("no host interface");
    assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
    assert!(e.msg.contains("no host-side interface"), "{e}");
    inv.prev_result = Some(CniResult {
        interfaces: vec![Interface {
            name: "vethother".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let e = Bandwidth::add(&mut host, &inv).expect_err("not our veth");
    assert!(e.msg.contains("no veth peer of eth0"), "{e}");
}

#[test]
fn check_fails_when_anything_changed() {
    let c = conf(
        json!({"ingressRate": 8000000, "ingressBurst": 800000, "egressRate": 8000000, "egressBurst": 800000}),
    );
    let (mut host, inv) = setup(c);
    Bandwidth::add(&mut host, &inv).expect("add");
    let ifb = host.ifb_name("c1");
    host.tc
        .tamper_tbf("veth1234", Some(tbf(16_000_000, 800_000)));
    assert!(Bandwidth::check(&mut host, &inv)
        .expect_err("rate changed")
        .msg
        .contains("ingress"));
    host.tc
        .tamper_tbf("veth1234", Some(tbf(8_000_000, 800_000)));
    Bandwidth::check(&mut host, &inv).expect("restored");
    host.tc.tamper_tbf(&ifb, None);
    assert!(Bandwidth::check(&mut host, &inv)
        .expect_err("ifb tbf removed")
        .msg
        .contains("egress"));
    host.tc.tamper_tbf(&ifb, Some(tbf(8_000_000, 800_000)));
    host.tc.tamper_redirect();
    assert!(Bandwidth::check(&mut host, &inv)
        .expect_err("redirect removed")
        .msg
        .contains("redirect"));
}

#[test]
fn del_is_idempotent_and_works_without_netns() {
    let (mut host, mut inv) = setup(conf(
        json!({"egressRate": 8000, "egressBurst": 8000, "ingressRate": 8000, "ingressBurst": 8000}),
    ));
    Bandwidth::add(&mut host, &inv).expect("add");
    Bandwidth::del(&mut host, &inv).expect("del");
    assert!(host.tc.ifb_names().is_empty());
    assert_eq!(host.tc.tbf_on("veth1234"), None, "host veth cleared");
    Bandwidth::del(&mut host, &inv).expect("del twice");
    host.tc.remove_netns();
    Bandwidth::del(&mut host, &inv).expect("del with netns gone");
    inv.netns.clear();
    inv.prev_result = None;
    Bandwidth::del(&mut host, &inv).expect("del without netns");
}

#[test]
fn gc_deletes_only_stale_ifbs() {
    let (mut host, inv) = setup(conf(json!({})));
    let live = host.ifb_name("live");
    let stale = host.ifb_name("stale");
    host.tc.add_stale_ifb(&live);
    host.tc.add_stale_ifb(&stale);
    host.tc.set_gc(true);
    let valid = [Attachment {
        container_id: "live".into(),
        ifname: "eth0".into(),
    }];
    Bandwidth::gc(&mut host, &inv, &valid).expect("gc");
    assert_eq!(host.tc.ifb_names(), vec![live]);
}

/// cniVersion 0.1.0/0.2.0: ADD and CHECK fail with code 1 and upstream's
/// text (its VersionsStartingFrom("0.3.0")); DEL goes on.
#[test]
fn versions_before_0_3_0_are_refused_as_upstream() {
    for v in ["0.1.0", "0.2.0"] {
        let (mut host, inv) = setup(conf(
            json!({"cniVersion": v, "ingressRate": 8000, "ingressBurst": 800}),
        ));
        let e = Bandwidth::add(&mut host, &inv).expect_err("refused");
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{v}");
        assert_eq!(e.msg, "incompatible CNI versions");
        assert_eq!(
            e.details,
            format!("config is \"{v}\", plugin supports [\"0.3.0\" \"0.3.1\" \"0.4.0\" \"1.0.0\" \"1.1.0\"]")
        );
        assert_eq!(
            Bandwidth::check(&mut host, &inv).expect_err("refused").code,
            code::INCOMPATIBLE_VERSION
        );
        Bandwidth::del(&mut host, &inv).expect("del goes on");
    }
    let (mut host, inv) = setup(conf(json!({"cniVersion": "0.3.0"})));
    Bandwidth::add(&mut host, &inv).expect("0.3.0");
}
