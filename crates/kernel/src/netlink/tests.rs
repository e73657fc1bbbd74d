//! The netlink kernel against the real kernel, in throwaway namespaces.

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
    crate::cidr(s)
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
        src: None,
    };
    // Mirrored by the fake: no routes through a down link.
    assert_eq!(
        ops.add_route("wv0", &linkroute, true),
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
        src: None,
    };
    let via6 = RouteInfo {
        dst: a("fd00:125::/64"),
        gw: Some("fd00:124::1".parse().unwrap()),
        mtu: None,
        priority: None,
        table: None,
        scope: None,
        src: None,
    };
    let default = RouteInfo {
        dst: a("0.0.0.0/0"),
        gw: Some("10.124.0.1".parse().unwrap()),
        mtu: None,
        priority: None,
        table: None,
        scope: None,
        src: None,
    };
    ops.add_route("wv0", &via, true).unwrap();
    ops.add_route("wv0", &linkroute, true).unwrap();
    ops.add_route("wv0", &via6, true).unwrap();
    ops.add_route("wv0", &default, true).unwrap();
    assert_eq!(
        ops.add_route("wv0", &via, true),
        Err(KernelError::os("add route", Errno::EEXIST))
    );
    // Unreachable gateways (mirrored by the fake).
    let mut bad = via.clone();
    bad.dst = a("10.127.0.0/16");
    bad.gw = Some("10.200.0.1".parse().unwrap());
    assert_eq!(
        ops.add_route("wv0", &bad, true),
        Err(KernelError::os("add route", Errno::ENETUNREACH))
    );
    let mut bad6 = via6.clone();
    bad6.gw = Some("fd00:200::1".parse().unwrap());
    bad6.dst = a("fd00:127::/64");
    assert_eq!(
        ops.add_route("wv0", &bad6, true),
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
            src: None,
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
            src: None,
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
    use crate::fake::FakeKernel;

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
        src: None,
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
                    o.add_route("eth0", &rt("10.126.0.0/16", None, None, None), true)
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
                        &rt("10.125.0.0/16", Some("10.124.0.1"), Some(50), Some(1400)),
                        true
                    )
                )
            }),
        ),
        (
            "route link",
            Box::new(|o| {
                format!(
                    "{:?}",
                    o.add_route("eth0", &rt("10.126.0.0/16", None, None, None), true)
                )
            }),
        ),
        (
            "route via link route",
            Box::new(|o| {
                format!(
                    "{:?}",
                    o.add_route(
                        "eth0",
                        &rt("0.0.0.0/0", Some("10.126.3.4"), None, None),
                        true
                    )
                )
            }),
        ),
        (
            "route beside, another gateway",
            Box::new(|o| {
                let r = rt("10.125.0.0/16", Some("10.124.0.9"), Some(50), None);
                format!(
                    "{:?} {:?}",
                    o.add_route("eth0", &r, true),
                    o.add_route("eth0", &r, false)
                )
            }),
        ),
        (
            "route beside, identical",
            Box::new(|o| {
                let r = rt("10.125.0.0/16", Some("10.124.0.9"), Some(50), None);
                format!("{:?}", o.add_route("eth0", &r, false))
            }),
        ),
        (
            "route v6",
            Box::new(|o| {
                format!(
                    "{:?}",
                    o.add_route(
                        "eth0",
                        &rt("fd00:125::/64", Some("fd00:124::1"), None, None),
                        true
                    )
                )
            }),
        ),
        (
            "route v6 ll",
            Box::new(|o| {
                format!(
                    "{:?}",
                    o.add_route("eth0", &rt("::/0", Some("fe80::1"), None, Some(1450)), true)
                )
            }),
        ),
        (
            "route v6 metric",
            Box::new(|o| {
                format!(
                    "{:?}",
                    o.add_route("eth0", &rt("fd00:126::/64", None, Some(7), None), true)
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
                        &rt("10.125.0.0/16", Some("10.124.0.1"), Some(50), None),
                        true
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
                        &rt("10.125.0.0/16", Some("10.124.0.1"), Some(51), None),
                        true
                    )
                )
            }),
        ),
        (
            "route dup connected",
            Box::new(|o| {
                format!(
                    "{:?}",
                    o.add_route("eth0", &rt("10.124.0.0/24", None, None, None), true)
                )
            }),
        ),
        (
            "route unreachable",
            Box::new(|o| {
                format!(
                    "{:?}",
                    o.add_route(
                        "eth0",
                        &rt("10.127.0.0/16", Some("10.200.0.1"), None, None),
                        true
                    )
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
                        &rt("fd00:127::/64", Some("fd00:200::1"), None, None),
                        true
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
        src: None,
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
