//! nftables-only nodes and portmap's nftables layout (issue #21 items 3
//! and 4), on the real kernel with real traffic. Needs root.
//!
//! * A node whose iptables binaries are gone but whose nft works: bridge
//!   with `ipMasq` and portmap, both with the backend unset, take nftables
//!   (upstream's rule, pkg/utils/netfilter.go), traffic flows, and DEL leaves
//!   nothing. The tools are hidden by a tmpfs over /usr/sbin in a private
//!   mount namespace (the host also searches the sbin dirs, so PATH alone is
//!   not enough); a copy of `nft` is put on PATH.
//! * portmap's nftables ruleset equals what upstream's portmap writes for the
//!   same mappings: the golden is upstream's transaction transcribed from
//!   containernetworking/plugins plugins/meta/portmap/portmap_nftables.go at
//!   main, commit 3d27709faaa4e3619f299b962d9ea24589e28f9c (2026-04-13),
//!   loaded with `nft -f` into a second netns; both tables are compared as
//!   `nft -j list table` structure (handles dropped). Upstream's Go cannot be
//!   built here (no module proxy), so its source is the reference.
//! * DEL removes upstream's rules of the container and the old `wasm_*`
//!   maps/sets layout of earlier releases of this binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::*;

/// Runs `argv` in netns `ns` with the iptables tools hidden: a private
/// mount namespace with a tmpfs over /usr/sbin, PATH = a dir holding a copy
/// of nft, then /usr/bin:/bin.
fn hidden_iptables(ns: &Netns, nft_dir: &Path, argv: &[String], env: &[(&str, String)]) -> Output {
    let mut script = String::from("mount -t tmpfs tmpfs /usr/sbin && exec nsenter --net=\"$0\"");
    for i in 0..argv.len() {
        script.push_str(&format!(" \"${{{}}}\"", i + 1));
    }
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-c", &script])
        .arg(ns.path())
        .args(argv);
    c.env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", nft_dir.display()));
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).output().expect("unshare")
}

fn nft_copy() -> TempDir {
    let d = TempDir::new("nftbin");
    std::fs::copy("/usr/sbin/nft", d.path().join("nft")).expect("copy nft");
    d
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HTTP on :80 in `ns`, waited for.
fn serve(ns: &Netns) -> Server {
    let c = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            "::",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server");
    let s = Server(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_ok(ns, "http://127.0.0.1:80/") {
        assert!(Instant::now() < deadline, "http server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

fn http_ok(from: &Netns, url: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &from.name,
            "curl",
            "-g",
            "-s",
            "-m",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout) == "200")
        .unwrap_or(false)
}

fn allocations(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Item 3: bridge (ipMasq) + host-local + portmap with every backend unset
/// on a node without iptables: nftables is taken, traffic flows (a hostPort
/// reaches the pod, the pod reaches an outside address only through the
/// masquerade), DEL leaves nothing. Pinning iptables on the same node fails
/// ADD: that is what an unset backend did before.
#[test]
fn nftables_only_node_bridge_ipmasq_and_portmap_with_backends_unset() {
    let install = Install::new("nftonly", &[]);
    let nft = nft_copy();
    let node = Netns::new("nftonly");
    let pod = Netns::new("nftonlyp");
    let outside = Netns::new("nftonlyo");
    // The node's uplink to an "outside" host that has no route back to the
    // pods: a pod reaches it only masqueraded.
    let (n, o, p) = (&node.name, &outside.name, &pod.name);
    sh(&format!(
        "ip -n {n} link set lo up && ip -n {o} link set lo up && ip -n {p} link set lo up && \
         ip -n {n} link add up0 type veth peer name eth0 netns {o} && \
         ip -n {n} addr add 192.0.2.1/24 dev up0 && ip -n {n} link set up0 up && \
         ip -n {o} addr add 192.0.2.2/24 dev eth0 && ip -n {o} link set eth0 up"
    ));
    let data = install.data_dir();
    let net = "nftonlynet";
    let list = |masq_backend: Option<&str>| {
        let mut bridge = json!({"type": "bridge", "bridge": "br-nftonly", "isGateway": true, "ipMasq": true,
            "ipam": {"type": "host-local", "dataDir": data.display().to_string(),
                     "ranges": [[{"subnet": "10.66.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}});
        if let Some(b) = masq_backend {
            bridge["ipMasqBackend"] = json!(b);
        }
        json!({"cniVersion": "1.0.0", "name": net, "plugins": [
            bridge, {"type": "portmap", "capabilities": {"portMappings": true}}]})
    };
    let files = TempDir::new("nftonlyconf");
    let write = |name: &str, v: &Value| -> PathBuf {
        let p = files.path().join(name);
        std::fs::write(&p, v.to_string()).expect("write");
        p
    };
    let unset = write("unset.conflist", &list(None));
    let pinned = write("pinned.conflist", &list(Some("iptables")));
    let caps =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let exec = |verb: &str, file: &Path, cid: &str| {
        let argv: Vec<String> = vec![
            install.bin_dir().join("wasm-cni").display().to_string(),
            "exec".into(),
            verb.into(),
            "--conflist".into(),
            file.display().to_string(),
            "--bin-dir".into(),
            install.bin_dir().display().to_string(),
            "--cache-dir".into(),
            files.path().join("results").display().to_string(),
            "--capability-args".into(),
            caps.to_string(),
            "--container-id".into(),
            cid.into(),
            "--netns".into(),
            pod.path(),
        ];
        hidden_iptables(
            &node,
            nft.path(),
            &argv,
            &[
                (
                    "WASM_CNI_CACHE_DIR",
                    install.cache_dir().display().to_string(),
                ),
                (
                    "WASM_CNI_LOG_FILE",
                    install.log_file().display().to_string(),
                ),
            ],
        )
    };
    // The hiding works: no iptables in that mount namespace.
    let probe = hidden_iptables(
        &node,
        nft.path(),
        &[
            "sh".into(),
            "-c".into(),
            "command -v iptables || ls /usr/sbin/iptables-save".into(),
        ],
        &[],
    );
    assert!(
        !probe.status.success(),
        "iptables still visible: {}",
        text(&probe)
    );

    // Before: an unset backend meant iptables. Pinned to it, ADD fails here.
    let out = exec("add", &pinned, "nftonly-pinned");
    assert!(
        !out.status.success(),
        "iptables ADD should fail: {}",
        text(&out)
    );
    assert!(text(&out).contains("iptables"), "{}", text(&out));
    exec("del", &pinned, "nftonly-pinned");

    let out = exec("add", &unset, "nftonly-a");
    assert!(
        out.status.success(),
        "ADD with the backends unset failed on an nftables-only node: {}\nlog: {}",
        text(&out),
        std::fs::read_to_string(install.log_file()).unwrap_or_default()
    );
    // host-local goes on from its last reserved address: read the pod's.
    let result: Value = serde_json::from_slice(&out.stdout).expect("result");
    let ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .expect("pod address")
        .to_string();
    let ruleset = node.exec("nft list ruleset");
    assert!(
        ruleset.contains("table inet cni_plugins_masquerade")
            && ruleset.contains(&format!(
                "ip saddr {ip} ip daddr != 10.66.0.0/24 masquerade"
            )),
        "masquerade not in nftables:\n{ruleset}"
    );
    assert!(
        ruleset.contains(&format!(
            "tcp dport 8080 dnat to {ip}:80 comment \"nftonly-a\""
        )),
        "hostPort not in nftables:\n{ruleset}"
    );
    let _srv = serve(&pod);
    assert!(
        http_ok(&node, "http://10.66.0.1:8080/"),
        "node -> hostPort (on the bridge address) does not reach the pod"
    );
    assert!(
        http_ok(&node, "http://192.0.2.1:8080/"),
        "node -> hostPort (on the uplink address) does not reach the pod"
    );
    assert!(
        sh_ok(&format!(
            "ip netns exec {} ping -c 1 -W 2 192.0.2.2",
            pod.name
        )),
        "pod -> outside: no masquerade"
    );

    let out = exec("del", &unset, "nftonly-a");
    assert!(out.status.success(), "DEL failed: {}", text(&out));
    let ruleset = node.exec("nft list ruleset");
    assert!(
        !ruleset.contains("nftonly-a") && !ruleset.contains(&format!("{ip} ")),
        "rules of the pod left after DEL:\n{ruleset}"
    );
    assert!(
        !node.exec("ip -o link show type veth").contains("veth"),
        "a veth is left: {}",
        node.exec("ip -o link show type veth")
    );
    assert!(
        allocations(&data.join(net)).is_empty(),
        "allocation left: {:?}",
        allocations(&data.join(net))
    );
    assert!(
        !http_ok(&node, "http://10.66.0.1:8080/"),
        "hostPort still mapped"
    );
}

/// nft's JSON of one table, without handles and the metainfo.
fn table_structure(ns: &Netns, family: &str) -> Value {
    let raw = ns.exec(&format!("nft -j list table {family} cni_hostport"));
    let mut v: Value = serde_json::from_str(&raw).expect("nft -j");
    let items = v["nftables"].as_array_mut().expect("nftables");
    items.retain(|i| i.get("metainfo").is_none());
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.remove("handle");
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// What upstream's forwardPorts sends to `nft -f` for one family of one
/// container (portmap_nftables.go at 3d27709f: table with comment; chains
/// hostports, hostip_hostports, hostports_all (flushed, two jumps);
/// prerouting and output (nat, dstnat; flushed; `[conditions] fib daddr
/// type local jump hostports_all`); masquerading (nat, postrouting, srcnat)
/// when snat; one rule per mapping `[<ip> daddr <hostIP>] <proto> dport
/// <hostPort> dnat to <JoinHostPort(containerIP, containerPort)>`, then
/// `<ip> saddr <container IP, or 0.0.0.0/0 / ::/0 with masqAll> <ip> daddr
/// <container IP> masquerade` and, IPv4 without masqAll, `ip saddr
/// 127.0.0.1 ...`; every per-container rule commented with the container
/// id). knftables writes `add` for each object, `flush chain` for Flush,
/// and base-chain priorities as numbers (dstnat -100, srcnat 100: older nft
/// refuses `dstnat` on the output hook; knftables objects.go).
fn upstream_transaction(v6: bool, cid: &str, cip: &str, masq_all: bool) -> String {
    let f = if v6 { "ip6" } else { "ip" };
    let t = format!("{f} cni_hostport");
    let dst = |p: u16| {
        if v6 {
            format!("[{cip}]:{p}")
        } else {
            format!("{cip}:{p}")
        }
    };
    let host_ip = if v6 { "fd00:ffff::10" } else { "192.0.2.10" };
    let mut s = format!(
        "add table {t} {{ comment \"CNI portmap plugin\" ; }}
add chain {t} hostports
add chain {t} hostip_hostports
add chain {t} hostports_all
flush chain {t} hostports_all
add rule {t} hostports_all jump hostip_hostports
add rule {t} hostports_all jump hostports
add chain {t} prerouting {{ type nat hook prerouting priority -100 ; }}
flush chain {t} prerouting
add rule {t} prerouting fib daddr type local jump hostports_all
add chain {t} output {{ type nat hook output priority -100 ; }}
flush chain {t} output
add rule {t} output fib daddr type local jump hostports_all
add chain {t} masquerading {{ type nat hook postrouting priority 100 ; }}
add rule {t} hostports tcp dport 8080 dnat to {} comment \"{cid}\"
add rule {t} hostports {f} daddr {host_ip} udp dport 5353 dnat to {} comment \"{cid}\"
",
        dst(80),
        dst(5353)
    );
    let src = match (masq_all, v6) {
        (true, false) => "0.0.0.0/0".to_string(),
        (true, true) => "::/0".to_string(),
        (false, _) => cip.to_string(),
    };
    s.push_str(&format!(
        "add rule {t} masquerading {f} saddr {src} {f} daddr {cip} masquerade comment \"{cid}\"\n"
    ));
    if !v6 && !masq_all {
        s.push_str(&format!(
            "add rule {t} masquerading ip saddr 127.0.0.1 ip daddr {cip} masquerade comment \"{cid}\"\n"
        ));
    }
    s
}

fn load(ns: &Netns, script: &str) {
    let f = TempDir::new("nftscript");
    let p = f.path().join("s.nft");
    std::fs::write(&p, script).expect("write");
    ns.exec(&format!("nft -f {}", p.display()));
}

struct PmNode {
    node: Netns,
    pod: Netns,
    install: Install,
}

impl PmNode {
    fn new(tag: &str) -> PmNode {
        let node = Netns::new(tag);
        let pod = Netns::new(&format!("{tag}p"));
        let (h, p) = (&node.name, &pod.name);
        sh(&format!(
            "ip -n {h} link set lo up && ip -n {h} addr add 192.0.2.10/32 dev lo && ip -n {h} addr add fd00:ffff::10/128 dev lo nodad && \
             ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 && \
             ip -n {h} link add vh1 type veth peer name eth0 netns {p} && ip -n {h} link set vh1 up && \
             ip -n {h} addr add 10.250.1.1/24 dev vh1 && ip -n {h} addr add fd00:250:1::1/64 dev vh1 nodad && \
             ip -n {p} link set lo up && ip -n {p} link set eth0 up && ip -n {p} addr add 10.250.1.2/24 dev eth0 && \
             ip -n {p} addr add fd00:250:1::2/64 dev eth0 nodad && ip -n {p} route add default via 10.250.1.1 && \
             ip -n {p} -6 route add default via fd00:250:1::1"
        ));
        PmNode {
            node,
            pod,
            install: Install::new(tag, &[]),
        }
    }

    fn conf(&self, extra: Value) -> String {
        let mut c = json!({"cniVersion": "1.0.0", "name": "pmnet", "type": "portmap", "backend": "nftables",
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 5353, "protocol": "udp", "hostIP": "192.0.2.10"},
                {"hostPort": 5353, "containerPort": 5353, "protocol": "udp", "hostIP": "fd00:ffff::10"}]},
            "prevResult": {"cniVersion": "1.0.0",
                "interfaces": [{"name": "vh1"}, {"name": "eth0", "sandbox": self.pod.path()}],
                "ips": [{"address": "10.250.1.2/24", "interface": 1}, {"address": "fd00:250:1::2/64", "interface": 1}]}});
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        c.to_string()
    }

    fn portmap(&self, cmd: &str, cid: &str, stdin: &str) -> PluginRun {
        let (node, plugin) = (
            self.node.name.clone(),
            self.install.bin_dir().join("portmap"),
        );
        let (cache, log) = (self.install.cache_dir(), self.install.log_file());
        let pod = self.pod.path();
        run_plugin(
            Path::new("/usr/sbin/ip"),
            &self.install.bin_dir(),
            &[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", cid),
                ("CNI_NETNS", &pod),
                ("CNI_IFNAME", "eth0"),
            ],
            stdin,
            move |c| {
                c.args(["netns", "exec", &node]).arg(plugin);
                c.env("WASM_CNI_CACHE_DIR", cache)
                    .env("WASM_CNI_LOG_FILE", log);
            },
        )
    }
}

/// Item 4: our nftables ruleset is upstream's, object for object, for
/// snat (hairpin + localhost) and masqAll; traffic flows; CHECK and DEL work.
#[test]
fn portmap_nftables_ruleset_equals_upstreams() {
    for masq_all in [false, true] {
        let n = PmNode::new("pmlayout");
        let cid = "0123456789abcdef";
        let conf = n.conf(json!({"masqAll": masq_all}));
        n.portmap("ADD", cid, &conf).ok();
        let golden = Netns::new("pmgolden");
        load(
            &golden,
            &upstream_transaction(false, cid, "10.250.1.2", masq_all),
        );
        load(
            &golden,
            &upstream_transaction(true, cid, "fd00:250:1::2", masq_all),
        );
        for family in ["ip", "ip6"] {
            assert_eq!(
                table_structure(&n.node, family),
                table_structure(&golden, family),
                "{family} cni_hostport (masqAll {masq_all}) differs from upstream's:\nours:\n{}\nupstream:\n{}",
                n.node.exec(&format!("nft list table {family} cni_hostport")),
                golden.exec(&format!("nft list table {family} cni_hostport"))
            );
        }
        let _srv = serve(&n.pod);
        assert!(
            http_ok(&n.node, "http://192.0.2.10:8080/"),
            "node -> hostPort"
        );
        assert!(
            http_ok(&n.node, "http://[fd00:ffff::10]:8080/"),
            "node -> IPv6 hostPort"
        );
        assert!(http_ok(&n.pod, "http://192.0.2.10:8080/"), "hairpin");
        if !masq_all {
            assert!(
                http_ok(&n.node, "http://127.0.0.1:8080/"),
                "localhost hostPort"
            );
        }
        n.portmap("CHECK", cid, &conf).ok();
        // CHECK, as upstream's, counts the container's rules.
        let listing = n.node.exec("nft -a list chain ip cni_hostport hostports");
        let handle = listing
            .lines()
            .find(|l| l.contains("tcp dport 8080"))
            .and_then(|l| l.rsplit("handle ").next())
            .map(|h| h.trim().to_string())
            .expect("rule handle");
        n.node.exec(&format!(
            "nft delete rule ip cni_hostport hostports handle {handle}"
        ));
        n.portmap("CHECK", cid, &conf).err(999);
        n.portmap("DEL", cid, &conf).ok();
        n.portmap("DEL", cid, &conf).ok();
        let st = n.node.exec("nft list ruleset");
        assert!(!st.contains(cid), "rules left after DEL:\n{st}");
        assert!(!http_ok(&n.node, "http://192.0.2.10:8080/"), "mapping gone");
    }
}

/// The old layout of earlier releases, transcribed from the nft.rs it
/// replaced: maps/sets keyed by port, elements commented `<net>:<cid>`.
fn old_layout(cid: &str) -> String {
    let t = "ip cni_hostport";
    format!(
        "add table {t} {{ comment \"CNI portmap plugin\" ; }}
add map {t} wasm_hostports {{ type inet_proto . inet_service : ipv4_addr . inet_service ; }}
add map {t} wasm_hostip_hostports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service ; }}
add set {t} wasm_masq {{ type ipv4_addr . ipv4_addr ; }}
add set {t} wasm_masq_all {{ type ipv4_addr ; }}
add chain {t} wasm_hostports
add chain {t} wasm_prerouting {{ type nat hook prerouting priority dstnat ; }}
add chain {t} wasm_output {{ type nat hook output priority -100 ; }}
add chain {t} wasm_postrouting {{ type nat hook postrouting priority srcnat ; }}
add rule {t} wasm_prerouting fib daddr type local jump wasm_hostports
add rule {t} wasm_output fib daddr type local jump wasm_hostports
add rule {t} wasm_hostports dnat ip to ip daddr . meta l4proto . th dport map @wasm_hostip_hostports
add rule {t} wasm_hostports dnat ip to meta l4proto . th dport map @wasm_hostports
add rule {t} wasm_postrouting ct status dnat ip saddr . ip daddr @wasm_masq masquerade
add rule {t} wasm_postrouting ct status dnat ip daddr @wasm_masq_all masquerade
add element {t} wasm_hostports {{ tcp . 9090 comment \"pmnet:{cid}\" : 10.250.1.2 . 80 }}
add element {t} wasm_masq {{ 10.250.1.2 . 10.250.1.2 comment \"pmnet:{cid}\" }}
add element {t} wasm_masq {{ 127.0.0.1 . 10.250.1.2 comment \"pmnet:{cid}\" }}
"
    )
}

/// DEL removes a pod's rules written by upstream's portmap (and only its),
/// and a pod of the old `wasm_*` layout with the whole old skeleton.
#[test]
fn portmap_del_removes_upstreams_rules_and_the_old_layout() {
    let n = PmNode::new("pmdelold");
    // Upstream's ADD for two pods, ours DEL of one.
    load(
        &n.node,
        &upstream_transaction(false, "up-a", "10.250.1.2", false),
    );
    load(
        &n.node,
        &upstream_transaction(true, "up-a", "fd00:250:1::2", false),
    );
    load(
        &n.node,
        &upstream_transaction(false, "up-b", "10.250.1.3", false),
    );
    let conf = n.conf(json!({}));
    n.portmap("CHECK", "up-a", &conf).ok();
    n.portmap("DEL", "up-a", &conf).ok();
    let st = n.node.exec("nft list ruleset");
    assert!(
        !st.contains("\"up-a\""),
        "upstream's rules of up-a left:\n{st}"
    );
    assert_eq!(st.matches("\"up-b\"").count(), 4, "up-b must stay:\n{st}");

    // The old layout: a pod of it is reachable, then its DEL clears it all.
    load(&n.node, &old_layout("old-a"));
    let _srv = serve(&n.pod);
    assert!(
        http_ok(&n.node, "http://192.0.2.10:9090/"),
        "old layout mapping"
    );
    n.portmap("DEL", "old-a", &conf).ok();
    let st = n.node.exec("nft list table ip cni_hostport");
    assert!(!st.contains("wasm_"), "old layout left after DEL:\n{st}");
    assert!(
        !http_ok(&n.node, "http://192.0.2.10:9090/"),
        "old mapping gone"
    );
    assert_eq!(st.matches("\"up-b\"").count(), 4, "up-b must stay:\n{st}");
}
