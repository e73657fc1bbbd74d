//! bridge and ptp on the real kernel with real traffic. Needs root.
//!
//! Every test owns a throwaway "host" netns and runs the plugin binary under
//! `ip netns exec <host>`, so the bridge, host veths, sysctls and iptables
//! rules live in that netns and the real host is never touched. Pods are
//! throwaway netns too. The reference plugins (/usr/lib/cni, 1.1.1) run the
//! same way for the interop tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni::kernel::hostfw::Attachment;
use wasm_cni::kernel::masq::{chain_name, comment};
use wasm_cni_tests::*;

/// A test "host": a netns with lo up, where the plugins run.
struct Host {
    ns: Netns,
    install: Install,
    /// directory with `ref-host-local` / `ref-static` links to the reference
    /// IPAM binaries, for native-exec delegation
    native: TempDir,
}

impl Host {
    fn new(tag: &str) -> Host {
        let install = Install::new(tag, &[]);
        let ns = Netns::new(tag);
        ns.exec("ip link set lo up");
        let native = TempDir::new(&format!("{tag}-native"));
        for t in ["host-local", "static"] {
            std::os::unix::fs::symlink(reference_plugin(t), native.path().join(format!("ref-{t}")))
                .expect("link reference IPAM");
        }
        Host {
            ns,
            install,
            native,
        }
    }

    fn with_fixture(tag: &str) -> Host {
        let h = Host::new(tag);
        std::fs::copy(
            module("hostnet_abuse"),
            h.install.bin_dir().join("hostnet-abuse.wasm"),
        )
        .expect("copy fixture");
        let _ = std::os::unix::fs::symlink("wasm-cni", h.install.bin_dir().join("hostnet-abuse"));
        h
    }

    fn data_dir(&self) -> PathBuf {
        self.install.data_dir()
    }

    /// Runs `bin` for `cmd` inside the host netns as a runtime would.
    fn run(
        &self,
        bin: &Path,
        cni_path: &str,
        cmd: &str,
        cid: &str,
        netns: &str,
        conf: &str,
    ) -> PluginRun {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns.name]).arg(bin);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CNI_PATH", cni_path)
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("WASM_CNI_CACHE_DIR", self.install.cache_dir())
            .env("WASM_CNI_LOG_FILE", self.install.log_file());
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        if let Some(mut si) = child.stdin.take() {
            use std::io::Write;
            let _ = si.write_all(conf.as_bytes());
        }
        let out = child.wait_with_output().expect("wait plugin");
        PluginRun {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    fn ours(&self, plugin: &str, cmd: &str, cid: &str, netns: &str, conf: &str) -> PluginRun {
        let cni_path = format!(
            "{}:{}",
            self.install.bin_dir().display(),
            self.native.path().display()
        );
        self.run(
            &self.install.bin_dir().join(plugin),
            &cni_path,
            cmd,
            cid,
            netns,
            conf,
        )
    }

    fn reference(&self, plugin: &str, cmd: &str, cid: &str, netns: &str, conf: &str) -> PluginRun {
        self.run(
            &reference_plugin(plugin),
            "/usr/lib/cni",
            cmd,
            cid,
            netns,
            conf,
        )
    }

    /// Both families' nat tables, without iptables-save's timestamped
    /// comment lines (two listings a second apart must compare equal).
    fn nat(&self) -> String {
        let v4 = self.ns.exec("iptables-save -t nat");
        let v6 = self.ns.exec("ip6tables-save -t nat");
        format!("{v4}{v6}")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The host netns' whole nftables ruleset.
    fn nft(&self) -> String {
        self.ns.exec("nft list ruleset")
    }

    /// Host-side link names other than lo and `keep`.
    fn veths(&self) -> Vec<String> {
        self.ns
            .exec("ip -o link show type veth")
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .collect()
    }

    /// The kernel destroys a deleted netns (and its veths) asynchronously.
    #[track_caller]
    fn wait_no_veths(&self) {
        let start = Instant::now();
        while !self.veths().is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(self.veths().is_empty(), "veths left: {:?}", self.veths());
    }

    /// Allocation files host-local keeps for `net` (IP-named files).
    fn allocations(&self, net: &str) -> Vec<String> {
        let dir = self.data_dir().join(net);
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn bridge_conf(version: &str, net: &str, data: &Path, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": version, "name": net, "type": "bridge", "bridge": "cni0",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "dataDir": data.display().to_string(),
                 "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd77::/64"}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]},
    });
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "ipam" {
                if let (Some(i), Some(ev)) = (
                    o.get_mut("ipam").and_then(Value::as_object_mut),
                    v.as_object(),
                ) {
                    i.extend(ev.clone());
                }
            } else {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    c.to_string()
}

fn ptp_conf(version: &str, net: &str, data: &Path, ipam_type: &str) -> String {
    json!({
        "cniVersion": version, "name": net, "type": "ptp", "ipMasq": true, "mtu": 1400,
        "ipam": {"type": ipam_type, "dataDir": data.display().to_string(),
                 "ranges": [[{"subnet": "10.88.0.0/24"}], [{"subnet": "fd88::/64"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    })
    .to_string()
}

/// One ICMP(v6) echo with a 1 s timeout, in python3 (raw sockets, root):
/// the test machines need no iputils for it.
const PING: &str = r#"
import os, socket, struct, sys, time
dst = sys.argv[1]; v6 = ':' in dst
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
if v6: sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); req, rep = 128, 129
else: sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); req, rep = 8, 0
body = b'wasm-cni'
c = 0 if v6 else csum(struct.pack('!BBHHH', req, 0, 0, ident, 1) + body)
sock.settimeout(1)
sock.sendto(struct.pack('!BBHHH', req, 0, c, ident, 1) + body, (dst, 0))
end = time.time() + 1
while time.time() < end:
    try: data, _ = sock.recvfrom(2048)
    except socket.timeout: break
    if not v6: data = data[(data[0] & 15) * 4:]
    if data[0] == rep and struct.unpack('!H', data[4:6])[0] == ident: sys.exit(0)
sys.exit(1)
"#;

/// Pings `dst` from `ns` until it answers, within `secs` (IPv6 DAD on a
/// fresh bridge address takes a moment).
/// Whether one echo to `dst` from `ns` is answered.
fn ping_once(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", PING, dst])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[track_caller]
fn ping(ns: &str, dst: &str, secs: u64) {
    let start = Instant::now();
    loop {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", PING, dst])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{ns} cannot ping {dst}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn addr_of(result: &Value, v4: bool) -> String {
    result["ips"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|i| i["address"].as_str().is_some_and(|s| s.contains('.') == v4))
        })
        .and_then(|i| i["address"].as_str())
        .and_then(|s| s.split('/').next())
        .map(String::from)
        .unwrap_or_else(|| {
            panic!(
                "no {} address in {result}",
                if v4 { "IPv4" } else { "IPv6" }
            )
        })
}

/// An HTTP server in `ns`, killed on drop.
struct Http(Child);

impl Http {
    fn start(ns: &Netns, dir: &Path) -> Http {
        std::fs::write(dir.join("hello.txt"), "hello from the pod\n").expect("write page");
        let child = Command::new("ip")
            // `ip netns exec` execs python3 itself, so killing the child kills the server.
            .args([
                "netns",
                "exec",
                &ns.name,
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "::",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start http.server");
        Http(child)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[track_caller]
fn curl(ns: &Netns, url: &str) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "curl",
                "-sS",
                "-g",
                "--max-time",
                "2",
                url,
            ])
            .output()
            .expect("curl");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "curl {url} from {} failed: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bridge_two_pods_talk_over_v4_and_v6_and_del_cleans_everything() {
    let h = Host::new("br2");
    let (a, b) = (Netns::new("bra"), Netns::new("brb"));
    let conf = bridge_conf("1.0.0", "brnet", &h.data_dir(), json!({}));
    let ra = h.ours("bridge", "ADD", "pod-a", &a.path(), &conf);
    ra.ok();
    let ra = ra.json();
    let rb = h.ours("bridge", "ADD", "pod-b", &b.path(), &conf);
    rb.ok();
    let rb = rb.json();

    // Result shape: bridge, host veth, container interface with sandbox.
    let ifs = ra["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 3, "{ra}");
    assert_eq!(ifs[0]["name"], "cni0");
    let veth = ifs[1]["name"].as_str().expect("veth name");
    assert!(
        veth.starts_with("veth") && veth.len() == 12,
        "host veth named like the reference: {veth}"
    );
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(ifs[2]["sandbox"], a.path().as_str());
    assert!(
        ra["ips"]
            .as_array()
            .expect("ips")
            .iter()
            .all(|i| i["interface"] == 2),
        "{ra}"
    );
    assert_eq!(ra["ips"][0]["gateway"], "10.77.0.1");
    assert!(h
        .ns
        .exec(&format!("ip -d link show {veth}"))
        .contains("master cni0"));
    assert_eq!(h.ns.exec("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    let mac = h.ns.exec("cat /sys/class/net/cni0/address");
    assert_eq!(ifs[0]["mac"], mac.trim());

    let (a4, a6, b4, b6) = (
        addr_of(&ra, true),
        addr_of(&ra, false),
        addr_of(&rb, true),
        addr_of(&rb, false),
    );
    ping(&a.name, &b4, 10);
    ping(&a.name, &b6, 10);
    ping(&b.name, &a4, 10);
    ping(&a.name, "10.77.0.1", 10);
    ping(&a.name, "fd77::1", 10);
    ping(&h.ns.name, &a4, 10);
    ping(&h.ns.name, &b6, 10);

    let www = TempDir::new("br-www");
    let _srv = Http::start(&b, www.path());
    assert_eq!(
        curl(&a, &format!("http://{b4}:8080/hello.txt")),
        "hello from the pod\n"
    );
    assert_eq!(
        curl(&a, &format!("http://[{b6}]:8080/hello.txt")),
        "hello from the pod\n"
    );

    // Masquerade with the reference's chain name and comment.
    let nat = h.nat();
    let chain = chain_name("brnet", "pod-a");
    assert!(nat.contains(&format!(":{chain} ")), "{nat}");
    assert!(nat.contains(&format!("-A POSTROUTING -s {a4}/32 -m comment --comment \"name: \\\"brnet\\\" id: \\\"pod-a\\\"\" -j {chain}")), "{nat}");
    assert!(
        nat.contains(&format!(
            "-A {chain} -d 10.77.0.0/24 -m comment --comment \"{}\" -j ACCEPT",
            comment("brnet", "pod-a").replace('"', "\\\"")
        )),
        "{nat}"
    );
    assert!(
        nat.contains(&format!("-A {chain} ! -d 224.0.0.0/4 -m comment")),
        "{nat}"
    );
    assert!(
        nat.contains(&format!("-A POSTROUTING -s {a6}/128")),
        "{nat}"
    );

    // CHECK passes with the ADD result, fails once an address is gone.
    let mut chk: Value = serde_json::from_str(&conf).expect("conf");
    chk["prevResult"] = ra.clone();
    h.ours("bridge", "CHECK", "pod-a", &a.path(), &chk.to_string())
        .ok();
    a.exec(&format!("ip addr del {a4}/24 dev eth0"));
    let e = h
        .ours("bridge", "CHECK", "pod-a", &a.path(), &chk.to_string())
        .err(999);
    assert!(e["msg"].as_str().unwrap_or("").contains("not found"), "{e}");

    for (cid, ns) in [("pod-a", &a), ("pod-b", &b)] {
        h.ours("bridge", "DEL", cid, &ns.path(), &conf).ok();
        h.ours("bridge", "DEL", cid, &ns.path(), &conf).ok();
    }
    assert!(h.veths().is_empty(), "veths left: {:?}", h.veths());
    assert!(!h.nat().contains("CNI-"), "rules left: {}", h.nat());
    assert!(
        h.allocations("brnet").is_empty(),
        "allocations left: {:?}",
        h.allocations("brnet")
    );
}

#[test]
fn bridge_del_works_with_netns_gone_empty_netns_and_no_prev_result() {
    let h = Host::new("brgone");
    let conf = bridge_conf("0.4.0", "gonenet", &h.data_dir(), json!({}));
    let a = Netns::new("brg");
    let path = a.path();
    let r = h.ours("bridge", "ADD", "gone-1", &path, &conf);
    r.ok();
    assert_eq!(r.json()["ips"][0]["version"], "4", "0.4.0 result shape");
    drop(a);
    h.ours("bridge", "DEL", "gone-1", &path, &conf).ok();
    assert!(!h.nat().contains(&chain_name("gonenet", "gone-1")));
    assert!(h.allocations("gonenet").is_empty());
    h.wait_no_veths();

    let b = Netns::new("brg2");
    h.ours("bridge", "ADD", "gone-2", &b.path(), &conf).ok();
    h.ours("bridge", "DEL", "gone-2", "", &conf).ok();
    assert!(!h.nat().contains(&chain_name("gonenet", "gone-2")));
    assert!(h.allocations("gonenet").is_empty());
    // The container interface is gone first: DEL still cleans up.
    let c = Netns::new("brg3");
    h.ours("bridge", "ADD", "gone-3", &c.path(), &conf).ok();
    c.exec("ip link del eth0");
    h.ours("bridge", "DEL", "gone-3", &c.path(), &conf).ok();
    assert!(!h.nat().contains("CNI-"));
    assert!(h.allocations("gonenet").is_empty());
}

#[test]
fn failed_add_is_rolled_back() {
    let h = Host::with_fixture("brfail");
    let a = Netns::new("brf");
    let conf = json!({"cniVersion": "1.0.0", "name": "failnet", "type": "hostnet-abuse", "abuse": "fail-after-setup", "target": "vethfail0",
        "ipam": {"type": "host-local", "dataDir": h.data_dir().display().to_string(), "subnet": "10.66.0.0/24"}})
    .to_string();
    h.ours("hostnet-abuse", "ADD", "fail-1", &a.path(), &conf)
        .err(999);
    assert!(h.veths().is_empty(), "veth left: {:?}", h.veths());
    assert!(!a.exec("ip -o link").contains("eth0"));
    assert!(!h.nat().contains("CNI-"), "{}", h.nat());
    assert!(h.allocations("failnet").is_empty());

    // bridge itself failing after IPAM (the bridge has another gateway address).
    h.ns.exec("sh -c 'ip link show cni0 >/dev/null 2>&1 || ip link add cni0 type bridge'");
    h.ns.exec("ip addr add 10.99.0.1/24 dev cni0");
    let conf = bridge_conf("1.0.0", "failnet2", &h.data_dir(), json!({}));
    let e = h.ours("bridge", "ADD", "fail-2", &a.path(), &conf).err(999);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("already has an IP address different"),
        "{e}"
    );
    assert!(h.veths().is_empty(), "veth left: {:?}", h.veths());
    assert!(h.allocations("failnet2").is_empty());
    assert!(!h.nat().contains("CNI-"));
}

#[test]
fn host_links_outside_the_scope_are_refused() {
    let h = Host::with_fixture("scope");
    let a = Netns::new("scp");
    h.ns.exec("ip link add vethforeign type veth peer name vethforeign1");
    h.ns.exec("ip link set vethforeign up");
    for (abuse, target) in [
        ("link-down", "lo"),
        ("link-down", "vethforeign"),
        ("read", "vethforeign1"),
        ("address", "lo"),
        ("master", "vethforeign"),
        ("sysctl", "net/ipv4/conf/lo/forwarding"),
        ("sysctl", "net/ipv4/conf/vethforeign/proxy_arp"),
        ("sysctl", "kernel/hostname"),
        ("sysctl", "net/ipv4/conf/../../../kernel/hostname"),
        ("veth-named-bridge", ""),
    ] {
        let conf = json!({"cniVersion": "1.0.0", "name": "scope", "type": "hostnet-abuse", "abuse": abuse, "target": target}).to_string();
        let e = h
            .ours("hostnet-abuse", "ADD", "abuser", &a.path(), &conf)
            .err(7);
        let text = format!("{} {}", e["msg"], e["details"]);
        assert!(
            text.contains("scope") || text.contains("outside"),
            "{abuse} {target}: {e}"
        );
    }
    assert!(
        h.ns.exec("ip -o link show lo").contains("UP"),
        "lo must still be up"
    );
    assert!(h.ns.exec("ip -o link show vethforeign").contains("UP"));
    assert!(!h.ns.exec("ip -o addr show dev lo").contains("192.0.2.1"));
}

#[test]
fn ptp_pods_reach_the_host_and_each_other_through_it() {
    let h = Host::new("ptp");
    let (a, b) = (Netns::new("pta"), Netns::new("ptb"));
    let conf = ptp_conf("1.0.0", "ptpnet", &h.data_dir(), "host-local");
    let ra = h.ours("ptp", "ADD", "ptp-a", &a.path(), &conf);
    ra.ok();
    let ra = ra.json();
    let rb = h.ours("ptp", "ADD", "ptp-b", &b.path(), &conf);
    rb.ok();
    let rb = rb.json();
    assert_eq!(ra["interfaces"].as_array().map(Vec::len), Some(2), "{ra}");
    assert_eq!(ra["interfaces"][1]["sandbox"], a.path().as_str());
    assert!(ra["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .all(|i| i["interface"] == 1));
    let veth = ra["interfaces"][0]["name"].as_str().expect("veth");
    assert!(h
        .ns
        .exec(&format!("ip -o addr show dev {veth}"))
        .contains("10.88.0.1/32"));
    assert!(
        a.exec("ip route").contains("10.88.0.0/24 via 10.88.0.1"),
        "{}",
        a.exec("ip route")
    );
    assert!(a.exec("cat /sys/class/net/eth0/mtu").trim() == "1400");

    let (a4, b4, b6) = (addr_of(&ra, true), addr_of(&rb, true), addr_of(&rb, false));
    ping(&h.ns.name, &a4, 10);
    ping(&h.ns.name, &b6, 10);
    ping(&a.name, "10.88.0.1", 10);
    ping(&a.name, &b4, 10);
    ping(&a.name, &b6, 10);
    let www = TempDir::new("ptp-www");
    let srv = Http::start(&b, www.path());
    assert_eq!(
        curl(&a, &format!("http://{b4}:8080/hello.txt")),
        "hello from the pod\n"
    );
    drop(srv);
    assert!(h.nat().contains(&chain_name("ptpnet", "ptp-a")));

    let mut chk: Value = serde_json::from_str(&conf).expect("conf");
    chk["prevResult"] = ra.clone();
    h.ours("ptp", "CHECK", "ptp-a", &a.path(), &chk.to_string())
        .ok();
    a.exec("ip route del default");
    h.ours("ptp", "CHECK", "ptp-a", &a.path(), &chk.to_string())
        .err(999);

    h.ours("ptp", "DEL", "ptp-a", &a.path(), &conf).ok();
    drop(b);
    h.ours("ptp", "DEL", "ptp-b", "/var/run/netns/wcni-none", &conf)
        .ok();
    h.ours("ptp", "DEL", "ptp-b", "", &conf).ok();
    h.wait_no_veths();
    assert!(!h.nat().contains("CNI-"), "{}", h.nat());
    assert!(h.allocations("ptpnet").is_empty());
}

#[test]
fn native_ipam_binaries_are_exec_delegated() {
    let h = Host::new("native");
    let a = Netns::new("nat1");
    let conf = bridge_conf(
        "1.0.0",
        "nativenet",
        &h.data_dir(),
        json!({"ipam": {"type": "ref-host-local"}}),
    );
    let r = h.ours("bridge", "ADD", "native-1", &a.path(), &conf);
    r.ok();
    assert_eq!(h.allocations("nativenet").len(), 2);
    ping(&h.ns.name, &addr_of(&r.json(), true), 10);
    h.ours("bridge", "DEL", "native-1", &a.path(), &conf).ok();
    assert!(h.allocations("nativenet").is_empty());

    let b = Netns::new("nat2");
    let conf = json!({"cniVersion": "1.0.0", "name": "staticnet", "type": "ptp",
        "ipam": {"type": "ref-static", "addresses": [{"address": "10.55.0.9/24", "gateway": "10.55.0.1"}]}})
    .to_string();
    let r = h.ours("ptp", "ADD", "static-1", &b.path(), &conf);
    r.ok();
    assert_eq!(addr_of(&r.json(), true), "10.55.0.9");
    ping(&h.ns.name, "10.55.0.9", 10);
    h.ours("ptp", "DEL", "static-1", &b.path(), &conf).ok();
    assert!(h.veths().is_empty());
}

/// ADD by one implementation, DEL by the other: nothing may be left.
#[test]
fn interop_with_the_reference_bridge_and_ptp() {
    let h = Host::new("interop");
    for plugin in ["bridge", "ptp"] {
        for (adder, deleter) in [("reference", "ours"), ("ours", "reference")] {
            let net = format!("{plugin}-{adder}");
            let conf = match plugin {
                "bridge" => bridge_conf("0.4.0", &net, &h.data_dir(), json!({})),
                _ => ptp_conf("0.4.0", &net, &h.data_dir(), "host-local"),
            };
            let ns = Netns::new("iop");
            let cid = format!("{plugin}-{adder}-cid");
            let run = |who: &str, cmd: &str| {
                if who == "ours" {
                    h.ours(plugin, cmd, &cid, &ns.path(), &conf)
                } else {
                    h.reference(plugin, cmd, &cid, &ns.path(), &conf)
                }
            };
            let r = run(adder, "ADD");
            r.ok();
            let ip = addr_of(&r.json(), true);
            ping(&h.ns.name, &ip, 10);
            assert!(
                h.nat().contains(&format!(":{} ", chain_name(&net, &cid))),
                "{adder} {plugin}: chain named as the reference names it\n{}",
                h.nat()
            );
            run(deleter, "DEL").ok();
            assert!(
                h.veths().is_empty(),
                "{plugin} {adder}->{deleter}: {:?}",
                h.veths()
            );
            assert!(
                !h.nat().contains("CNI-"),
                "{plugin} {adder}->{deleter}: {}",
                h.nat()
            );
            assert!(
                h.allocations(&net).is_empty(),
                "{plugin} {adder}->{deleter}: {:?}",
                h.allocations(&net)
            );
        }
    }
}

fn att(net: &str, cid: &str) -> Attachment {
    Attachment {
        network: net.into(),
        container_id: cid.into(),
        ifname: "eth0".into(),
    }
}

#[test]
fn bridge_macspoofchk_drops_spoofed_frames_passes_legit_ones_and_del_cleans_up() {
    let h = Host::new("spoof");
    let (a, b) = (Netns::new("spa"), Netns::new("spb"));
    let conf = bridge_conf(
        "1.0.0",
        "spoofnet",
        &h.data_dir(),
        json!({"macspoofchk": true}),
    );
    let ra = h.ours("bridge", "ADD", "sp-a", &a.path(), &conf);
    ra.ok();
    let ra = ra.json();
    let rb = h.ours("bridge", "ADD", "sp-b", &b.path(), &conf);
    rb.ok();
    let b4 = addr_of(&rb.json(), true);
    let b4 = b4.as_str();
    let veth = ra["interfaces"][1]["name"].as_str().expect("veth");
    let mac = ra["interfaces"][2]["mac"].as_str().expect("mac");

    // The reference's layout, names and comments.
    let nft = h.nft();
    for want in [
        "table bridge nat {".to_string(),
        "type filter hook prerouting priority dstnat; policy accept;".to_string(),
        format!("iifname \"{veth}\" jump cni-br-iface-sp-a-eth0 comment \"macspoofchk-sp-a-eth0\""),
        "jump cni-br-iface-sp-a-eth0-mac comment \"macspoofchk-sp-a-eth0\"".to_string(),
        format!("ether saddr {mac} return comment \"macspoofchk-sp-a-eth0\""),
        "drop comment \"macspoofchk-sp-a-eth0\"".to_string(),
        "cni-br-iface-sp-b-eth0".to_string(),
    ] {
        assert!(nft.contains(&want), "missing {want:?} in\n{nft}");
    }

    ping(&a.name, b4, 10);
    // A spoofed source MAC: every frame from the pod is dropped at the bridge.
    a.exec("ip link set eth0 address 02:de:ad:be:ef:01");
    a.exec("ip neigh flush dev eth0");
    for _ in 0..3 {
        assert!(
            !ping_once(&a.name, b4),
            "spoofed frames must be dropped\n{}",
            h.nft()
        );
    }
    let counters =
        h.ns.exec("nft list chain bridge nat cni-br-iface-sp-a-eth0-mac");
    assert!(counters.contains("drop"), "{counters}");
    // Back to its own MAC: legitimate traffic passes again.
    a.exec(&format!("ip link set eth0 address {mac}"));
    ping(&a.name, b4, 10);

    // CHECK verifies the rules; it fails once they are gone.
    let mut chk: Value = serde_json::from_str(&conf).expect("conf");
    chk["prevResult"] = ra.clone();
    h.ours("bridge", "CHECK", "sp-a", &a.path(), &chk.to_string())
        .ok();
    h.ns.exec("nft flush chain bridge nat cni-br-iface-sp-a-eth0-mac");
    let e = h
        .ours("bridge", "CHECK", "sp-a", &a.path(), &chk.to_string())
        .err(999);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("spoof check"),
        "{e}"
    );

    // DEL with the netns present, then with it gone: no chain or rule left.
    h.ours("bridge", "DEL", "sp-a", &a.path(), &conf).ok();
    let bpath = b.path();
    drop(b);
    h.ours("bridge", "DEL", "sp-b", &bpath, &conf).ok();
    h.ours("bridge", "DEL", "sp-b", "", &conf).ok();
    let nft = h.nft();
    assert!(
        !nft.contains("cni-br-iface") && !nft.contains("macspoofchk"),
        "{nft}"
    );
    h.wait_no_veths();

    // A failed ADD takes its spoof check with it.
    h.ns.exec("ip addr flush dev cni0");
    h.ns.exec("ip addr add 10.99.0.1/24 dev cni0");
    let c = Netns::new("spc");
    h.ours("bridge", "ADD", "sp-c", &c.path(), &conf).err(999);
    let nft = h.nft();
    assert!(!nft.contains("cni-br-iface-sp-c"), "{nft}");
    assert!(h.veths().is_empty(), "{:?}", h.veths());
}

#[test]
fn ip_masq_backend_nftables_for_bridge_and_ptp() {
    let h = Host::new("nftmasq");
    for plugin in ["bridge", "ptp"] {
        let net = format!("{plugin}-nft");
        let mut conf: Value = serde_json::from_str(&match plugin {
            "bridge" => bridge_conf("1.0.0", &net, &h.data_dir(), json!({})),
            _ => ptp_conf("1.0.0", &net, &h.data_dir(), "host-local"),
        })
        .expect("conf");
        conf["ipMasqBackend"] = json!("nftables");
        let conf = conf.to_string();
        let ns = Netns::new("nfm");
        let cid = format!("{plugin}-nft-cid");
        let r = h.ours(plugin, "ADD", &cid, &ns.path(), &conf);
        r.ok();
        let r = r.json();
        let (ip4, ip6) = (addr_of(&r, true), addr_of(&r, false));
        let a = att(&net, &cid);
        let c = a.masq_comment().expect("comment");
        let nft = h.nft();
        let subnet4 = if plugin == "bridge" {
            "10.77.0.0/24"
        } else {
            "10.88.0.0/24"
        };
        for want in [
            "table inet cni_plugins_masquerade {".to_string(),
            "comment \"Masquerading for plugins from github.com/containernetworking/plugins\""
                .to_string(),
            "type nat hook postrouting priority srcnat; policy accept;".to_string(),
            "ip daddr 224.0.0.0/4 return".to_string(),
            "ip6 daddr ff00::/8 return".to_string(),
            "goto masq_checks".to_string(),
            format!("ip saddr {ip4} ip daddr != {subnet4} masquerade comment \"{c}\""),
            format!("ip6 saddr {ip6} ip6 daddr != "),
        ] {
            assert!(nft.contains(&want), "{plugin}: missing {want:?} in\n{nft}");
        }
        assert!(
            c.starts_with(&a.masq_hash())
                && c.contains(&format!("net: {net}, if: eth0, id: {cid}"))
        );
        assert!(
            !h.nat().contains(&chain_name(&net, &cid)),
            "{plugin}: no iptables chain with the nftables backend\n{}",
            h.nat()
        );
        ping(&h.ns.name, &ip4, 10);
        let mut chk: Value = serde_json::from_str(&conf).expect("conf");
        chk["prevResult"] = r.clone();
        h.ours(plugin, "CHECK", &cid, &ns.path(), &chk.to_string())
            .ok();
        h.ours(plugin, "DEL", &cid, &ns.path(), &conf).ok();
        let nft = h.nft();
        assert!(!nft.contains(&a.masq_hash()), "{plugin}: rules left\n{nft}");

        // ADD with iptables, DEL configured for nftables: both backends go.
        let ipt = conf.replace("\"nftables\"", "\"iptables\"");
        h.ours(plugin, "ADD", &cid, &ns.path(), &ipt).ok();
        assert!(h.nat().contains(&chain_name(&net, &cid)));
        h.ours(plugin, "DEL", &cid, &ns.path(), &conf).ok();
        assert!(!h.nat().contains("CNI-"), "{plugin}: {}", h.nat());
        assert!(h.allocations(&net).is_empty());
    }
    h.wait_no_veths();
}

#[test]
fn enabledad_keeps_dad_and_add_returns_with_settled_addresses() {
    let h = Host::new("dad");
    for (dad, accept) in [(true, "1"), (false, "0")] {
        let net = format!("dad-{dad}");
        let conf = bridge_conf("1.0.0", &net, &h.data_dir(), json!({"enabledad": dad}));
        let ns = Netns::new("dad");
        h.ours("bridge", "ADD", "dad-1", &ns.path(), &conf).ok();
        assert_eq!(
            ns.exec("cat /proc/sys/net/ipv6/conf/eth0/accept_dad")
                .trim(),
            accept
        );
        let addrs = ns.exec("ip -6 addr show dev eth0");
        assert!(addrs.contains("fd77::"), "{addrs}");
        assert!(!addrs.contains("tentative"), "enabledad={dad}: {addrs}");
        h.ours("bridge", "DEL", "dad-1", &ns.path(), &conf).ok();
    }
}

/// Another node on the bridge already holds the pod's IPv6 address: the
/// kernel marks it DADFAILED, and the ADD fails at once as upstream's
/// (since v1.7.0; the reference 1.1.1 waited 10 s and succeeded with an
/// unusable address), naming the address, and undoes itself: no pod veth,
/// no allocation. Once the other node lets go, the same ADD succeeds.
#[test]
fn a_duplicate_ipv6_address_fails_the_add_and_leaves_nothing() {
    let h = Host::new("dadfail");
    let conf = bridge_conf(
        "1.0.0",
        "dadfail",
        &h.data_dir(),
        json!({"enabledad": true, "ipMasq": false,
               "ipam": {"ranges": [[{"subnet": "fd78::/64", "rangeStart": "fd78::10", "rangeEnd": "fd78::10"}]],
                        "routes": [{"dst": "::/0"}]}}),
    );
    // The bridge and an intruder on it, holding fd78::10 already.
    h.ns.exec("ip link add cni0 type bridge");
    h.ns.exec("ip link set cni0 up");
    let intruder = Netns::new("dadint");
    h.ns.exec(&format!(
        "ip link add dadint type veth peer name eth9 netns {}",
        intruder.name
    ));
    h.ns.exec("ip link set dadint master cni0 up");
    intruder.exec("ip link set eth9 up");
    intruder.exec("ip addr add fd78::10/64 dev eth9 nodad");
    let pod = Netns::new("dadpod");
    let started = Instant::now();
    let e = h
        .ours("bridge", "ADD", "dup-1", &pod.path(), &conf)
        .err(999);
    assert_eq!(
        e["msg"].as_str().unwrap_or(""),
        "failed to settle addresses for \"eth0\": link eth0 has address fd78::10 in DADFAILED state",
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a failed DAD is reported without waiting out the timeout: {:?}",
        started.elapsed()
    );
    assert!(!pod.exec("ip -o link").contains("eth0"), "pod veth left");
    assert_eq!(h.veths(), ["dadint"], "only the intruder's veth stays");
    assert!(
        h.allocations("dadfail").is_empty(),
        "{:?}",
        h.allocations("dadfail")
    );
    intruder.exec("ip addr del fd78::10/64 dev eth9");
    let r = h.ours("bridge", "ADD", "dup-2", &pod.path(), &conf);
    r.ok();
    let result: Value = serde_json::from_str(&r.stdout).expect("ADD result");
    assert_eq!(addr_of(&result, false), "fd78::10");
    let addrs = pod.exec("ip -6 addr show dev eth0");
    assert!(
        addrs.contains("fd78::10/64") && !addrs.contains("tentative"),
        "{addrs}"
    );
    h.ours("bridge", "DEL", "dup-2", &pod.path(), &conf).ok();
}

/// ptp's routes are upstream's, kernel line for kernel line, next to the
/// reference's in a node of its own: in the pod `gw/32 scope link src <ip>`
/// and `subnet via gw src <ip>`, on the node `<ip> dev <veth> scope host`;
/// and two IPAM routes to one destination both go in (upstream's
/// `RouteAddEcmp`), where an exclusive add refused the second.
#[test]
fn ptp_routes_match_the_reference_with_src_scope_and_ecmp() {
    let conf = |data: &Path| {
        json!({
            "cniVersion": "1.0.0", "name": "ptproutes", "type": "ptp",
            "ipam": {"type": "host-local", "dataDir": data.display().to_string(),
                     "ranges": [[{"subnet": "10.89.0.0/24"}], [{"subnet": "fd89::/64"}]],
                     "routes": [{"dst": "10.200.0.0/16", "gw": "10.89.0.1"},
                                {"dst": "10.200.0.0/16", "gw": "10.89.0.9"},
                                {"dst": "fd99::/64", "gw": "fd89::1"},
                                {"dst": "fd99::/64", "gw": "fd89::9"}]},
        })
        .to_string()
    };
    let routes = |h: &Host, pod: &Netns| -> Vec<String> {
        let veth = h.veths().join(",");
        let mut lines: Vec<String> = [
            pod.exec("ip -4 route show"),
            pod.exec("ip -6 route show"),
            h.ns.exec("ip -4 route show"),
            h.ns.exec("ip -6 route show"),
        ]
        .concat()
        .lines()
        .map(|l| l.replace(&veth, "VETH").trim().to_string())
        .filter(|l| !l.starts_with("fe80::") && !l.starts_with("multicast"))
        .collect();
        lines.sort();
        lines
    };
    let (ours, reference) = (Host::new("ptprt"), Host::new("ptprtref"));
    let (pa, pb) = (Netns::new("ptprta"), Netns::new("ptprtb"));
    ours.ours("ptp", "ADD", "rt-1", &pa.path(), &conf(&ours.data_dir()))
        .ok();
    reference
        .reference(
            "ptp",
            "ADD",
            "rt-1",
            &pb.path(),
            &conf(&reference.data_dir()),
        )
        .ok();
    let (got, want) = (routes(&ours, &pa), routes(&reference, &pb));
    assert_eq!(got, want, "ours (left) and the reference's (right)");
    for expected in [
        "10.89.0.1 dev eth0 scope link src 10.89.0.2",
        "10.89.0.0/24 via 10.89.0.1 dev eth0 src 10.89.0.2",
        "10.89.0.2 dev VETH scope host",
    ] {
        assert!(
            got.iter().any(|l| l == expected),
            "{expected:?} in {got:#?}"
        );
    }
    assert_eq!(
        got.iter()
            .filter(|l| l.starts_with("10.200.0.0/16 via"))
            .count(),
        2,
        "both IPv4 routes to one destination: {got:#?}"
    );
    ours.ours("ptp", "DEL", "rt-1", &pa.path(), &conf(&ours.data_dir()))
        .ok();
    reference
        .reference(
            "ptp",
            "DEL",
            "rt-1",
            &pb.path(),
            &conf(&reference.data_dir()),
        )
        .ok();
}

/// macspoofchk between ours and Debian's reference bridge (1.1.1, which
/// knows macspoofchk but not ipMasqBackend): ADD by one, DEL by the other.
#[test]
fn macspoofchk_interop_with_the_reference_bridge() {
    let h = Host::new("spoofiop");
    for (adder, deleter) in [("reference", "ours"), ("ours", "reference")] {
        let net = format!("spoof-{adder}");
        let conf = bridge_conf("0.4.0", &net, &h.data_dir(), json!({"macspoofchk": true}));
        let ns = Netns::new("spi");
        let cid = format!("spoof-{adder}-cid");
        let run = |who: &str, cmd: &str| {
            if who == "ours" {
                h.ours("bridge", cmd, &cid, &ns.path(), &conf)
            } else {
                h.reference("bridge", cmd, &cid, &ns.path(), &conf)
            }
        };
        let r = run(adder, "ADD");
        r.ok();
        let r = r.json();
        let veth = r["interfaces"][1]["name"].as_str().expect("veth");
        let nft = h.nft();
        assert!(
            nft.contains(&format!(
                "iifname \"{veth}\" jump cni-br-iface-{cid}-eth0 comment \"macspoofchk-{cid}-eth0\""
            )),
            "{adder}: same layout\n{nft}"
        );
        ping(&h.ns.name, &addr_of(&r, true), 10);
        run(deleter, "DEL").ok();
        let nft = h.nft();
        assert!(
            !nft.contains("cni-br-iface") && !nft.contains("macspoofchk"),
            "{adder}->{deleter}: residue\n{nft}"
        );
        assert!(h.veths().is_empty(), "{adder}->{deleter}: {:?}", h.veths());
        assert!(!h.nat().contains("CNI-"), "{adder}->{deleter}: {}", h.nat());
        assert!(h.allocations(&net).is_empty());
    }
}

/// The node's network takes only what the attachment's IPAM result derives
/// (#22 item 2): routes stealing the node's egress, an address that is no
/// gateway and masquerade for everything are refused, and what the call
/// did before (bridge, gateway address, allocation) is undone. And one call
/// cannot create more kernel objects than its quota (#22 item 5, settable
/// as `wasmCni.maxObjects`): refused, and what it made is undone.
#[test]
fn host_side_writes_are_narrowed_undone_and_bounded() {
    let h = Host::with_fixture("hijack");
    let a = Netns::new("hij");
    let routes_before = h.ns.exec("ip route show");
    let nat_before = h.nat();
    let ipam = json!({"type": "host-local", "subnet": "10.77.0.0/24",
        "dataDir": h.data_dir()});
    for (abuse, refused) in [
        (
            "route-hijack",
            "host route 0.0.0.0/1 is not this attachment's",
        ),
        (
            "foreign-address",
            "host address 192.0.2.1/24 is not this attachment's",
        ),
        (
            "masquerade-all",
            "masquerade for 0.0.0.0/0 is not this attachment's",
        ),
    ] {
        let conf = json!({"cniVersion": "1.0.0", "name": "hijack", "type": "hostnet-abuse",
            "abuse": abuse, "bridge": "hjbr0", "ipam": ipam})
        .to_string();
        let e = h
            .ours("hostnet-abuse", "ADD", "hj", &a.path(), &conf)
            .err(7);
        assert_eq!(e["msg"], refused, "{abuse}: {e}");
        assert!(
            e["details"].as_str().unwrap_or("").contains("(10.77.0."),
            "{abuse}: {e}"
        );
        assert_eq!(h.ns.exec("ip route show"), routes_before, "{abuse}");
        let addrs = h.ns.exec("ip -o addr show");
        assert!(
            !addrs.contains("10.77.0.1") && !addrs.contains("192.0.2.1"),
            "{abuse}: {addrs}"
        );
        assert!(h.allocations("hijack").is_empty(), "{abuse}");
        assert_eq!(h.nat(), nat_before, "{abuse}");
    }

    for (quota, extra) in [(4096, json!({})), (50, json!({"maxObjects": 50}))] {
        let conf = json!({"cniVersion": "1.0.0", "name": "flood", "type": "hostnet-abuse",
            "abuse": "flood", "target": "flv0", "wasmCni": extra})
        .to_string();
        let e = h
            .ours("hostnet-abuse", "ADD", "fl", &a.path(), &conf)
            .err(7);
        assert!(
            e["msg"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("more than {quota} kernel objects")),
            "{e}"
        );
        assert!(!h.veths().contains(&"flv0".to_string()), "{:?}", h.veths());
        assert!(!a.exec("ip -o addr show").contains("10.100."));
    }
    // the node's forwarding: never turned off, and back as it was after
    // a failed ADD that turned it on
    h.ns.exec("sysctl -qw net.ipv4.ip_forward=0");
    let conf = json!({"cniVersion": "1.0.0", "name": "fwd", "type": "hostnet-abuse",
        "abuse": "forward-then-fail"})
    .to_string();
    h.ours("hostnet-abuse", "ADD", "fw", &a.path(), &conf)
        .err(999);
    assert_eq!(h.ns.exec("sysctl -n net.ipv4.ip_forward").trim(), "0");
    h.ns.exec("sysctl -qw net.ipv4.ip_forward=1");
    let conf = json!({"cniVersion": "1.0.0", "name": "fwd", "type": "hostnet-abuse",
        "abuse": "sysctl-value", "target": "net/ipv4/ip_forward"})
    .to_string();
    let e = h
        .ours("hostnet-abuse", "ADD", "fw", &a.path(), &conf)
        .err(7);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("only be set to 1"),
        "{e}"
    );
    assert_eq!(h.ns.exec("sysctl -n net.ipv4.ip_forward").trim(), "1");
    // the node's bridge: gateway address, MAC and state restored
    h.ns.exec("ip link add tpbr0 type bridge");
    h.ns.exec("ip link set tpbr0 address 02:11:22:33:44:55 up");
    h.ns.exec("ip addr add 10.123.0.1/24 dev tpbr0");
    let conf = json!({"cniVersion": "1.0.0", "name": "tamper", "type": "hostnet-abuse",
        "abuse": "bridge-tamper-then-fail", "bridge": "tpbr0"})
    .to_string();
    h.ours("hostnet-abuse", "ADD", "tp", &a.path(), &conf)
        .err(999);
    let br = h.ns.exec("ip -o link show tpbr0");
    assert!(
        br.contains("02:11:22:33:44:55") && br.contains("UP"),
        "{br}"
    );
    assert!(h
        .ns
        .exec("ip -o addr show dev tpbr0")
        .contains("10.123.0.1/24"));

    // a legitimate pod on the same node, after all of it: ADD, traffic
    // to its gateway, DEL, nothing left
    let conf = bridge_conf("1.0.0", "legit", &h.data_dir(), json!({}));
    let r = h
        .ours("bridge", "ADD", "legit", &a.path(), &conf)
        .ok()
        .json();
    assert_eq!(r["ips"].as_array().map(Vec::len), Some(2), "{r}");
    ping(&a.name, "10.77.0.1", 3);
    h.ours("bridge", "DEL", "legit", &a.path(), &conf).ok();
    assert!(h.allocations("legit").is_empty());
    assert!(!h.nat().contains("CNI-"), "{}", h.nat());
}
