//! GC and STATUS of a whole conflist (issue #21 items 1 and 2), on the real
//! kernel with real traffic. Needs root.
//!
//! A throwaway "node" netns holds the bridge, the iptables rules and the
//! plugins' runs (`ip netns exec`); pods are throwaway netns. GC is driven
//! the two ways runtimes do: `wasm-cni exec gc` (its valid list is every
//! cached ADD result of the network) and libcni's way (each plugin exec'd
//! with CNI_COMMAND=GC, no container id, netns or ifname, and the valid
//! list injected into its configuration under both keys).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni::kernel::masq::chain_name;
use wasm_cni_tests::*;

/// A node netns with a scratch install, running `wasm-cni exec` there.
struct Node {
    ns: Netns,
    install: Install,
    /// `wasm-cni exec`'s result cache (the runtime's list of attachments)
    results: TempDir,
}

impl Node {
    fn new(tag: &str) -> Node {
        let install = Install::new(tag, &[]);
        let ns = Netns::new(tag);
        ns.exec("ip link set lo up");
        Node {
            ns,
            install,
            results: TempDir::new(&format!("{tag}-results")),
        }
    }

    fn bin(&self) -> PathBuf {
        self.install.bin_dir()
    }

    fn command(&self, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns.name]).arg(prog);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("WASM_CNI_CACHE_DIR", self.install.cache_dir())
            .env("WASM_CNI_LOG_FILE", self.install.log_file());
        c
    }

    /// `wasm-cni exec <verb> --conflist <file> …` in the node.
    fn exec(
        &self,
        verb: &str,
        conflist: &Path,
        pod: Option<(&str, &Netns)>,
        caps: &Value,
    ) -> Output {
        let mut c = self.command(&self.bin().join("wasm-cni"));
        c.args(["exec", verb, "--conflist"])
            .arg(conflist)
            .arg("--bin-dir")
            .arg(self.bin())
            .arg("--cache-dir")
            .arg(self.results.path())
            .arg("--capability-args")
            .arg(caps.to_string());
        if let Some((cid, ns)) = pod {
            c.args(["--container-id", cid, "--netns", &ns.path()]);
        }
        c.output().expect("run wasm-cni exec")
    }

    #[track_caller]
    fn exec_ok(
        &self,
        verb: &str,
        conflist: &Path,
        pod: Option<(&str, &Netns)>,
        caps: &Value,
    ) -> String {
        let out = self.exec(verb, conflist, pod, caps);
        assert!(
            out.status.success(),
            "wasm-cni exec {verb} failed: {}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.install.log_file()).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One plugin exec'd as libcni's GCNetworkList does it.
    fn libcni_gc(&self, list: &Value, valid: &Value) -> Vec<PluginRun> {
        let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
        plugins
            .iter()
            .map(|p| {
                let mut conf = p.clone();
                conf["name"] = list["name"].clone();
                conf["cniVersion"] = list["cniVersion"].clone();
                conf["cni.dev/valid-attachments"] = valid.clone();
                conf["cni.dev/attachments"] = valid.clone();
                let t = p["type"].as_str().expect("type");
                let mut c = self.command(&self.bin().join(t));
                c.env("CNI_COMMAND", "GC").env("CNI_PATH", self.bin());
                run(c, &conf.to_string())
            })
            .collect()
    }

    fn nat(&self) -> String {
        let v4 = self.ns.exec("iptables-save -t nat");
        let v6 = self.ns.exec("ip6tables-save -t nat");
        format!("{v4}{v6}")
    }

    fn allocations(&self, net: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.install.data_dir().join(net))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.install.log_file()).unwrap_or_default()
    }
}

fn run(mut c: Command, stdin: &str) -> PluginRun {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut si) = child.stdin.take() {
        use std::io::Write;
        let _ = si.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    PluginRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

const PING: &str = r#"
import os, socket, struct, sys, time
dst = sys.argv[1]
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
body = b'wasm-cni'
c = csum(struct.pack('!BBHHH', 8, 0, 0, ident, 1) + body)
sock.settimeout(1)
sock.sendto(struct.pack('!BBHHH', 8, 0, c, ident, 1) + body, (dst, 0))
end = time.time() + 1
while time.time() < end:
    try: data, _ = sock.recvfrom(2048)
    except socket.timeout: break
    data = data[(data[0] & 15) * 4:]
    if data[0] == 0 and struct.unpack('!H', data[4:6])[0] == ident: sys.exit(0)
sys.exit(1)
"#;

/// IPv4 echo from `ns` to `dst`, answered within `secs`.
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

fn v4_of(result: &Value) -> String {
    result["ips"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find_map(|i| i["address"].as_str().filter(|s| s.contains('.')))
        })
        .and_then(|s| s.split('/').next())
        .map(String::from)
        .unwrap_or_else(|| panic!("no IPv4 address in {result}"))
}

#[derive(Clone, Copy, PartialEq)]
enum Main {
    Bridge,
    Ptp,
}

#[derive(Clone, Copy, PartialEq)]
enum Gc {
    /// `wasm-cni exec gc`
    Exec,
    /// each plugin exec'd with CNI_COMMAND=GC, as libcni does
    Libcni,
}

fn conflist(
    version: &str,
    net: &str,
    main: Main,
    ipam_type: &str,
    data: &Path,
    subnet: &str,
) -> Value {
    let ipam = json!({"type": ipam_type, "dataDir": data.display().to_string(),
        "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]});
    let first = match main {
        Main::Bridge => json!({"type": "bridge", "bridge": format!("br-{net}"), "isGateway": true,
            "ipMasq": true, "ipam": ipam}),
        Main::Ptp => json!({"type": "ptp", "ipMasq": true, "ipam": ipam}),
    };
    json!({"cniVersion": version, "name": net, "plugins": [
        first,
        {"type": "portmap", "capabilities": {"portMappings": true}},
    ]})
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).expect("write conflist");
    p
}

/// Three pods, the third forgotten by the runtime; GC of the conflist.
/// `add_version`: the cniVersion the pods were added with (GC is 1.1.0).
/// `ipam_frees`: whether the IPAM plugin has a GC (the reference 1.1.1
/// host-local has none).
fn three_pods_one_unlisted(
    tag: &str,
    main: Main,
    ipam_type: &str,
    gc: Gc,
    add_version: &str,
    ipam_frees: bool,
    prepare: impl FnOnce(&Node),
) -> Node {
    let node = Node::new(tag);
    prepare(&node);
    let net = format!("{tag}net");
    let subnet = match main {
        Main::Bridge => "10.61.0.0/24",
        Main::Ptp => "10.62.0.0/24",
    };
    let data = node.install.data_dir();
    let add_list = conflist(add_version, &net, main, ipam_type, &data, subnet);
    let gc_list = conflist("1.1.0", &net, main, ipam_type, &data, subnet);
    let add_file = write(node.results.path(), "add.conflist", &add_list);
    let gc_file = write(node.results.path(), "gc.conflist", &gc_list);

    let pods: Vec<(String, Netns)> = ["a", "b", "c"]
        .iter()
        .map(|p| (format!("{tag}-pod-{p}"), Netns::new(&format!("{tag}{p}"))))
        .collect();
    let mut ips = Vec::new();
    for (i, (cid, ns)) in pods.iter().enumerate() {
        let caps = json!({"portMappings": [{"hostPort": 18080 + i, "containerPort": 80, "protocol": "tcp"}]});
        let out = node.exec_ok("add", &add_file, Some((cid, ns)), &caps);
        let r: Value = serde_json::from_str(&out).expect("result");
        ips.push(v4_of(&r));
    }
    let (keep, gone): (Vec<_>, Vec<_>) = pods.iter().partition(|(cid, _)| !cid.ends_with("-c"));
    let gone_cid = &gone[0].0;
    let nat = node.nat();
    assert_eq!(node.allocations(&net).len(), 3);
    for (cid, _) in &pods {
        assert!(
            nat.contains(&chain_name(&net, cid)),
            "no masquerade chain for {cid}:\n{nat}"
        );
        assert!(
            nat.contains(&format!("dnat name: \\\"{net}\\\" id: \\\"{cid}\\\"")),
            "no portmap rules for {cid}:\n{nat}"
        );
    }

    // The runtime forgets the third pod.
    let forgotten = node.results.path().join(format!("{net}-{gone_cid}-eth0"));
    std::fs::remove_file(&forgotten).expect("forget the third pod");
    let valid = json!(keep
        .iter()
        .map(|(cid, _)| json!({"containerID": cid, "ifname": "eth0"}))
        .collect::<Vec<_>>());
    let collect = |node: &Node| match gc {
        Gc::Exec => {
            node.exec_ok("gc", &gc_file, None, &json!({}));
        }
        Gc::Libcni => {
            for r in node.libcni_gc(&gc_list, &valid) {
                r.ok();
                assert!(r.stdout.trim().is_empty(), "GC printed {}", r.stdout);
            }
        }
    };
    collect(&node);

    let nat = node.nat();
    assert!(
        !nat.contains(&chain_name(&net, gone_cid)),
        "masquerade chain of {gone_cid} left:\n{nat}"
    );
    assert!(
        !nat.contains(gone_cid.as_str()),
        "rules of {gone_cid} left:\n{nat}"
    );
    for (cid, _) in &keep {
        assert!(
            nat.contains(&chain_name(&net, cid)),
            "GC removed the chain of {cid}:\n{nat}"
        );
        assert!(
            nat.contains(&format!("dnat name: \\\"{net}\\\" id: \\\"{cid}\\\"")),
            "GC removed the portmap rules of {cid}:\n{nat}"
        );
    }
    let mut kept_ips = vec![ips[0].clone(), ips[1].clone()];
    kept_ips.sort();
    if ipam_frees {
        assert_eq!(
            node.allocations(&net),
            kept_ips,
            "GC must free exactly the unlisted pod's address"
        );
    } else {
        assert_eq!(
            node.allocations(&net).len(),
            3,
            "an IPAM without GC keeps its files"
        );
    }

    // The listed pods keep working: with each other, and with the node.
    ping(&keep[0].1.name, &ips[1], 10);
    ping(&keep[1].1.name, &ips[0], 10);
    ping(&node.ns.name, &ips[0], 10);

    // A second GC changes nothing.
    let (nat_before, alloc_before) = (node.nat(), node.allocations(&net));
    collect(&node);
    assert_eq!(node.allocations(&net), alloc_before);
    // Without comments and chain counters (background traffic moves them).
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&node.nat()),
        strip(&nat_before),
        "a second GC changed the rules"
    );
    ping(&keep[0].1.name, &ips[1], 10);

    for (cid, ns) in &keep {
        node.exec_ok("del", &add_file, Some((cid, ns)), &json!({}));
    }
    node
}

#[test]
fn gc_through_exec_bridge_host_local_portmap() {
    three_pods_one_unlisted(
        "gcbr",
        Main::Bridge,
        "host-local",
        Gc::Exec,
        "1.1.0",
        true,
        |_| {},
    );
}

#[test]
fn gc_libcni_style_bridge_host_local_portmap() {
    three_pods_one_unlisted(
        "gclc",
        Main::Bridge,
        "host-local",
        Gc::Libcni,
        "1.1.0",
        true,
        |_| {},
    );
}

#[test]
fn gc_through_exec_ptp_host_local_portmap() {
    three_pods_one_unlisted(
        "gcptp",
        Main::Ptp,
        "host-local",
        Gc::Exec,
        "1.1.0",
        true,
        |_| {},
    );
}

#[test]
fn gc_libcni_style_ptp_host_local_portmap() {
    three_pods_one_unlisted(
        "gclp",
        Main::Ptp,
        "host-local",
        Gc::Libcni,
        "1.1.0",
        true,
        |_| {},
    );
}

/// An exec'd native IPAM binary (no `<type>.wasm` anywhere on CNI_PATH or
/// next to wasm-cni) that has a GC: it gets CNI_COMMAND=GC and the valid
/// list in its configuration, and frees the unlisted pod.
#[test]
fn gc_reaches_an_execd_ipam_binary() {
    let record = TempDir::new("gcnative-record");
    let log = record.path().join("calls");
    let log2 = log.clone();
    let node = three_pods_one_unlisted(
        "gcnat",
        Main::Bridge,
        "native-ipam",
        Gc::Exec,
        "1.1.0",
        true,
        move |node| {
            // A native plugin that records each call, then does host-local's work.
            let script = format!(
            "#!/bin/sh\necho \"CNI_COMMAND=$CNI_COMMAND\" >> {log}\ntee -a {log} | {bin}/host-local\n",
            log = log2.display(),
            bin = node.bin().display()
        );
            let p = node.bin().join("native-ipam");
            std::fs::write(&p, script).expect("script");
            sh(&format!("chmod 755 {}", p.display()));
            assert!(!node.bin().join("native-ipam.wasm").exists());
        },
    );
    let calls = std::fs::read_to_string(&log).expect("the native IPAM was called");
    let gc_confs: Vec<Value> = calls
        .split("CNI_COMMAND=GC\n")
        .skip(1)
        .map(|s| {
            let json = s.split("CNI_COMMAND=").next().unwrap_or_default();
            serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"))
        })
        .collect();
    assert_eq!(gc_confs.len(), 2, "{calls}");
    let valid = &gc_confs[0]["cni.dev/valid-attachments"];
    let mut cids: Vec<&str> = valid
        .as_array()
        .expect("valid list")
        .iter()
        .filter_map(|a| a["containerID"].as_str())
        .collect();
    cids.sort();
    assert_eq!(cids, ["gcnat-pod-a", "gcnat-pod-b"]);
    drop(node);
}

/// The reference host-local (Debian 1.1.1) as the exec'd IPAM: it predates
/// GC (its VERSION lists nothing from 1.1.0 on, and it answers GC with
/// "unknown CNI_COMMAND"), so its addresses stay, but the conflist's GC
/// still succeeds and the masquerade and portmap rules go. The pods were
/// added with a 1.0.0 list: the reference refuses 1.1.0 configurations.
#[test]
fn gc_with_the_reference_host_local_as_ipam_removes_rules_and_keeps_its_files() {
    let node = three_pods_one_unlisted(
        "gcref",
        Main::Bridge,
        "ref-host-local",
        Gc::Exec,
        "1.0.0",
        false,
        |node| {
            std::os::unix::fs::symlink(
                reference_plugin("host-local"),
                node.bin().join("ref-host-local"),
            )
            .expect("link the reference host-local");
        },
    );
    assert!(node.log().contains("predates GC"), "{}", node.log());
}

/// GC and ADD are serialised by the network's `lock`: a GC started while
/// an ADD holds it (here: the lock held as host-local's ADD holds it)
/// waits, and never runs in the middle of an allocation.
#[test]
fn gc_waits_for_an_add_holding_the_network_lock() {
    let node = Node::new("gclock");
    let net = "gclocknet";
    let data = node.install.data_dir();
    let list = conflist(
        "1.1.0",
        net,
        Main::Bridge,
        "host-local",
        &data,
        "10.63.0.0/24",
    );
    let file = write(node.results.path(), "gc.conflist", &list);
    let pod = Netns::new("gclocka");
    node.exec_ok("add", &file, Some(("gclock-a", &pod)), &json!({}));
    let lock = data.join(net).join("lock");
    assert!(lock.is_file());
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "2"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    node.exec_ok("gc", &file, None, &json!({}));
    let waited = t.elapsed();
    let _ = holder.wait();
    assert!(
        waited >= Duration::from_millis(1400),
        "GC did not wait for the lock: {waited:?}"
    );
    assert_eq!(
        node.allocations(net).len(),
        1,
        "the listed pod keeps its address"
    );
    node.exec_ok("del", &file, Some(("gclock-a", &pod)), &json!({}));
}

/// STATUS through bridge: a full range is still ready (no NotReady node
/// for address exhaustion); an unusable firewall backend is not.
#[test]
fn status_through_bridge_ready_on_a_full_range() {
    let node = Node::new("stfull");
    let net = "stfullnet";
    let data = node.install.data_dir();
    // A /30: the gateway and one pod.
    let list = conflist(
        "1.1.0",
        net,
        Main::Bridge,
        "host-local",
        &data,
        "10.64.0.0/30",
    );
    let file = write(node.results.path(), "st.conflist", &list);
    let a = Netns::new("stfulla");
    let b = Netns::new("stfullb");
    node.exec_ok("add", &file, Some(("stfull-a", &a)), &json!({}));
    let out = node.exec("add", &file, Some(("stfull-b", &b)), &json!({}));
    assert!(!out.status.success(), "the range should be full");
    node.exec_ok("status", &file, None, &json!({}));
    // The same through the plugin binary, as containerd calls it.
    let mut conf = list["plugins"][0].clone();
    conf["name"] = json!(net);
    conf["cniVersion"] = json!("1.1.0");
    let mut c = node.command(&node.bin().join("bridge"));
    c.env("CNI_COMMAND", "STATUS").env("CNI_PATH", node.bin());
    run(c, &conf.to_string()).ok();
    node.exec_ok("del", &file, Some(("stfull-a", &a)), &json!({}));
}

#[test]
fn status_through_bridge_fails_clearly_without_its_firewall_backend() {
    let node = Node::new("stfw");
    let data = node.install.data_dir();
    for (backend, tool) in [("iptables", "iptables"), ("nftables", "nft")] {
        let mut conf = json!({"cniVersion": "1.1.0", "name": "stfwnet", "type": "bridge", "bridge": "br-stfw",
            "isGateway": true, "ipMasq": true, "ipMasqBackend": backend,
            "ipam": {"type": "host-local", "dataDir": data.display().to_string(), "subnet": "10.65.0.0/24"}});
        let status = |hide: bool, conf: &Value| {
            // The host looks for its tools on PATH and in the sbin/bin dirs:
            // hiding them takes a mount namespace with /usr/sbin emptied.
            let hide_cmd = if hide {
                "mount -t tmpfs tmpfs /usr/sbin && "
            } else {
                ""
            };
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c"]).arg(format!(
                "{hide_cmd}exec nsenter --net={} {}",
                node.ns.path(),
                node.bin().join("bridge").display()
            ));
            c.env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("CNI_COMMAND", "STATUS")
                .env("CNI_PATH", node.bin())
                .env("WASM_CNI_CACHE_DIR", node.install.cache_dir())
                .env("WASM_CNI_LOG_FILE", node.install.log_file());
            run(c, &conf.to_string())
        };
        status(false, &conf).ok();
        let e = status(true, &conf).err(50);
        let msg = e["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("the {backend} masquerade backend is unusable"))
                && msg.contains(tool),
            "unclear STATUS error: {e}"
        );
        // Without ipMasq the firewall is not needed for ADD: still ready.
        conf["ipMasq"] = json!(false);
        status(true, &conf).ok();
    }
}
