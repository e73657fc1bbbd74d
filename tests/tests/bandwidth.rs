//! bandwidth on the real kernel, with real traffic. Needs root.
//!
//! Everything lives in throwaway namespaces: a "host" netns where the plugin
//! runs (`ip netns exec <host> <plugin>`) and a "pod" netns, joined by a veth
//! pair made here (no dependency on the bridge/ptp modules). prevResult is
//! built by hand, as a main plugin would report it.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use wasm_cni_tests::*;

/// A pod: host netns + pod netns + veth (host end `vbw0`, pod end `eth0`).
struct Pod {
    host: Netns,
    pod: Netns,
    veth: String,
    pod_ip: String,
}

impl Pod {
    fn new(tag: &str) -> Pod {
        Pod::in_host(Netns::new(&format!("{tag}h")), tag, 0)
    }

    /// Another pod in an existing host netns (veth `vbw<n>`, subnet 10.77.<n>.0/24).
    fn in_host(host: Netns, tag: &str, n: u8) -> Pod {
        let pod = Netns::new(&format!("{tag}p"));
        let veth = format!("vbw{n}");
        sh(&format!(
            "ip -n {h} link add {veth} type veth peer name eth0 netns {p}",
            h = host.name,
            p = pod.name
        ));
        sh(&format!("ip -n {h} addr add 10.77.{n}.1/24 dev {veth} && ip -n {h} link set {veth} up && ip -n {h} link set lo up", h = host.name));
        sh(&format!("ip -n {p} addr add 10.77.{n}.2/24 dev eth0 && ip -n {p} link set eth0 up && ip -n {p} link set lo up", p = pod.name));
        Pod {
            host,
            pod,
            veth,
            pod_ip: format!("10.77.{n}.2"),
        }
    }

    fn prev_result(&self) -> Value {
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": self.veth, "mac": "0a:58:0a:4d:00:01"}, {"name": "eth0", "sandbox": self.pod.path()}],
               "ips": [{"address": format!("{}/24", self.pod_ip), "interface": 1}],
               "dns": {}})
    }

    fn conf(&self, limits: Value) -> String {
        conf_with(limits, self.prev_result())
    }

    /// Runs a plugin binary inside the host netns, as a runtime on that host would.
    fn run(
        &self,
        plugin: &std::path::Path,
        i: &Install,
        cmd: &str,
        cid: &str,
        netns: &str,
        stdin: &str,
    ) -> PluginRun {
        run_in(&self.host, plugin, i, cmd, cid, netns, stdin)
    }

    fn ours(&self, i: &Install, cmd: &str, cid: &str, stdin: &str) -> PluginRun {
        self.run(
            &i.bin_dir().join("bandwidth"),
            i,
            cmd,
            cid,
            &self.pod.path(),
            stdin,
        )
    }

    fn reference(&self, i: &Install, cmd: &str, cid: &str, stdin: &str) -> PluginRun {
        self.run(
            &reference_plugin("bandwidth"),
            i,
            cmd,
            cid,
            &self.pod.path(),
            stdin,
        )
    }

    /// `tc -j qdisc show` of the host netns, minus the loopback.
    fn qdiscs(&self) -> Vec<Value> {
        let out = self.host.exec("tc -j qdisc show");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("tc -j: {e}: {out}"));
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|q| q["dev"] != "lo" && q["kind"] != "noqueue")
            .collect()
    }

    fn ifbs(&self) -> Vec<String> {
        self.host
            .exec("ip -o link show type ifb")
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|s| s.split('@').next().unwrap_or(s).to_string())
            })
            .collect()
    }
}

fn conf_with(limits: Value, prev: Value) -> String {
    let mut c =
        json!({"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth", "prevResult": prev});
    if let (Some(o), Some(l)) = (c.as_object_mut(), limits.as_object()) {
        o.extend(l.clone());
    }
    c.to_string()
}

fn run_in(
    host: &Netns,
    plugin: &std::path::Path,
    i: &Install,
    cmd: &str,
    cid: &str,
    netns: &str,
    stdin: &str,
) -> PluginRun {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &host.name]).arg(plugin);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_PATH", i.bin_dir())
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("WASM_CNI_CACHE_DIR", i.cache_dir())
        .env("WASM_CNI_LOG_FILE", i.log_file());
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn plugin");
    if let Some(mut si) = child.stdin.take() {
        use std::io::Write;
        let _ = si.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait plugin");
    PluginRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

fn ifb_name(network: &str, cid: &str) -> String {
    // The reference's: bwp + 12 hex of sha512(network + container id).
    let out = sh(&format!("printf '%s' '{network}{cid}' | sha512sum"));
    format!("bwp{}", &out[..12])
}

fn runtime_limits(ingress: u64, ingress_burst: u64, egress: u64, egress_burst: u64) -> Value {
    // PascalCase, as containerd sends it.
    json!({"runtimeConfig": {"bandwidth": {"IngressRate": ingress, "IngressBurst": ingress_burst, "EgressRate": egress, "EgressBurst": egress_burst}}})
}

/// The tbf parameters of each shaped device, keyed by role so two host
/// netns with different veth names compare.
fn tbf_by_role(p: &Pod, ifb: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = p
        .qdiscs()
        .into_iter()
        .map(|q| {
            let role = if q["dev"] == p.veth.as_str() {
                "veth"
            } else if q["dev"] == ifb {
                "ifb"
            } else {
                "other"
            };
            (
                format!("{role} {} {}", q["kind"], q["handle"]),
                q["options"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn tbf_parameters_match_the_reference_exactly() {
    let i = Install::new("bw-golden", &[]);
    let cases = [
        // containerd's and CRI-O's bursts at 20 Mbit/s: the 32-bit wrap-arounds.
        runtime_limits(20_000_000, 4_294_967_295, 20_000_000, 34_359_738_359),
        // The reference's own unit-test values.
        json!({"ingressRate": 8, "ingressBurst": 8, "egressRate": 16, "egressBurst": 8}),
        // A modest burst, and a rate needing TCA_TBF_RATE64 (40 Gbit/s).
        json!({"ingressRate": 1_000_000, "ingressBurst": 80_000, "egressRate": 40_000_000_000u64, "egressBurst": 1_000_000_000}),
    ];
    for (n, limits) in cases.iter().enumerate() {
        let cid = format!("golden{n}");
        let ifb = ifb_name("bwnet", &cid);
        let theirs = Pod::new("bwgr");
        let r = theirs.reference(&i, "ADD", &cid, &theirs.conf(limits.clone()));
        r.ok();
        let ours = Pod::new("bwgo");
        let o = ours.ours(&i, "ADD", &cid, &ours.conf(limits.clone()));
        o.ok();
        let (want, got) = (tbf_by_role(&theirs, &ifb), tbf_by_role(&ours, &ifb));
        assert_eq!(
            got, want,
            "case {n}: kernel state differs from the reference's"
        );
        assert_eq!(
            want.len(),
            3,
            "case {n}: veth tbf, veth ingress, ifb tbf: {want:?}"
        );
        // Same result shape: prevResult plus the ifb.
        let (rj, oj) = (r.json(), o.json());
        assert_eq!(oj["interfaces"].as_array().map(Vec::len), Some(3), "{oj}");
        assert_eq!(oj["interfaces"][2]["name"], ifb.as_str(), "{oj}");
        assert_eq!(rj["interfaces"][2]["name"], ifb.as_str(), "{rj}");
        assert!(
            oj["interfaces"][2]["mac"]
                .as_str()
                .is_some_and(|m| m.len() == 17),
            "{oj}"
        );
        assert!(oj["interfaces"][2].get("sandbox").is_none(), "{oj}");
        // Each CHECKs the other's state.
        ours.reference(&i, "CHECK", &cid, &ours.conf(limits.clone()))
            .ok();
        theirs
            .ours(&i, "CHECK", &cid, &theirs.conf(limits.clone()))
            .ok();
    }
}

/// Receiver throughput of one iperf3 run, Mbit/s.
fn iperf(client: &Netns, server_ip: &str, reverse: bool) -> f64 {
    let out = client.exec(&format!(
        "timeout 20 iperf3 -c {server_ip} -t 4 -O 1 -J{}",
        if reverse { " -R" } else { "" }
    ));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3 JSON: {e}: {out}"));
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no throughput in {out}"))
        / 1e6
}

/// Measures twice at most: the machine is small and busy.
fn within(label: &str, want_mbit: f64, measure: impl Fn() -> f64) {
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = measure();
        got.push(m);
        if (m - want_mbit).abs() <= want_mbit * 0.15 {
            eprintln!("{label}: {m:.2} Mbit/s (limit {want_mbit})");
            return;
        }
    }
    panic!("{label}: measured {got:?} Mbit/s, want {want_mbit} ±15%");
}

struct Server(std::process::Child);

impl Server {
    fn start(ns: &Netns) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "iperf3", "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        // Wait until it listens.
        for _ in 0..50 {
            if ns.exec("ss -ltnH").contains(":5201") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_traffic_is_shaped_to_the_configured_rates() {
    let i = Install::new("bw-iperf", &[]);
    let p = Pod::new("bwip");
    // Distinct rates so a swapped direction shows; a modest burst (50 ms worth).
    let (ingress, egress) = (20_000_000u64, 12_000_000u64);
    let limits = json!({"ingressRate": ingress, "ingressBurst": ingress / 20, "egressRate": egress, "egressBurst": egress / 20});
    p.ours(&i, "ADD", "iperf1", &p.conf(limits.clone())).ok();
    let _server = Server::start(&p.pod);
    // host -> pod is the pod's ingress; -R (pod -> host) its egress.
    within("ingress (host -> pod)", 20.0, || {
        iperf(&p.host, &p.pod_ip, false)
    });
    within("egress (pod -> host)", 12.0, || {
        iperf(&p.host, &p.pod_ip, true)
    });
    p.ours(&i, "DEL", "iperf1", &p.conf(limits)).ok();
    assert!(p.qdiscs().is_empty(), "{:?}", p.qdiscs());
    assert!(p.ifbs().is_empty());
}

#[test]
fn no_limits_means_no_shaping() {
    let i = Install::new("bw-none", &[]);
    let p = Pod::new("bwno");
    let r = p.ours(&i, "ADD", "none1", &p.conf(json!({})));
    r.ok();
    assert_eq!(
        r.json()["interfaces"],
        p.prev_result()["interfaces"],
        "prevResult passes through"
    );
    assert!(p.qdiscs().is_empty(), "{:?}", p.qdiscs());
    assert!(p.ifbs().is_empty());
    let _server = Server::start(&p.pod);
    let mbit = iperf(&p.host, &p.pod_ip, false);
    assert!(
        mbit > 100.0,
        "unshaped veth should be far above any test limit: {mbit} Mbit/s"
    );
}

#[test]
fn check_fails_when_shaping_is_changed_or_removed() {
    let i = Install::new("bw-check", &[]);
    let limits = runtime_limits(20_000_000, 4_294_967_295, 10_000_000, 4_294_967_295);
    let cid = "check1";
    let ifb = ifb_name("bwnet", cid);
    let tamper: [(&str, &str); 4] = [
        (
            "ingress",
            "tc qdisc change dev vbw0 root handle 1: tbf rate 30mbit burst 512mb latency 25ms",
        ),
        ("ingress", "tc qdisc del dev vbw0 root"),
        ("redirect", "tc filter del dev vbw0 parent ffff: prio 1"),
        ("ifb", &format!("ip link del {ifb}")),
    ];
    for (what, cmd) in tamper {
        let p = Pod::new("bwck");
        let c = p.conf(limits.clone());
        p.ours(&i, "ADD", cid, &c).ok();
        p.ours(&i, "CHECK", cid, &c).ok();
        p.host.exec(cmd);
        let e = p.ours(&i, "CHECK", cid, &c).err(999);
        assert!(
            e["msg"]
                .as_str()
                .unwrap_or("")
                .contains(if what == "ingress" {
                    "ingress"
                } else {
                    "egress"
                }),
            "{cmd}: {e}"
        );
    }
    // The egress tbf on the ifb, changed.
    let p = Pod::new("bwck");
    let c = p.conf(limits);
    p.ours(&i, "ADD", cid, &c).ok();
    p.host.exec(&format!(
        "tc qdisc change dev {ifb} root handle 1: tbf rate 10mbit burst 1mb latency 25ms"
    ));
    let e = p.ours(&i, "CHECK", cid, &c).err(999);
    assert!(e["msg"].as_str().unwrap_or("").contains("egress"), "{e}");
}

#[test]
fn del_twice_and_with_the_netns_gone() {
    let i = Install::new("bw-del", &[]);
    let p = Pod::new("bwdel");
    let c = p.conf(json!({"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 8_000_000, "egressBurst": 800_000}));
    p.ours(&i, "ADD", "del1", &c).ok();
    assert_eq!(p.ifbs(), vec![ifb_name("bwnet", "del1")]);
    p.ours(&i, "DEL", "del1", &c).ok();
    assert!(p.ifbs().is_empty());
    assert!(
        p.qdiscs().is_empty(),
        "DEL clears the host veth too: {:?}",
        p.qdiscs()
    );
    p.ours(&i, "DEL", "del1", &c).ok();

    // The pod's netns is gone (its veth with it): the ifb still goes, by name.
    p.ours(&i, "ADD", "del1", &c).ok();
    let Pod { host, pod, .. } = p;
    let path = pod.path();
    drop(pod);
    let gone = Pod {
        host,
        pod: Netns {
            name: "wcni-bw-gone".into(),
        },
        veth: "vbw0".into(),
        pod_ip: String::new(),
    };
    gone.run(&i.bin_dir().join("bandwidth"), &i, "DEL", "del1", &path, &c)
        .ok();
    assert!(gone.ifbs().is_empty());
    gone.run(
        &i.bin_dir().join("bandwidth"),
        &i,
        "DEL",
        "del1",
        "",
        &conf_with(json!({}), Value::Null),
    )
    .ok();
}

#[test]
fn interop_with_the_reference_add_by_one_del_by_the_other() {
    let i = Install::new("bw-interop", &[]);
    let limits = runtime_limits(20_000_000, 4_294_967_295, 20_000_000, 34_359_738_359);
    for ours_first in [true, false] {
        let p = Pod::new("bwio");
        let c = p.conf(limits.clone());
        if ours_first {
            p.ours(&i, "ADD", "io1", &c).ok();
            p.reference(&i, "DEL", "io1", &c).ok();
        } else {
            p.reference(&i, "ADD", "io1", &c).ok();
            p.ours(&i, "DEL", "io1", &c).ok();
            // Ours also clears the veth's qdiscs while the veth exists.
            assert!(p.qdiscs().is_empty(), "{:?}", p.qdiscs());
        }
        assert!(
            p.ifbs().is_empty(),
            "ours_first={ours_first}: ifb left: {:?}",
            p.ifbs()
        );
        // The main plugin's DEL removes the veth.
        p.host.exec("ip link del vbw0");
        let left = p.qdiscs();
        assert!(
            left.is_empty(),
            "ours_first={ours_first}: qdiscs left: {left:?}"
        );
    }
}

#[test]
fn gc_removes_only_ifbs_of_stale_attachments() {
    let i = Install::new("bw-gc", &[]);
    let a = Pod::new("bwgc");
    let limits = json!({"egressRate": 8_000_000, "egressBurst": 800_000});
    a.ours(&i, "ADD", "live", &a.conf(limits.clone())).ok();
    let b = Pod::in_host(
        Netns {
            name: a.host.name.clone(),
        },
        "bwgc",
        1,
    );
    b.ours(&i, "ADD", "stale", &b.conf(limits.clone())).ok();
    // An ifb of another network in the same host must survive this network's GC.
    let other = conf_with(limits, b.prev_result()).replace("\"bwnet\"", "\"othernet\"");
    let c = Pod::in_host(
        Netns {
            name: a.host.name.clone(),
        },
        "bwgc",
        2,
    );
    c.ours(
        &i,
        "ADD",
        "stale",
        &other
            .replace("vbw1", "vbw2")
            .replace(&b.pod.path(), &c.pod.path()),
    )
    .ok();
    let gc = json!({"cniVersion": "1.1.0", "name": "bwnet", "type": "bandwidth", "cni.dev/valid-attachments": [{"containerID": "live", "ifname": "eth0"}]}).to_string();
    a.run(&i.bin_dir().join("bandwidth"), &i, "GC", "", "", &gc)
        .ok();
    let mut left = a.ifbs();
    left.sort();
    let mut want = vec![ifb_name("bwnet", "live"), ifb_name("othernet", "stale")];
    want.sort();
    assert_eq!(left, want);
    // b and c share a's host netns: forget it so it is deleted once.
    std::mem::forget(b.host);
    std::mem::forget(c.host);
}

#[test]
fn refuses_clearly_without_a_host_side_interface() {
    let i = Install::new("bw-noveth", &[]);
    let p = Pod::new("bwnv");
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": p.pod.path()}], "ips": [], "dns": {}});
    let e = p
        .ours(
            &i,
            "ADD",
            "nv1",
            &conf_with(json!({"ingressRate": 8000, "ingressBurst": 8000}), prev),
        )
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("no host-side interface"),
        "{e}"
    );
    let e = p
        .ours(
            &i,
            "ADD",
            "nv1",
            &conf_with(json!({"ingressRate": 8000}), p.prev_result()),
        )
        .err(7);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("burst must also be set"),
        "{e}"
    );
    assert!(p.qdiscs().is_empty() && p.ifbs().is_empty());
}

fn with_abuse(tag: &str) -> Install {
    let i = Install::new(tag, &[]);
    std::fs::copy(module("tc_abuse"), i.bin_dir().join("tc-abuse.wasm")).expect("copy");
    let _ = std::os::unix::fs::symlink("wasm-cni", i.bin_dir().join("tc-abuse"));
    i
}

fn abuse_conf(mode: &str, link: &str, prev: Value) -> String {
    json!({"cniVersion": "1.1.0", "name": "bwnet", "type": "tc-abuse", "abuse": mode, "link": link, "prevResult": prev}).to_string()
}

#[test]
fn a_hostile_module_cannot_touch_other_links() {
    let i = with_abuse("bw-abuse");
    let a = Pod::new("bwab");
    let victim = Pod::in_host(
        Netns {
            name: a.host.name.clone(),
        },
        "bwab",
        1,
    );
    let plugin = i.bin_dir().join("tc-abuse");
    // Another pod's veth, the host's lo, a made-up name: all refused.
    for link in ["vbw1", "lo", "nope0"] {
        let e = a
            .run(
                &plugin,
                &i,
                "ADD",
                "ab1",
                &a.pod.path(),
                &abuse_conf("other-link", link, a.prev_result()),
            )
            .err(7);
        assert!(
            e["msg"].as_str().unwrap_or("").contains(link),
            "{link}: {e}"
        );
    }
    assert!(a.qdiscs().is_empty(), "{:?}", a.qdiscs());

    // Another attachment's ifb: not outside GC, not when it is in the valid list.
    victim
        .ours(
            &i,
            "ADD",
            "victim",
            &victim.conf(json!({"egressRate": 8000, "egressBurst": 8000})),
        )
        .ok();
    let vifb = ifb_name("bwnet", "victim");
    let e = a
        .run(
            &plugin,
            &i,
            "ADD",
            "ab1",
            &a.pod.path(),
            &abuse_conf("gc-outside-gc", &vifb, a.prev_result()),
        )
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("only allowed during GC"),
        "{e}"
    );
    let gc = json!({"cniVersion": "1.1.0", "name": "bwnet", "type": "tc-abuse", "link": vifb, "cni.dev/valid-attachments": [{"containerID": "victim", "ifname": "eth0"}]}).to_string();
    let e = a.run(&plugin, &i, "GC", "", "", &gc).err(7);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("valid attachment"),
        "{e}"
    );
    // Nor a non-ifb link, even during GC.
    let gc_lo = gc.replace(&vifb, "vbw1");
    a.run(&plugin, &i, "GC", "", "", &gc_lo).err(7);
    assert_eq!(a.ifbs(), vec![vifb]);
    assert!(sh_ok(&format!("ip -n {} link show vbw1", a.host.name)));

    // A legitimate sequence, then failure: the host undoes every step.
    let e = a
        .run(
            &plugin,
            &i,
            "ADD",
            "ab2",
            &a.pod.path(),
            &abuse_conf("fail-after", "vbw0", a.prev_result()),
        )
        .err(100);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("on purpose"),
        "{e}"
    );
    assert_eq!(
        a.ifbs(),
        vec![ifb_name("bwnet", "victim")],
        "the failed ADD's ifb must be gone"
    );
    let on_a: Vec<Value> = a
        .qdiscs()
        .into_iter()
        .filter(|q| q["dev"] == "vbw0")
        .collect();
    assert!(
        on_a.is_empty(),
        "the failed ADD's qdiscs must be gone: {on_a:?}"
    );
    std::mem::forget(victim.host);
}

/// The real module in the real host against the in-memory tc fake: the
/// host's scope checks and rollback, unprivileged.
mod against_the_fake_kernel {
    use std::sync::{Arc, Once};

    use serde_json::json;
    use wasm_cni::dispatch::cni_call;
    use wasm_cni::kernel::tc::{FakeTc, TrafficControl, ROOT};
    use wasm_cni::kernel::Kernels;
    use wasm_cni_tests::modules_dir;

    const NS: &str = "/run/netns/fake-bw";

    fn setup() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let root = std::env::temp_dir().join(format!("wcni-bw-fake-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&root);
            std::env::set_var("WASM_CNI_CACHE_DIR", root.join("cache"));
            std::env::set_var("WASM_CNI_LOG_FILE", root.join("log"));
        });
    }

    fn call(tc: &FakeTc, cmd: &str, prev_host: &str) -> (i32, serde_json::Value) {
        setup();
        let vars: Vec<(String, String)> = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "fk1"),
            ("CNI_NETNS", NS),
            ("CNI_IFNAME", "eth0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("CNI_PATH".to_string(), modules_dir().display().to_string())])
        .collect();
        let conf = json!({"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth",
            "ingressRate": 8000, "ingressBurst": 8000, "egressRate": 8000, "egressBurst": 8000,
            "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": prev_host}, {"name": "eth0", "sandbox": NS}], "ips": [], "dns": {}}});
        let out = cni_call(
            "bandwidth",
            &vars,
            conf.to_string().as_bytes(),
            Kernels {
                tc: Arc::new(tc.clone()),
                ..Kernels::fake()
            },
        );
        (
            out.status,
            serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null),
        )
    }

    #[test]
    fn add_check_del_and_scope() {
        let tc = FakeTc::new();
        tc.add_veth("vbw0", NS, "eth0");
        tc.add_veth("other0", "/run/netns/other", "eth0");
        // Another pod's veth is refused by the host, whatever the module says.
        let (status, e) = call(&tc, "ADD", "other0");
        assert_eq!((status, e["code"].as_u64()), (1, Some(7)), "{e}");
        assert!(tc.calls().is_empty(), "{:?}", tc.calls());

        let (status, r) = call(&tc, "ADD", "vbw0");
        assert_eq!(status, 0, "{r}");
        let veth = tc.host_link("vbw0").map(|l| l.index).unwrap_or_default();
        assert!(tc
            .qdisc_list(veth)
            .iter()
            .any(|q| q.parent == ROOT && q.kind == "tbf"));
        assert_eq!(call(&tc, "CHECK", "vbw0").0, 0);
        assert_eq!(call(&tc, "DEL", "vbw0").0, 0);
        assert!(tc.qdisc_list(veth).is_empty());
        assert!(tc
            .links()
            .map(|l| l.iter().all(|l| l.kind != "ifb"))
            .unwrap_or(false));
    }

    #[test]
    fn failed_add_is_rolled_back() {
        let tc = FakeTc::new();
        tc.add_veth("vbw0", NS, "eth0");
        // A leftover ifb with this attachment's name makes ADD fail after the
        // ingress tbf was added: the host must take the tbf away again.
        let ifb = wasm_cni::caps::tc::ifb_name("bwnet", "fk1");
        tc.add_ifb(&ifb, 1500, "").map(drop).unwrap_or_default();
        let (status, e) = call(&tc, "ADD", "vbw0");
        assert_eq!(status, 1, "{e}");
        assert!(
            e["msg"].as_str().unwrap_or("").contains("already exists"),
            "{e}"
        );
        let veth = tc.host_link("vbw0").map(|l| l.index).unwrap_or_default();
        assert!(tc.qdisc_list(veth).is_empty(), "{:?}", tc.calls());
    }
}
