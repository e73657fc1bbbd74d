//! Regression tests for the hardening campaign of issue #15: each bad input
//! a hostile runtime, a careless admin or a crash-prone node produced, and
//! what the binary must do with it. Needs root: every test runs the
//! installed binary inside a throwaway "node" netns, with pods in throwaway
//! netns, and checks the kernel and the files afterwards.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::*;

/// A throwaway node: a netns (lo up) where the plugins run, and a scratch
/// installation.
struct Node {
    ns: Netns,
    install: Install,
}

/// One plugin run: what it printed and how long it took.
struct Run {
    out: PluginRun,
    took: Duration,
}

impl Node {
    fn new(tag: &str) -> Node {
        let install = Install::new(tag, &[]);
        let ns = Netns::new(tag);
        ns.exec("ip link set lo up");
        Node { ns, install }
    }

    fn data_dir(&self) -> PathBuf {
        self.install.data_dir()
    }

    /// Runs `<bin dir>/<plugin>` inside the node netns with the CNI
    /// variables, `extra` environment (raw bytes allowed) and `conf`.
    fn run_env(
        &self,
        plugin: &str,
        cmd: &str,
        cid: &str,
        netns: &str,
        conf: &str,
        extra: &[(OsString, OsString)],
    ) -> Run {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns.name])
            .arg(self.install.bin_dir().join(plugin));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CNI_PATH", self.install.bin_dir())
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("WASM_CNI_CACHE_DIR", self.install.cache_dir())
            .env("WASM_CNI_LOG_FILE", self.install.log_file());
        for (k, v) in extra {
            c.env(k, v);
        }
        let t = Instant::now();
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
        Run {
            took: t.elapsed(),
            out: PluginRun {
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                code: out.status.code().unwrap_or(-1),
            },
        }
    }

    fn run(
        &self,
        plugin: &str,
        cmd: &str,
        cid: &str,
        netns: &str,
        conf: &str,
        extra: &[(&str, &str)],
    ) -> PluginRun {
        let extra: Vec<(OsString, OsString)> = extra
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        self.run_env(plugin, cmd, cid, netns, conf, &extra).out
    }

    /// Files in the network's host-local directory other than the lock and
    /// the round-robin bookkeeping: the allocations.
    fn allocations(&self, net: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(self.data_dir().join(net))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip."))
                    .map(|n| {
                        let content = std::fs::read_to_string(self.data_dir().join(net).join(&n))
                            .unwrap_or_default();
                        (n, content)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn links(&self) -> String {
        self.ns.exec("ip -o link show")
    }

    fn nat_rules(&self) -> String {
        self.ns.exec("iptables-save -t nat")
    }
}

/// IPAM plugins need a CNI_NETNS but never open it.
const NO_NETNS: &str = "/var/run/netns/wcni-none";

fn host_local_conf(node: &Node, net: &str, subnet: &str) -> String {
    json!({
        "cniVersion": "1.0.0", "name": net, "type": "host-local",
        "ipam": {"type": "host-local", "subnet": subnet,
                 "dataDir": node.data_dir()}
    })
    .to_string()
}

fn bridge_conf(node: &Node, net: &str, br: &str, subnet: &str, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": net, "type": "bridge", "bridge": br,
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": subnet,
                 "dataDir": node.data_dir()}
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c.to_string()
}

/// Item 1: an environment variable that is not UTF-8 (any runtime may pass
/// one through) neither aborts ADD nor DEL.
#[test]
fn non_utf8_environment_is_not_a_crash() {
    let node = Node::new("h-utf8");
    let pod = Netns::new("h-utf8-pod");
    let conf = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}).to_string();
    let bad = [(OsString::from("X"), OsString::from_vec(vec![0xff, 0xfe]))];
    for cmd in ["ADD", "CHECK", "DEL"] {
        let r = node.run_env("loopback", cmd, "utf8", &pod.path(), &conf, &bad);
        assert_eq!(r.out.code, 0, "{cmd}: {} {}", r.out.stdout, r.out.stderr);
    }
    // A CNI variable that is not UTF-8 is refused with a clear error.
    let bad_id = [(
        OsString::from("CNI_CONTAINERID"),
        OsString::from_vec(b"ab\xffcd".to_vec()),
    )];
    let r = node.run_env("loopback", "ADD", "x", &pod.path(), &conf, &bad_id);
    let e = r.out.err(4);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("CNI_CONTAINERID"),
        "{e}"
    );
}

/// Item 2: kill -9 at any point of a host-local ADD leaves either nothing
/// or a whole allocation that DEL releases: never an empty file.
#[test]
fn killed_adds_leave_no_empty_allocation() {
    let node = Node::new("h-kill");
    let conf = host_local_conf(&node, "killnet", "10.77.0.0/24");
    let bin = node.install.bin_dir().join("host-local");
    let mut kills = 0;
    for i in 0..60u64 {
        let cid = format!("kill{i}");
        let mut child = Command::new(&bin)
            .env_clear()
            .env("CNI_PATH", node.install.bin_dir())
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", &cid)
            .env("CNI_NETNS", "/nonexistent")
            .env("CNI_IFNAME", "eth0")
            .env("WASM_CNI_CACHE_DIR", node.install.cache_dir())
            .env("WASM_CNI_LOG_FILE", node.install.log_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        if let Some(mut si) = child.stdin.take() {
            use std::io::Write;
            let _ = si.write_all(conf.as_bytes());
        }
        // Spread over a whole ADD (a few ms), in 100 µs steps.
        std::thread::sleep(Duration::from_micros((i * 137) % 6000));
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            kills += 1;
        }
        let _ = child.wait();
        for (name, content) in node.allocations("killnet") {
            assert!(
                !content.is_empty(),
                "empty allocation file {name} after kill {i}"
            );
        }
        node.run("host-local", "DEL", &cid, "", &conf, &[]).ok();
        assert!(
            node.allocations("killnet").is_empty(),
            "DEL of {cid} left {:?}",
            node.allocations("killnet")
        );
    }
    assert!(kills >= 20, "only {kills} of 60 runs were killed mid-call");
    eprintln!("killed_adds_leave_no_empty_allocation: {kills} kills, 0 leaks");
}

/// Item 3: an ADD that runs out of time gives its IPAM allocation back,
/// through bridge and through ptp. Deadlines from 1 to 50 ms cut ADDs at
/// every step; host-local's `last_reserved_ip.0` moving shows which failed
/// ADDs had already allocated, and at least one per plugin must have (else
/// the test would not reach the undo it is about).
#[test]
fn a_deadline_kill_releases_the_allocation() {
    let node = Node::new("h-deadline");
    for plugin in ["bridge", "ptp"] {
        let net = format!("dl{plugin}");
        let last = node.data_dir().join(&net).join("last_reserved_ip.0");
        let (mut failed, mut allocated_then_failed) = (0, 0);
        for (i, ms) in [1u64, 2, 3, 5, 8, 12, 15, 18, 22, 25, 30, 35, 40, 50]
            .iter()
            .cycle()
            .take(42)
            .enumerate()
        {
            let pod = Netns::new("h-deadline-pod");
            let cid = format!("dl{i}");
            let conf = match plugin {
                "bridge" => bridge_conf(
                    &node,
                    &net,
                    "dlbr0",
                    "10.78.0.0/24",
                    json!({"wasmCni": {"timeoutMs": ms}}),
                ),
                _ => json!({
                    "cniVersion": "1.0.0", "name": net, "type": "ptp", "ipMasq": true,
                    "ipam": {"type": "host-local", "subnet": "10.77.0.0/24",
                             "dataDir": node.data_dir()},
                    "wasmCni": {"timeoutMs": ms}
                })
                .to_string(),
            };
            let before = std::fs::read_to_string(&last).ok();
            let r = node.run(plugin, "ADD", &cid, &pod.path(), &conf, &[]);
            if r.code != 0 {
                failed += 1;
                if std::fs::read_to_string(&last).ok() != before {
                    allocated_then_failed += 1;
                }
                assert!(
                    node.allocations(&net).is_empty(),
                    "failed {plugin} ADD ({ms} ms) kept {:?}: {}",
                    node.allocations(&net),
                    r.stdout
                );
                assert!(
                    !node.links().contains("veth"),
                    "failed {plugin} ADD left a veth: {}",
                    node.links()
                );
            } else {
                node.run(plugin, "DEL", &cid, &pod.path(), &conf, &[]).ok();
            }
        }
        assert!(
            failed >= 5,
            "only {failed} {plugin} ADDs hit their deadline"
        );
        assert!(
            allocated_then_failed >= 1,
            "no failed {plugin} ADD had allocated ({failed} failed): the undo was not exercised"
        );
        eprintln!(
            "a_deadline_kill_releases_the_allocation: {plugin}: {failed} deadline failures, {allocated_then_failed} after allocating, 0 leaks"
        );
    }
}

/// Item 4: portmap refuses a prevResult it cannot pass on before it maps
/// anything, and a failed ADD leaves no rule.
#[test]
fn portmap_refuses_a_bad_prev_result_before_mapping() {
    let node = Node::new("h-portmap");
    let before = node.nat_rules();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "pmnet", "type": "portmap",
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
            "ips": [{"address": "10.79.0.5/24", "interface": 0},
                    {"address": "10.79.0.6/24", "interface": 3}]}
    })
    .to_string();
    let r = node.run("portmap", "ADD", "pm1", "/var/run/netns/x", &conf, &[]);
    let e = r.err(7);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("ips[1].interface"),
        "{e}"
    );
    assert_eq!(
        node.nat_rules().matches("-A ").count(),
        before.matches("-A ").count()
    );
    assert!(
        !node.nat_rules().contains("CNI-DN-"),
        "{}",
        node.nat_rules()
    );
}

/// Item 5: a container id too long for one page of the state read, or for
/// an iptables comment, is handled like any other.
#[test]
fn long_container_ids() {
    let node = Node::new("h-longid");
    let conf = host_local_conf(&node, "longnet", "10.80.0.0/24");
    let id = "a".repeat(5000);
    node.run("host-local", "ADD", &id, NO_NETNS, &conf, &[])
        .ok();
    assert_eq!(node.allocations("longnet").len(), 1);
    node.run("host-local", "CHECK", &id, NO_NETNS, &conf, &[])
        .ok();
    node.run("host-local", "DEL", &id, "", &conf, &[]).ok();
    assert!(
        node.allocations("longnet").is_empty(),
        "DEL of a long id left its address"
    );

    let pod = Netns::new("h-longid-pod");
    let conf = bridge_conf(&node, "longbr", "lgbr0", "10.81.0.0/24", json!({}));
    let id = "b".repeat(3000);
    node.run("bridge", "ADD", &id, &pod.path(), &conf, &[]).ok();
    let rules = node.nat_rules();
    assert!(rules.contains("-j MASQUERADE"), "{rules}");
    // The comment is cut where iptables-nft cuts the reference's.
    assert!(
        rules.contains(&format!("id: \\\"{}", "b".repeat(200))),
        "{rules}"
    );
    node.run("bridge", "DEL", &id, &pod.path(), &conf, &[]).ok();
    assert!(
        !node.nat_rules().contains("MASQUERADE"),
        "{}",
        node.nat_rules()
    );
    assert!(node.allocations("longbr").is_empty());
}

/// Item 6: static IPAM writes nothing (the reference writes nothing), so a
/// long network name or an unwritable data dir do not matter to it.
#[test]
fn static_ipam_writes_no_state() {
    let node = Node::new("h-static");
    let name = "s".repeat(300);
    let conf = json!({
        "cniVersion": "1.0.0", "name": name, "type": "static",
        "ipam": {"type": "static", "dataDir": node.data_dir(),
                 "addresses": [{"address": "10.82.0.2/24"}]}
    })
    .to_string();
    let r = node.run("static", "ADD", "st1", NO_NETNS, &conf, &[]);
    r.ok();
    assert_eq!(r.json()["ips"][0]["address"], "10.82.0.2/24");
    node.run("static", "DEL", "st1", "", &conf, &[]).ok();
    assert!(
        !node.data_dir().exists(),
        "static created {}",
        node.data_dir().display()
    );
}

/// Item 7: DEL tears down where the reference's does: a read-only data dir
/// with nothing to release, an unusable module cache, a config ADD refuses.
#[test]
fn del_is_as_tolerant_as_the_reference() {
    let node = Node::new("h-tolerant");
    // read-only data dir
    let ro = TempDir::new("h-ro");
    let conf = json!({
        "cniVersion": "1.0.0", "name": "ronet", "type": "host-local",
        "ipam": {"type": "host-local", "subnet": "10.83.0.0/24", "dataDir": ro.path()}
    })
    .to_string();
    sh(&format!("mount -t tmpfs tmpfs {}", ro.path().display()));
    node.run("host-local", "ADD", "ro1", NO_NETNS, &conf, &[])
        .ok();
    node.run("host-local", "DEL", "ro1", "", &conf, &[]).ok();
    sh(&format!("mount -o remount,ro {}", ro.path().display()));
    let r = node.run("host-local", "DEL", "ro2", "", &conf, &[]);
    let _ = Command::new("umount").arg(ro.path()).status();
    r.ok();
    // a data dir that does not exist: nothing to release, nothing created
    let conf_missing = json!({
        "cniVersion": "1.0.0", "name": "nonet", "type": "host-local",
        "ipam": {"type": "host-local", "subnet": "10.83.1.0/24", "dataDir": "/nonexistent/wcni"}
    })
    .to_string();
    node.run("host-local", "DEL", "ro3", "", &conf_missing, &[])
        .ok();
    assert!(!Path::new("/nonexistent/wcni").exists());

    // an unusable module cache: ADD refuses, DEL still tears down
    let pod = Netns::new("h-tolerant-pod");
    let bconf = bridge_conf(&node, "cachenet", "cabr0", "10.84.0.0/24", json!({}));
    node.run("bridge", "ADD", "c1", &pod.path(), &bconf, &[])
        .ok();
    let file = node.install.root.path().join("cache-is-a-file");
    std::fs::write(&file, "x").expect("write");
    let loose = node.install.root.path().join("loose-cache");
    std::fs::create_dir_all(&loose).expect("mkdir");
    sh(&format!("chmod 0775 {}", loose.display()));
    for cache in [
        file.display().to_string(),
        "/proc/x".into(),
        loose.display().to_string(),
    ] {
        let env = [("WASM_CNI_CACHE_DIR", cache.as_str())];
        let r = node.run("bridge", "ADD", "c2", &pod.path(), &bconf, &env);
        let e = r.err(5);
        assert!(e["msg"].as_str().unwrap_or("").contains("cache"), "{e}");
        node.run("bridge", "DEL", "c2", &pod.path(), &bconf, &env)
            .ok();
    }
    let env = [("WASM_CNI_CACHE_DIR", "/proc/x")];
    node.run("bridge", "DEL", "c1", &pod.path(), &bconf, &env)
        .ok();
    assert!(
        node.allocations("cachenet").is_empty(),
        "{:?}",
        node.allocations("cachenet")
    );
    assert!(!node.links().contains("veth"), "{}", node.links());
    assert!(!node.nat_rules().contains("MASQUERADE"));

    // portMappings ADD refuses do not stop DEL
    for bad in [
        json!([{"hostPort": 65536, "containerPort": 80}]),
        json!([{"hostPort": 80, "containerPort": 80, "hostIP": "not-an-ip"}]),
        json!([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]),
    ] {
        let conf = json!({
            "cniVersion": "1.0.0", "name": "pmbad", "type": "portmap",
            "runtimeConfig": {"portMappings": bad}
        })
        .to_string();
        node.run("portmap", "DEL", "pm", "", &conf, &[]).ok();
    }
}

/// Item 8: `wasmCni.logFile` cannot make the root host write through a
/// symlink, create directories, or name a file that is not a log; lines
/// are bounded and cannot be forged.
#[test]
fn log_file_from_a_conflist_is_contained() {
    let node = Node::new("h-log");
    let pod = Netns::new("h-log-pod");
    let dir = TempDir::new("h-logdir");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched").expect("write");
    std::os::unix::fs::symlink(&victim, dir.path().join("link.log")).expect("symlink");
    let conf = |log: &Path| {
        json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback",
               "wasmCni": {"logFile": log}})
        .to_string()
    };
    // a symlink: not followed, the call still works (logs go to stderr)
    node.run(
        "loopback",
        "ADD",
        "l1",
        &pod.path(),
        &conf(&dir.path().join("link.log")),
        &[],
    )
    .ok();
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "untouched");
    // nor a symlinked directory on the way (one the writer could swap)
    std::fs::create_dir(dir.path().join("real")).expect("mkdir");
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("via")).expect("symlink");
    node.run(
        "loopback",
        "ADD",
        "l1b",
        &pod.path(),
        &conf(&dir.path().join("via/x.log")),
        &[],
    )
    .ok();
    assert!(!dir.path().join("real/x.log").exists());
    // a missing directory is not created
    let deep = dir.path().join("new/dir/x.log");
    node.run("loopback", "ADD", "l2", &pod.path(), &conf(&deep), &[])
        .ok();
    assert!(!dir.path().join("new").exists());
    // a path that is not a *.log file is a config error for ADD, not for DEL
    let r = node.run("loopback", "ADD", "l3", &pod.path(), &conf(&victim), &[]);
    let e = r.err(7);
    assert!(e["msg"].as_str().unwrap_or("").contains("logFile"), "{e}");
    node.run("loopback", "DEL", "l3", &pod.path(), &conf(&victim), &[])
        .ok();
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "untouched");
    // a huge, newline-laden value is neither echoed whole nor a forged line
    // (refused before the config is read: it goes to the installation's log)
    let log = node.install.log_file();
    let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let forged =
        format!("{}\nINFO ok container_id=forged", "x".repeat(100 << 10)).replace('=', ":");
    let r = node.run(
        "loopback",
        "ADD",
        "l4",
        &pod.path(),
        &conf(&dir.path().join("w.log")),
        &[("CNI_ARGS", &forged)],
    );
    let e = r.err(4);
    assert!(
        r.stdout.len() < 16 << 10,
        "error of {} bytes",
        r.stdout.len()
    );
    assert!(
        e["details"].as_str().unwrap_or("").contains("bytes cut"),
        "{e}"
    );
    let text = std::fs::read_to_string(&log).expect("log written");
    assert!(
        text.len() as u64 - before < 64 << 10,
        "log grew by {} bytes",
        text.len() as u64 - before
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("INFO ok container_id:forged")),
        "forged line"
    );
    for c in ["l1", "l2"] {
        node.run("loopback", "DEL", c, &pod.path(), &conf(&log), &[])
            .ok();
    }
}

/// Item 9: limits from the environment are validated like the conflist's.
#[test]
fn limits_from_the_environment_are_validated() {
    let node = Node::new("h-limits");
    let pod = Netns::new("h-limits-pod");
    let conf = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}).to_string();
    for (var, val) in [
        ("WASM_CNI_MEMORY_MIB", "17592186044416"),
        ("WASM_CNI_MEMORY_MIB", "0"),
        ("WASM_CNI_MEMORY_MIB", "abc"),
        ("WASM_CNI_MEMORY_MIB", "-1"),
        ("WASM_CNI_TIMEOUT_MS", "0"),
        ("WASM_CNI_TIMEOUT_MS", "99999999999999999999"),
    ] {
        let r = node.run("loopback", "ADD", "lim", &pod.path(), &conf, &[(var, val)]);
        let e = r.err(4);
        assert!(
            e["msg"].as_str().unwrap_or("").contains(var),
            "{var}={val}: {e}"
        );
        // DEL goes on with the default
        node.run("loopback", "DEL", "lim", &pod.path(), &conf, &[(var, val)])
            .ok();
    }
    node.run(
        "loopback",
        "ADD",
        "lim",
        &pod.path(),
        &conf,
        &[("WASM_CNI_MEMORY_MIB", "32")],
    )
    .ok();
}

/// Item 10: a delegated IPAM binary that answers and leaves a background
/// child holding its stdout does not hold the call.
#[test]
fn a_daemonising_ipam_binary_does_not_hold_the_call() {
    let node = Node::new("h-daemon");
    let pod = Netns::new("h-daemon-pod");
    let script = node.install.bin_dir().join("daemon-ipam");
    // The background children's pids, so the test ends exactly those.
    let children = node.install.bin_dir().join("daemon-children");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat >/dev/null\nsleep 20 &\necho $! >> {}\n\
         if [ \"$CNI_COMMAND\" = ADD ]; then\n\
         echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.85.0.7/24\",\"gateway\":\"10.85.0.1\"}}]}}'\n\
         fi\nexit 0\n", children.display()),
    )
    .expect("write script");
    sh(&format!("chmod 0755 {}", script.display()));
    let conf = json!({
        "cniVersion": "1.0.0", "name": "dmnet", "type": "bridge", "bridge": "dmbr0",
        "isGateway": true, "ipam": {"type": "daemon-ipam"}
    })
    .to_string();
    let r = node.run_env("bridge", "ADD", "dm1", &pod.path(), &conf, &[]);
    assert_eq!(r.out.code, 0, "{} {}", r.out.stdout, r.out.stderr);
    assert!(r.took < Duration::from_secs(5), "ADD took {:?}", r.took);
    let r = node.run_env("bridge", "DEL", "dm1", &pod.path(), &conf, &[]);
    assert_eq!(r.out.code, 0, "{}", r.out.stdout);
    assert!(r.took < Duration::from_secs(5), "DEL took {:?}", r.took);
    let pids = std::fs::read_to_string(&children).unwrap_or_default();
    assert_eq!(
        pids.lines().count(),
        2,
        "one background child per call: {pids:?}"
    );
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").arg(pid).status();
    }
}

/// Beyond the reference: a `CNI_NETNS` that is the node's own namespace is
/// refused, so DEL cannot delete the node's interface.
#[test]
fn the_nodes_own_netns_is_refused() {
    let node = Node::new("h-ownns");
    node.ns.exec("ip link add eth0 type veth peer name eth0p");
    let conf = json!({
        "cniVersion": "1.0.0", "name": "own", "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "10.86.0.0/24",
                 "dataDir": node.data_dir()}
    })
    .to_string();
    for cmd in ["ADD", "DEL"] {
        let r = node.run("ptp", cmd, "own1", &node.ns.path(), &conf, &[]);
        let e = r.err(4);
        assert!(e["msg"].as_str().unwrap_or("").contains("CNI_NETNS"), "{e}");
    }
    assert!(node.links().contains("eth0@"), "{}", node.links());
    let lo = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}).to_string();
    let r = node.run("loopback", "ADD", "own2", "/proc/self/ns/net", &lo, &[]);
    r.err(4);
}

/// Beyond the reference: `resolvConf` reads only a bounded regular file off
/// pseudo filesystems, so no process state reaches a DNS result.
#[test]
fn resolv_conf_cannot_read_process_state() {
    let node = Node::new("h-resolv");
    for path in [
        "/proc/self/environ",
        "/sys/kernel/uevent_seqnum",
        "/dev/zero",
    ] {
        let conf = json!({
            "cniVersion": "1.0.0", "name": "rsnet", "type": "host-local",
            "ipam": {"type": "host-local", "subnet": "10.87.0.0/24",
                     "dataDir": node.data_dir(), "resolvConf": path}
        })
        .to_string();
        let r = node.run("host-local", "ADD", "rs1", NO_NETNS, &conf, &[]);
        let e = r.err(7);
        assert!(e["msg"].as_str().unwrap_or("").contains(path), "{e}");
        assert!(
            node.allocations("rsnet").is_empty(),
            "{:?}",
            node.allocations("rsnet")
        );
    }
}

/// A full disk is reported as such (it was "I/O error (os error 29)" when
/// the module wrote through WASI), and leaves no allocation behind.
#[test]
fn a_full_disk_is_named_in_the_error() {
    let node = Node::new("h-full");
    let data = TempDir::new("h-full-data");
    sh(&format!(
        "mount -t tmpfs -o size=8k tmpfs {}",
        data.path().display()
    ));
    std::fs::create_dir(data.path().join("fullnet")).expect("mkdir");
    // fill it (dd stops at ENOSPC)
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k", "count=64"])
        .arg(format!("of={}", data.path().join("filler").display()))
        .output();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "fullnet", "type": "host-local",
        "ipam": {"type": "host-local", "subnet": "10.88.0.0/24", "dataDir": data.path()}
    })
    .to_string();
    let r = node.run("host-local", "ADD", "full1", NO_NETNS, &conf, &[]);
    let left: Vec<String> = std::fs::read_dir(data.path().join("fullnet"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let _ = Command::new("umount").arg(data.path()).status();
    let e = r.err(999);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("No space left on device"),
        "{e}"
    );
    assert!(left.iter().all(|n| n == "lock"), "{left:?}");
}

/// GC racing an ADD (#21): a GC whose valid list was taken before an ADD
/// began must not release that ADD's address while the ADD still runs. The
/// IPAM here is a wrapper that allocates through host-local, then holds the
/// ADD for 3 s; a GC listing only the other pod runs meanwhile.
#[test]
fn gc_never_frees_an_add_in_flight() {
    let node = Node::new("h-gcrace");
    let slow = node.install.bin_dir().join("slow-ipam");
    std::fs::write(
        &slow,
        "#!/bin/sh\ncfg=$(cat)\nout=$(printf %s \"$cfg\" | \"$(dirname \"$0\")/host-local\")\nrc=$?\n\
         if [ \"$CNI_COMMAND\" = ADD ]; then sleep 3; fi\nprintf %s \"$out\"\nexit $rc\n",
    )
    .expect("write wrapper");
    sh(&format!("chmod 0755 {}", slow.display()));
    let net = "gcrace";
    let conf = |extra: Value| {
        let mut c = json!({
            "cniVersion": "1.1.0", "name": net, "type": "bridge", "bridge": "gcbr0",
            "isGateway": true,
            "ipam": {"type": "slow-ipam", "subnet": "10.89.0.0/24", "dataDir": node.data_dir()}
        });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c.to_string()
    };
    let pod_a = Netns::new("h-gcrace-a");
    let pod_b = Netns::new("h-gcrace-b");
    node.run(
        "bridge",
        "ADD",
        "podA",
        &pod_a.path(),
        &conf(json!({})),
        &[],
    )
    .ok();
    // B's ADD, in flight while the GC runs
    let b = {
        let bin = node.install.bin_dir().join("bridge");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &node.ns.name]).arg(bin);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CNI_PATH", node.install.bin_dir())
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "podB")
            .env("CNI_NETNS", pod_b.path())
            .env("CNI_IFNAME", "eth0")
            .env("WASM_CNI_CACHE_DIR", node.install.cache_dir())
            .env("WASM_CNI_LOG_FILE", node.install.log_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn ADD of B");
        if let Some(mut si) = child.stdin.take() {
            use std::io::Write;
            let _ = si.write_all(conf(json!({})).as_bytes());
        }
        child
    };
    // wait until B's address is allocated (its IPAM now sleeps)
    let t = Instant::now();
    while !node
        .allocations(net)
        .iter()
        .any(|(_, c)| c.starts_with("podB"))
    {
        assert!(t.elapsed() < Duration::from_secs(10), "B never allocated");
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = json!({"cni.dev/valid-attachments": [{"containerID": "podA", "ifname": "eth0"}]});
    let gc = node.run("bridge", "GC", "", "", &conf(listed), &[]);
    gc.ok();
    assert!(
        node.allocations(net)
            .iter()
            .any(|(_, c)| c.starts_with("podB")),
        "GC freed the address of an ADD in flight: {:?}",
        node.allocations(net)
    );
    let out = b.wait_with_output().expect("wait ADD of B");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let log = std::fs::read_to_string(node.install.log_file()).unwrap_or_default();
    assert!(
        log.contains("ADD is in flight"),
        "the GC did not say why it kept B"
    );
    // once B's ADD is over, a GC with the same list does release it
    let gc = node.run("bridge", "GC", "", "", &conf(listed_a()), &[]);
    gc.ok();
    assert!(
        !node
            .allocations(net)
            .iter()
            .any(|(_, c)| c.starts_with("podB")),
        "{:?}",
        node.allocations(net)
    );
    for (cid, pod) in [("podA", &pod_a), ("podB", &pod_b)] {
        node.run("bridge", "DEL", cid, &pod.path(), &conf(json!({})), &[])
            .ok();
    }
}

fn listed_a() -> Value {
    json!({"cni.dev/valid-attachments": [{"containerID": "podA", "ifname": "eth0"}]})
}

/// A configuration host-local refuses leaves nothing on disk, as with the
/// reference (the state directory was created before the module ran).
#[test]
fn a_refused_ipam_config_writes_nothing() {
    let node = Node::new("h-refused");
    for ipam in [
        json!({"type": "host-local", "dataDir": node.data_dir()}),
        json!({"type": "host-local", "dataDir": node.data_dir(), "ranges": "x"}),
    ] {
        let conf =
            json!({"cniVersion": "1.0.0", "name": "refnet", "type": "host-local", "ipam": ipam})
                .to_string();
        let r = node.run("host-local", "ADD", "rf1", NO_NETNS, &conf, &[]);
        assert_ne!(r.code, 0, "{}", r.stdout);
        assert!(
            !node.data_dir().join("refnet").exists(),
            "a refused config left {}",
            node.data_dir().join("refnet").display()
        );
    }
}

/// Time queued for the network's state lock behind another call is not
/// the plugin's: an ADD whose deadline (2 s) passes while another holder
/// keeps the lock (3 s, as a burst of pods on one network does) still
/// completes once it gets the lock, instead of failing for having waited.
#[test]
fn waiting_for_the_state_lock_does_not_use_up_the_deadline() {
    let node = Node::new("h-queue");
    let conf = bridge_conf(
        &node,
        "qnet",
        "qbr0",
        "10.74.0.0/24",
        json!({"wasmCni": {"timeoutMs": 2000}}),
    );
    let first = Netns::new("h-queue-a");
    node.run("bridge", "ADD", "q1", &first.path(), &conf, &[])
        .ok();
    let lock = node.data_dir().join("qnet").join("lock");
    assert!(lock.exists(), "the network's lock file");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "3"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(300));
    let pod = Netns::new("h-queue-b");
    let t = Instant::now();
    let r = node.run("bridge", "ADD", "q2", &pod.path(), &conf, &[]);
    let took = t.elapsed();
    let _ = holder.wait();
    assert_eq!(r.code, 0, "ADD after {took:?}: {}", r.stdout);
    assert!(
        took >= Duration::from_millis(2500),
        "it waited for the lock: {took:?}"
    );
    assert_eq!(
        node.allocations("qnet").len(),
        2,
        "{:?}",
        node.allocations("qnet")
    );
    for (cid, ns) in [("q1", &first), ("q2", &pod)] {
        node.run("bridge", "DEL", cid, &ns.path(), &conf, &[]).ok();
    }
}
