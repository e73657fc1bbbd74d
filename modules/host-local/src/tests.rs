//! Plugin-level tests against the SDK's fake host and a real temporary
//! state directory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wasm_cni_guest::prelude::*;
use wasm_cni_guest::testing::FakeHost;

use crate::HostLocal;

/// A tiny deterministic PRNG (xorshift64*), so property tests replay.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn host() -> FakeHost {
    FakeHost::new()
}

fn dir(h: &FakeHost) -> PathBuf {
    h.state_dir().to_path_buf()
}

fn net(ipam: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "ipam": ipam})
}

fn inv(cid: &str, ifname: &str, config: &Value) -> Invocation {
    Invocation::new(cid, ifname, config.clone())
}

fn add(h: &mut FakeHost, cid: &str, ifname: &str, config: &Value) -> CniResultOf<CniResult> {
    HostLocal::add(h, &inv(cid, ifname, config))
}

fn del(h: &mut FakeHost, cid: &str, ifname: &str, config: &Value) -> CniResultOf<()> {
    HostLocal::del(h, &inv(cid, ifname, config))
}

fn addr_of(r: &CniResult, i: usize) -> String {
    r.ips[i].address.addr.to_string()
}

/// Allocation files (name -> content), excluding bookkeeping files.
fn files(d: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(d).expect("read dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<IpAddr>().is_ok() {
            out.insert(name, std::fs::read(e.path()).expect("read"));
        }
    }
    out
}

fn simple() -> Value {
    net(
        json!({"type": "host-local", "ranges": [[{"subnet": "10.1.2.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}),
    )
}

#[test]
fn on_disk_format_is_byte_exact() {
    let mut h = host();
    let r = add(&mut h, "cid", "eth0", &simple()).expect("add");
    assert_eq!(addr_of(&r, 0), "10.1.2.2");
    let d = dir(&h);
    assert_eq!(
        std::fs::read(d.join("10.1.2.2")).expect("alloc file"),
        b"cid\r\neth0"
    );
    assert_eq!(
        std::fs::read(d.join("last_reserved_ip.0")).expect("last"),
        b"10.1.2.2"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("10.1.2.2"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn result_shape_is_abbreviated() {
    let mut h = host();
    h.resolv_conf = Ok(Some("nameserver 10.1.0.10\nsearch svc.local\n".into()));
    let cfg = net(json!({
        "type": "host-local",
        "ranges": [[{"subnet": "10.1.2.0/24", "gateway": "10.1.2.254"}], [{"subnet": "2001:db8:1::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.9"}],
        "resolvConf": "/etc/resolv.conf",
        "dataDir": "/var/lib/cni/networks"
    }));
    let r = add(&mut h, "cid", "eth0", &cfg).expect("add");
    assert!(r.interfaces.is_empty());
    assert_eq!(r.ips.len(), 2);
    assert_eq!(r.ips[0].address.to_string(), "10.1.2.1/24");
    assert_eq!(
        r.ips[0].gateway.map(|g| g.to_string()).as_deref(),
        Some("10.1.2.254")
    );
    assert_eq!(r.ips[1].address.to_string(), "2001:db8:1::2/64");
    assert_eq!(
        r.ips[1].gateway.map(|g| g.to_string()).as_deref(),
        Some("2001:db8:1::1")
    );
    assert!(r.ips.iter().all(|i| i.interface.is_none()));
    assert_eq!(r.routes.len(), 2);
    assert_eq!(
        r.routes[1].gw.map(|g| g.to_string()).as_deref(),
        Some("10.1.2.9")
    );
    assert_eq!(r.dns.nameservers, ["10.1.0.10"]);
    assert_eq!(r.dns.search, ["svc.local"]);
    let d = dir(&h);
    assert_eq!(
        std::fs::read(d.join("2001:db8:1::2")).expect("v6 file"),
        b"cid\r\neth0"
    );
    assert_eq!(
        std::fs::read(d.join("last_reserved_ip.1")).expect("last v6"),
        b"2001:db8:1::2"
    );
}

#[test]
fn legacy_top_level_range_is_prepended() {
    let mut h = host();
    let cfg = net(json!({
        "type": "host-local", "subnet": "10.9.0.0/16", "rangeStart": "10.9.1.10", "rangeEnd": "10.9.1.20", "gateway": "10.9.0.1",
        "ranges": [[{"subnet": "fd00::/120"}]]
    }));
    let r = add(&mut h, "c", "eth0", &cfg).expect("add");
    assert_eq!(r.ips[0].address.to_string(), "10.9.1.10/16");
    assert_eq!(r.ips[1].address.to_string(), "fd00::2/120");
}

#[test]
fn exact_capacity_then_exhausted() {
    // 10.0.0.0/29: hosts .1-.6, gateway .1 => 5 addresses.
    let mut h = host();
    let cfg = net(json!({"ranges": [[{"subnet": "10.0.0.0/29"}]]}));
    let mut got = BTreeSet::new();
    for i in 0..5 {
        let r = add(&mut h, &format!("c{i}"), "eth0", &cfg).expect("within capacity");
        got.insert(addr_of(&r, 0));
    }
    let want: BTreeSet<String> = (2..=6).map(|n| format!("10.0.0.{n}")).collect();
    assert_eq!(got, want);
    let e = add(&mut h, "c5", "eth0", &cfg).expect_err("full");
    assert_eq!(e.code, 999);
    assert_eq!(
        e.msg,
        "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.6"
    );
    assert_eq!(files(&dir(&h)).len(), 5);

    // Two ranges in one set: capacity is the sum.
    let mut h = host();
    let cfg = net(
        json!({"ranges": [[{"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/30", "gateway": "10.0.1.2"}]]}),
    );
    let a: Vec<String> = (0..2)
        .map(|i| {
            add(&mut h, &format!("c{i}"), "eth0", &cfg)
                .map(|r| addr_of(&r, 0))
                .expect("ok")
        })
        .collect();
    assert_eq!(a, ["10.0.0.2", "10.0.1.1"]);
    let e = add(&mut h, "x", "eth0", &cfg).expect_err("full");
    assert!(
        e.msg.ends_with(
            "no IP addresses available in range set: 10.0.0.1-10.0.0.2,10.0.1.1-10.0.1.2"
        ),
        "{}",
        e.msg
    );

    // IPv6: the last address of the prefix is usable.
    let mut h = host();
    let cfg = net(json!({"ranges": [[{"subnet": "fd00::/126"}]]}));
    let a: Vec<String> = (0..2)
        .map(|i| {
            add(&mut h, &format!("c{i}"), "eth0", &cfg)
                .map(|r| addr_of(&r, 0))
                .expect("ok")
        })
        .collect();
    assert_eq!(a, ["fd00::2", "fd00::3"]);
    assert!(add(&mut h, "x", "eth0", &cfg).is_err());
}

#[test]
fn huge_ipv6_range_allocates_quickly() {
    let mut h = host();
    let cfg = net(json!({"ranges": [[{"subnet": "fd00::/8"}]]}));
    for i in 0..50 {
        add(&mut h, &format!("c{i}"), "eth0", &cfg).expect("add");
    }
    HostLocal::status(&mut h, &inv("", "", &cfg)).expect("free");
}

#[test]
fn round_robin_resumes_after_last_reserved() {
    let mut h = host();
    let cfg = simple();
    let a = add(&mut h, "a", "eth0", &cfg).expect("a");
    let b = add(&mut h, "b", "eth0", &cfg).expect("b");
    assert_eq!(
        (addr_of(&a, 0).as_str(), addr_of(&b, 0).as_str()),
        ("10.1.2.2", "10.1.2.3")
    );
    del(&mut h, "a", "eth0", &cfg).expect("del a");
    // .2 is free again, but round robin moves on.
    let c = add(&mut h, "c", "eth0", &cfg).expect("c");
    assert_eq!(addr_of(&c, 0), "10.1.2.4");

    // A last_reserved_ip written by the reference is honoured.
    std::fs::write(dir(&h).join("last_reserved_ip.0"), "10.1.2.100").expect("write");
    let d = add(&mut h, "d", "eth0", &cfg).expect("d");
    assert_eq!(addr_of(&d, 0), "10.1.2.101");
    // At the end of the range it wraps to the start, skipping the gateway and taken addresses.
    std::fs::write(dir(&h).join("last_reserved_ip.0"), "10.1.2.254").expect("write");
    let e = add(&mut h, "e", "eth0", &cfg).expect("e");
    assert_eq!(addr_of(&e, 0), "10.1.2.2");
    // Garbage or an address outside the set means a fresh start.
    std::fs::write(dir(&h).join("last_reserved_ip.0"), "garbage").expect("write");
    let f = add(&mut h, "f", "eth0", &cfg).expect("f");
    assert_eq!(addr_of(&f, 0), "10.1.2.5");
}

#[test]
fn never_hands_out_network_broadcast_or_gateway() {
    let mut rng = Rng::new(7);
    for round in 0..20 {
        let mut h = host();
        // Explicit bounds covering the whole subnet, and a gateway in the middle.
        let prefix = 27 + rng.below(3) as u8; // /27../29
        let size = 1u32 << (32 - prefix);
        let gw = 1 + rng.below(size as usize - 2) as u32;
        let base = 10 << 24 | (round as u32) << 8;
        let ip = |n: u32| std::net::Ipv4Addr::from(base + n).to_string();
        let cfg = net(json!({"ranges": [[{
            "subnet": format!("{}/{prefix}", ip(0)), "rangeStart": ip(0), "rangeEnd": ip(size - 1), "gateway": ip(gw)
        }]]}));
        let capacity = size - 3;
        let mut seen = BTreeSet::new();
        for i in 0..capacity {
            let r = add(&mut h, &format!("c{i}"), "eth0", &cfg).expect("within capacity");
            let a = addr_of(&r, 0);
            assert!(
                a != ip(0) && a != ip(size - 1) && a != ip(gw),
                "handed out reserved {a}"
            );
            assert!(seen.insert(a));
        }
        assert!(add(&mut h, "over", "eth0", &cfg).is_err());
        // A full range is ADD's error, never STATUS's (issue #21).
        HostLocal::status(&mut h, &inv("", "", &cfg)).expect("full is still ready");
    }
}

#[test]
fn random_add_del_never_duplicates() {
    let mut rng = Rng::new(42);
    let mut h = host();
    let cfg = net(json!({"ranges": [
        [{"subnet": "10.0.0.0/28"}, {"subnet": "10.0.1.0/29", "rangeStart": "10.0.1.2"}],
        [{"subnet": "fd00:1::/125"}]
    ]}));
    // v4 capacity: 13 + 5 (10.0.1.2-.6) = 18, v6: 6.
    let mut live: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut next = 0u32;
    for _ in 0..2000 {
        if live.is_empty() || (rng.below(3) > 0 && live.len() < 6) {
            let cid = format!("c{next}");
            next += 1;
            let r = add(&mut h, &cid, "eth0", &cfg).expect("room");
            let (v4, v6) = (addr_of(&r, 0), addr_of(&r, 1));
            let owners: Vec<&(String, String)> = live.values().collect();
            assert!(
                owners.iter().all(|(a, b)| *a != v4 && *b != v6),
                "duplicate {v4} {v6}"
            );
            assert!(
                v4 != "10.0.0.1"
                    && v4 != "10.0.0.15"
                    && v4 != "10.0.1.1"
                    && v6 != "fd00:1::1"
                    && v6 != "fd00:1::"
            );
            live.insert(cid, (v4, v6));
        } else {
            let k = live
                .keys()
                .nth(rng.below(live.len()))
                .cloned()
                .expect("key");
            del(&mut h, &k, "eth0", &cfg).expect("del");
            live.remove(&k);
        }
        // The disk agrees with the model.
        let on_disk = files(&dir(&h));
        let want: BTreeSet<String> = live
            .values()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        assert_eq!(on_disk.keys().cloned().collect::<BTreeSet<_>>(), want);
    }
    // Fill to exactly the v6 capacity, then one more fails and leaves nothing behind.
    while live.len() < 6 {
        let cid = format!("c{next}");
        next += 1;
        let r = add(&mut h, &cid, "eth0", &cfg).expect("room");
        live.insert(cid, (addr_of(&r, 0), addr_of(&r, 1)));
    }
    let before = files(&dir(&h));
    let e = add(&mut h, "overflow", "eth0", &cfg).expect_err("v6 full");
    assert!(
        e.msg
            .starts_with("failed to allocate for range 1: no IP addresses available"),
        "{}",
        e.msg
    );
    assert_eq!(
        files(&dir(&h)),
        before,
        "the v4 address of the failed ADD was rolled back"
    );
}

#[test]
fn del_is_idempotent_and_exact() {
    let mut h = host();
    let cfg = simple();
    add(&mut h, "c1", "eth0", &cfg).expect("a");
    add(&mut h, "c1", "eth1", &cfg).expect("b");
    add(&mut h, "c2", "eth0", &cfg).expect("c");
    del(&mut h, "c1", "eth0", &cfg).expect("del");
    del(&mut h, "c1", "eth0", &cfg).expect("del again");
    del(&mut h, "never", "eth0", &cfg).expect("del unknown");
    let left: Vec<Vec<u8>> = files(&dir(&h)).into_values().collect();
    assert_eq!(left, [b"c1\r\neth1".to_vec(), b"c2\r\neth0".to_vec()]);
    assert!(dir(&h).join("last_reserved_ip.0").exists());
    // DEL works with a broken config and with no state at all.
    del(
        &mut h,
        "c2",
        "eth0",
        &json!({"cniVersion": "1.0.0", "name": "mynet"}),
    )
    .expect("del without ipam");
    let mut fresh = FakeHost::new()
        .with_state_dir(std::env::temp_dir().join(format!("hl-missing-{}", std::process::id())));
    del(&mut fresh, "x", "eth0", &cfg).expect("del with empty dir");
}

#[test]
fn del_releases_legacy_files() {
    let mut h = host();
    let d = dir(&h);
    std::fs::write(d.join("10.1.2.7"), "oldcid\n").expect("legacy");
    std::fs::write(d.join("10.1.2.8"), "other").expect("legacy other");
    HostLocal::check(&mut h, &inv("oldcid", "eth0", &simple())).expect("legacy counts for check");
    del(&mut h, "oldcid", "eth0", &simple()).expect("del");
    assert_eq!(files(&d).into_keys().collect::<Vec<_>>(), ["10.1.2.8"]);
}

#[test]
fn check_needs_an_allocation() {
    let mut h = host();
    let cfg = simple();
    let e = HostLocal::check(&mut h, &inv("c1", "eth0", &cfg)).expect_err("nothing yet");
    assert_eq!(
        e.msg,
        "host-local: Failed to find address added by container c1"
    );
    add(&mut h, "c1", "eth0", &cfg).expect("add");
    HostLocal::check(&mut h, &inv("c1", "eth0", &cfg)).expect("found");
    assert!(HostLocal::check(&mut h, &inv("c1", "eth1", &cfg)).is_err());
}

#[test]
fn duplicate_allocation_is_refused() {
    let mut h = host();
    let cfg = simple();
    add(&mut h, "c1", "eth0", &cfg).expect("first");
    let e = add(&mut h, "c1", "eth0", &cfg).expect_err("second");
    assert_eq!(e.msg, "failed to allocate for range 0: 10.1.2.2 has been allocated to c1, duplicate allocation is not allowed");
    assert_eq!(files(&dir(&h)).len(), 1, "the first allocation survives");
}

#[test]
fn requested_addresses() {
    let base = json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/64"}]]});
    // runtimeConfig ips (with or without prefix).
    let mut h = host();
    let mut cfg = net(base.clone());
    cfg["runtimeConfig"] = json!({"ips": ["10.1.2.77/24", "fd00::77"]});
    let r = add(&mut h, "c", "eth0", &cfg).expect("add");
    assert_eq!(
        (addr_of(&r, 0).as_str(), addr_of(&r, 1).as_str()),
        ("10.1.2.77", "fd00::77")
    );
    assert_eq!(
        std::fs::read(dir(&h).join("last_reserved_ip.0")).expect("last"),
        b"10.1.2.77"
    );
    // Taken.
    let e = add(&mut h, "d", "eth0", &cfg).expect_err("taken");
    assert_eq!(e.msg, "failed to allocate for range 0: requested IP address 10.1.2.77 is not available in range set 10.1.2.1-10.1.2.254");

    // args.cni.ips.
    let mut cfg = net(base.clone());
    cfg["args"] = json!({"cni": {"ips": ["10.1.2.50"]}});
    let r = add(&mut h, "e", "eth0", &cfg).expect("args");
    assert_eq!(addr_of(&r, 0), "10.1.2.50");

    // CNI_ARGS IP=.
    let cfg = net(base.clone());
    let mut i = inv("f", "eth0", &cfg);
    i.args = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("IP".into(), "10.1.2.60".into()),
    ];
    let r = HostLocal::add(&mut h, &i).expect("cni args");
    assert_eq!(addr_of(&r, 0), "10.1.2.60");

    // The gateway cannot be requested.
    let mut cfg = net(base.clone());
    cfg["runtimeConfig"] = json!({"ips": ["10.1.2.1"]});
    let e = add(&mut h, "g", "eth0", &cfg).expect_err("gateway");
    assert_eq!(
        e.msg,
        "failed to allocate for range 0: requested ip 10.1.2.1 is subnet's gateway"
    );

    // An address in no range set fails the whole ADD and leaves nothing behind.
    let before = files(&dir(&h));
    let mut cfg = net(base);
    cfg["runtimeConfig"] = json!({"ips": ["192.168.0.5"]});
    let e = add(&mut h, "h", "eth0", &cfg).expect_err("unmatched");
    assert_eq!(e.msg, "failed to allocate all requested IPs: 192.168.0.5");
    assert_eq!(files(&dir(&h)), before);
}

#[test]
fn runtime_ip_ranges_are_prepended() {
    let mut h = host();
    let mut cfg = simple();
    cfg["runtimeConfig"] =
        json!({"ipRanges": [[{"subnet": "10.200.0.0/24", "rangeStart": "10.200.0.100"}]]});
    let r = add(&mut h, "c", "eth0", &cfg).expect("add");
    assert_eq!(r.ips.len(), 2);
    assert_eq!(addr_of(&r, 0), "10.200.0.100");
    assert_eq!(addr_of(&r, 1), "10.1.2.2");
}

#[test]
fn gc_releases_exactly_the_unlisted() {
    let mut rng = Rng::new(99);
    for round in 0..10 {
        let mut h = host();
        let cfg = net(json!({"ranges": [[{"subnet": "10.3.0.0/24"}], [{"subnet": "fd03::/64"}]]}));
        let mut all = Vec::new();
        for i in 0..30 {
            let ifname = if rng.below(4) == 0 { "eth1" } else { "eth0" };
            let cid = format!("r{round}c{}", i % 20);
            if add(&mut h, &cid, ifname, &cfg).is_ok() {
                all.push(Attachment {
                    container_id: cid,
                    ifname: ifname.into(),
                });
            }
        }
        let d = dir(&h);
        std::fs::write(d.join("10.3.0.250"), "legacy-keep").expect("legacy");
        std::fs::write(d.join("10.3.0.251"), "legacy-drop").expect("legacy");
        std::fs::write(d.join("10.3.0.252"), "").expect("crash leftover");
        std::fs::write(d.join("lock"), "").expect("lock");
        std::fs::write(d.join("notes.txt"), "x").expect("other file");
        let valid: Vec<Attachment> = all
            .iter()
            .filter(|_| rng.below(2) == 0)
            .cloned()
            .chain([Attachment {
                container_id: "legacy-keep".into(),
                ifname: "eth9".into(),
            }])
            .collect();
        HostLocal::gc(&mut h, &inv("", "", &cfg), &valid).expect("gc");
        let left = files(&d);
        for (name, content) in &left {
            let text = String::from_utf8_lossy(content);
            let ok = valid.iter().any(|a| {
                text == format!("{}\r\n{}", a.container_id, a.ifname) || text == a.container_id
            });
            assert!(ok, "{name} ({text:?}) survived GC");
        }
        for a in &valid[..valid.len() - 1] {
            let want = format!("{}\r\n{}", a.container_id, a.ifname);
            assert_eq!(
                left.values().filter(|c| **c == want.as_bytes()).count(),
                2,
                "{want:?} lost an address"
            );
        }
        assert!(
            left.contains_key("10.3.0.250")
                && !left.contains_key("10.3.0.251")
                && !left.contains_key("10.3.0.252")
        );
        for keep in [
            "lock",
            "notes.txt",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
        ] {
            assert!(d.join(keep).exists(), "{keep} removed by GC");
        }
        // An empty valid list releases everything.
        HostLocal::gc(&mut h, &inv("", "", &cfg), &[]).expect("gc all");
        assert!(files(&d).is_empty());
        assert!(d.join("lock").exists());
    }
}

#[test]
fn crash_leftover_blocks_its_address_until_gc() {
    let mut h = host();
    let cfg = net(json!({"ranges": [[{"subnet": "10.0.0.0/30"}]]}));
    std::fs::write(dir(&h).join("10.0.0.2"), "").expect("empty file");
    let e = add(&mut h, "c", "eth0", &cfg).expect_err("only address is blocked");
    assert_eq!(e.code, 999);
    HostLocal::status(&mut h, &inv("", "", &cfg)).expect("full is still ready");
    assert!(HostLocal::check(&mut h, &inv("c", "eth0", &cfg)).is_err());
    HostLocal::gc(
        &mut h,
        &inv("", "", &cfg),
        &[Attachment {
            container_id: "c".into(),
            ifname: "eth0".into(),
        }],
    )
    .expect("gc");
    let r = add(&mut h, "c", "eth0", &cfg).expect("freed");
    assert_eq!(addr_of(&r, 0), "10.0.0.2");
    HostLocal::status(&mut h, &inv("", "", &cfg)).expect("full again, still ready");
}

#[test]
fn status_reports_config_errors_and_availability() {
    let mut h = host();
    HostLocal::status(&mut h, &inv("", "", &simple())).expect("available");
    let e = HostLocal::status(
        &mut h,
        &inv(
            "",
            "",
            &net(json!({"ranges": [[{"subnet": "10.0.0.0/32"}]]})),
        ),
    )
    .expect_err("bad");
    assert_eq!(e.code, 7);
    // A full set does not fail STATUS: containerd would report the node's
    // network not ready and the node would go NotReady (issue #21).
    let cfg = net(json!({"ranges": [[{"subnet": "10.0.0.0/30"}], [{"subnet": "fd00::/64"}]]}));
    add(&mut h, "c", "eth0", &cfg).expect("fills v4");
    add(&mut h, "d", "eth0", &cfg).expect_err("v4 full");
    HostLocal::status(&mut h, &inv("", "", &cfg)).expect("full v4 set is still ready");
}

#[test]
fn status_fails_when_the_state_directory_cannot_be_read() {
    let base = std::env::temp_dir().join(format!("wasm-cni-hl-status-{}", std::process::id()));
    // A file where the directory should be: no ADD could record anything.
    let _ = std::fs::remove_dir_all(&base);
    std::fs::write(&base, "not a directory").expect("file");
    let mut h = FakeHost::new().with_state_dir(&base);
    let e = HostLocal::status(&mut h, &inv("", "", &simple())).expect_err("unusable");
    let _ = std::fs::remove_file(&base);
    assert_eq!(e.code, 50);
    assert!(
        e.msg.contains("state directory cannot be read"),
        "{}",
        e.msg
    );
}

#[test]
fn state_written_by_the_reference_is_understood() {
    let mut h = host();
    let d = dir(&h);
    // As the Go plugin leaves it: CRLF, no newline, IPv6 names in Go's form.
    std::fs::write(d.join("10.1.2.2"), "goc\r\neth0").expect("w");
    std::fs::write(d.join("2001:db8::2"), "goc\r\neth0").expect("w");
    std::fs::write(d.join("last_reserved_ip.0"), "10.1.2.2").expect("w");
    std::fs::write(d.join("lock"), "").expect("w");
    let cfg = net(json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "2001:db8::/64"}]]}));
    let r = add(&mut h, "ours", "eth0", &cfg).expect("add");
    assert_eq!(
        (addr_of(&r, 0).as_str(), addr_of(&r, 1).as_str()),
        ("10.1.2.3", "2001:db8::3")
    );
    HostLocal::check(&mut h, &inv("goc", "eth0", &cfg)).expect("reference allocation visible");
    del(&mut h, "goc", "eth0", &cfg).expect("del");
    let left: Vec<String> = files(&d).into_keys().collect();
    assert_eq!(left, ["10.1.2.3", "2001:db8::3"]);
}
