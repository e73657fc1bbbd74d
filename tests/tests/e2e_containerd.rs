//! End to end with containerd 1.6's CRI plugin (Debian's containerd), driven
//! over CRI v1 gRPC as kubelet drives it, with an installed wasm-cni as the
//! node's CNI plugins. Needs root.
//!
//! The CRI client is tests/e2e/cri/cri_client.py: Debian's python3-grpcio
//! with messages generated at test time (`protoc --python_out`) from
//! tests/e2e/cri/cri_min.proto, the subset of the CRI v1 API the test uses.
//! The image is built here from Debian's busybox-static
//! (tests/e2e/cri/oci_image.py writes an OCI archive) and imported with
//! `ctr images import`: no registry is involved. It serves as the sandbox
//! ("pause") image too.
//!
//! containerd is a private instance: its own config file, root, state, gRPC
//! and ttrpc sockets, runc root, CNI bin dir (a scratch `wasm-cni install`)
//! and CNI conf dir, all in a temp dir; nothing under /etc is read or
//! changed. It runs inside a throwaway "node" netns under
//! `nsenter --net=<node>` (not `ip netns exec`, which remounts /sys and
//! breaks runc's cgroup setup; see e2e_clients.rs), so bridges, veths,
//! iptables rules and tc qdiscs stay off the real host network. Its CNI
//! plugins inherit its environment, so WASM_CNI_CACHE_DIR/WASM_CNI_LOG_FILE
//! on the containerd process reach every call.
//!
//! What containerd 1.6 writes outside its private dirs regardless of
//! configuration — the pod netns bind mount under /var/run/netns, libcni's
//! result cache in /var/lib/cni/results, the shim sockets in /run/containerd/s
//! — is checked to be gone after RemovePodSandbox, and the directories are
//! removed again if this test created them.
//!
//! `restrict_oom_score_adj`: the CRI plugin gives the sandbox container
//! oom_score_adj -998, which needs CAP_SYS_RESOURCE; where that is missing
//! (containers, CI sandboxes) runc's init dies without a useful error, so the
//! adjustment is clamped to containerd's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::*;

/// Debian's interpreter: python3-grpcio and python3-protobuf are installed
/// for it (a `python3` earlier in PATH, e.g. pyenv's, may lack them).
const PYTHON: &str = "/usr/bin/python3";
const IMAGE: &str = "localhost/wcni-e2e-busybox:1";
const NODE_IP: &str = "198.51.100.50";
const HOST_PORT: u16 = 18090;
const SUBNET_PREFIX: &str = "10.244.0.";

/// Host paths containerd 1.6 (CRI, runc shim v2, go-cni) writes outside its
/// configured dirs; those this test created are removed after it (if empty).
const HOST_DIRS: &[&str] = &[
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/run/containerd/s",
    "/run/containerd",
];

fn cri_dir() -> PathBuf {
    workspace_root().join("tests/e2e/cri")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` with a deadline (killed and reported on timeout). Output goes
/// to files, not pipes: a daemon it starts (a shim) must not keep the test
/// waiting for EOF.
fn run_timeout(cmd: &mut Command, timeout: Duration, what: &str) -> Output {
    let dir = TempDir::new("e2e-ctrd-out");
    let (o, e) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&o).expect("stdout file"))
        .stderr(fs::File::create(&e).expect("stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("{what}: cannot run: {err}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: timed out after {timeout:?}; stderr: {}",
                fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: fs::read(&o).unwrap_or_default(),
        stderr: fs::read(&e).unwrap_or_default(),
    }
}

#[track_caller]
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn curl(ns: &str, url: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-g", "-s", "-m", "2", url])
        .output()
        .expect("curl")
}

/// Fetches `url` from inside netns `ns` until it answers with `body`, for up
/// to `within`; returns how long that took.
#[track_caller]
fn http_eventually(ns: &str, url: &str, body: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let out = curl(ns, url);
        if out.status.success() && text(&out.stdout).contains(body) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{url} from {ns}: no answer with {body:?} within {within:?} (last: {} {})",
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `cond` for up to `within`; false if it never held.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node: a netns with lo up, a node address on lo, and the nat chains
/// kube-proxy keeps (for portmap's `externalSetMarkChain`).
struct Node {
    ns: Netns,
}

impl Node {
    fn new() -> Node {
        let ns = Netns::new("e2ectrd");
        sh(&format!(
            "ip -n {n} link set lo up && ip -n {n} addr add {NODE_IP}/32 dev lo",
            n = ns.name
        ));
        ns.exec(
            "sh -c 'iptables -t nat -N KUBE-MARK-MASQ && iptables -t nat -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000 && \
             iptables -t nat -N KUBE-POSTROUTING && iptables -t nat -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN && \
             iptables -t nat -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000 && iptables -t nat -A KUBE-POSTROUTING -j MASQUERADE && \
             iptables -t nat -A POSTROUTING -j KUBE-POSTROUTING'",
        );
        Node { ns }
    }

    fn nat(&self) -> String {
        self.ns.exec("iptables-save -t nat")
    }

    fn links(&self, kind: &str) -> Vec<String> {
        self.ns
            .exec(&format!("ip -o link show type {kind}"))
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|s| s.split('@').next().unwrap_or(s).to_string())
            .collect()
    }

    fn qdiscs(&self, dev: &str) -> String {
        self.ns.exec(&format!("tc qdisc show dev {dev}"))
    }
}

/// IPAM allocations (files named after an address) in a host-local data dir.
fn allocations(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

fn log_has(i: &Install, cid: &str, command: &str, module: &str) -> bool {
    let log = fs::read_to_string(i.log_file()).unwrap_or_default();
    log.lines().any(|l| {
        l.contains(&format!("container_id={cid}"))
            && l.contains(&format!("command={command} "))
            && l.contains(&format!("module={module} "))
            && l.contains(" ok ")
    })
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut m: Vec<String> = fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    m.sort_by_key(|p| std::cmp::Reverse(p.len()));
    m
}

/// Pids of processes whose command line mentions `needle` (the shims name
/// their containerd's socket).
fn pids_mentioning(needle: &str) -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| text(&c).replace('\0', " ").contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A private containerd with the CRI plugin, running in the node netns.
/// On drop: removes what is left (sandboxes through CRI, then containers
/// through runc), stops containerd and its shims, unmounts what it mounted
/// and removes the host dirs this test created.
struct Containerd {
    dir: TempDir,
    child: Option<Child>,
    created: Vec<&'static str>,
    /// Pod netns paths seen, removed on drop if a failed run left them.
    netns: std::cell::RefCell<Vec<String>>,
}

impl Containerd {
    fn new(node: &Node, install: &Install) -> Containerd {
        let created = HOST_DIRS
            .iter()
            .copied()
            .filter(|d| !Path::new(d).exists())
            .collect();
        let dir = TempDir::new("e2e-containerd");
        let d = dir.path();
        for sub in ["root", "state", "runc", "opt", "net", "ipam", "gen", "logs"] {
            fs::create_dir_all(d.join(sub)).expect("containerd dir");
        }
        let runc = sh("command -v runc").trim().to_string();
        assert!(
            !runc.is_empty(),
            "runc is missing: install runc (tests/install-deps.sh does)"
        );
        // The CRI messages, generated for this run from the proto subset.
        let protoc = Command::new("protoc")
            .arg("-I")
            .arg(cri_dir())
            .arg(format!("--python_out={}", d.join("gen").display()))
            .arg(cri_dir().join("cri_min.proto"))
            .output();
        let protoc = protoc.unwrap_or_else(|e| {
            panic!(
                "protoc is missing ({e}): install protobuf-compiler (tests/install-deps.sh does)"
            )
        });
        ok(&protoc, "protoc --python_out cri_min.proto");
        let py = Command::new(PYTHON)
            .args(["-c", "import grpc, google.protobuf"])
            .output();
        assert!(
            py.as_ref().is_ok_and(|o| o.status.success()),
            "{PYTHON} cannot import grpc and protobuf: install python3-grpcio python3-protobuf (tests/install-deps.sh does): {py:?}"
        );

        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{d}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{d}/net"
    max_conf_num = 1
"#,
            d = d.display(),
            bin = install.bin_dir().display(),
        );
        fs::write(d.join("config.toml"), config).expect("config.toml");
        fs::write(
            d.join("net/10-k8s-pod-network.conflist"),
            serde_json::to_string_pretty(&conflist(&d.join("ipam"))).expect("json"),
        )
        .expect("conflist");

        assert!(
            Path::new("/usr/bin/containerd").is_file(),
            "containerd is missing: install containerd (tests/install-deps.sh does)"
        );
        let log = fs::File::create(d.join("containerd.log")).expect("containerd.log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", node.ns.path()))
            .arg("/usr/bin/containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("WASM_CNI_CACHE_DIR", install.cache_dir())
            .env("WASM_CNI_LOG_FILE", install.log_file())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        Containerd {
            dir,
            child: Some(child),
            created,
            netns: Default::default(),
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam/k8s-pod-network")
    }

    /// One CRI call: runtime.v1.`service`/`method` with `req`.
    fn cri(&self, service: &str, method: &str, req: &Value) -> Result<Value, String> {
        let mut c = Command::new(PYTHON);
        c.arg(cri_dir().join("cri_client.py"))
            .arg("--socket")
            .arg(self.sock())
            .arg("--gen")
            .arg(self.dir.path().join("gen"))
            .args([service, method, &req.to_string()]);
        let out = run_timeout(&mut c, Duration::from_secs(90), &format!("CRI {method}"));
        if !out.status.success() {
            return Err(text(&out.stderr));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{method}: bad response {:?}: {e}", text(&out.stdout)))
    }

    #[track_caller]
    fn rt(&self, method: &str, req: Value) -> Value {
        self.cri("RuntimeService", method, &req)
            .unwrap_or_else(|e| {
                panic!("CRI {method} failed: {e}\ncontainerd log:\n{}", self.tail())
            })
    }

    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until the CRI plugin answers and reports runtime and network ready.
    fn wait_ready(&self) -> Value {
        let start = Instant::now();
        loop {
            if let Ok(st) = self.cri("RuntimeService", "Status", &json!({})) {
                let conds = st["status"]["conditions"].as_array().cloned();
                let ready = |t: &str| {
                    conds
                        .iter()
                        .flatten()
                        .any(|c| c["type"] == t && c["status"] == true)
                };
                if ready("RuntimeReady") && ready("NetworkReady") {
                    return st;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd's CRI plugin not ready within 30s:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn import(&self, tar: &Path) {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.sock())
            .args(["--namespace", "k8s.io", "images", "import"])
            .args(["--snapshotter", "native"])
            .arg(tar);
        ok(
            &run_timeout(&mut c, Duration::from_secs(60), "ctr images import"),
            "ctr images import",
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Sandboxes a failed run left: stop (CNI DEL) and remove through CRI.
        if let Ok(list) = self.cri("RuntimeService", "ListPodSandbox", &json!({})) {
            for sb in list["items"].as_array().into_iter().flatten() {
                let id = json!({"pod_sandbox_id": sb["id"]});
                let _ = self.cri("RuntimeService", "StopPodSandbox", &id);
                let _ = self.cri("RuntimeService", "RemovePodSandbox", &id);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Containers and shims that outlived containerd.
        let runc_root = self.dir.path().join("runc");
        for ns in fs::read_dir(&runc_root).into_iter().flatten().flatten() {
            for c in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(ns.path())
                    .args(["delete", "--force"])
                    .arg(c.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for pid in pids_mentioning(&self.sock().display().to_string()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for m in mounts_under(self.dir.path()) {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        for ns in self.netns.borrow().iter() {
            if Path::new(ns).exists() {
                let _ = Command::new("umount")
                    .arg(ns)
                    .stderr(Stdio::null())
                    .status();
                let _ = fs::remove_file(ns);
            }
        }
        for d in &self.created {
            let _ = fs::remove_dir(d);
        }
    }
}

/// The example conflists combined, as a kubeadm-style node has them: bridge
/// (hairpinMode for pods reaching their own hostPort) + host-local, portmap
/// with kube-proxy's mark chain, bandwidth.
fn conflist(ipam_dir: &Path) -> Value {
    let read = |f: &str| -> Value {
        serde_json::from_str(
            &fs::read_to_string(workspace_root().join("examples").join(f)).expect("example"),
        )
        .expect("example json")
    };
    let mut conf = read("k8s-pod-network-portmap.conflist");
    let bandwidth = read("k8s-pod-network-bandwidth.conflist")["plugins"][1].clone();
    assert_eq!(bandwidth["type"], "bandwidth", "{bandwidth}");
    conf["plugins"][0]["ipam"]["dataDir"] = json!(ipam_dir);
    conf["plugins"][0]["hairpinMode"] = json!(true);
    conf["plugins"]
        .as_array_mut()
        .expect("plugins")
        .push(bandwidth);
    assert_eq!(conf["plugins"][1]["type"], "portmap", "{conf}");
    conf
}

fn etc_state() -> String {
    let list = |d: &str| {
        let mut v: Vec<String> = fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        format!("{d}: {v:?}")
    };
    [list("/etc/cni/net.d"), list("/etc/containerd")].join("\n")
}

#[test]
fn containerd_cri_pod_portmap_bandwidth() {
    require_root();
    let t0 = Instant::now();
    let pid = std::process::id();
    let host_nat_before = sh("iptables -t nat -S");
    let etc_before = etc_state();

    // Dropped in reverse order: containerd (which tears down through CNI)
    // goes before the bin dir and the node netns.
    let install = Install::new("e2e-containerd-bin", &[]);
    let node = Node::new();
    let ctrd = Containerd::new(&node, &install);
    let ipam_dir = ctrd.ipam_dir();

    // The image: busybox-static, a page to serve; its default command
    // (sleep) makes it usable as the sandbox image.
    let rootfs = ctrd.dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
    fs::create_dir_all(rootfs.join("www")).expect("rootfs");
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: install busybox-static (tests/install-deps.sh does)"
    );
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    let marker = format!("served by busybox in a containerd CRI pod via wasm-cni {pid}");
    fs::write(rootfs.join("www/index.html"), format!("{marker}\n")).expect("index.html");
    let tar = ctrd.dir.path().join("image.tar");
    let mut c = Command::new(PYTHON);
    c.arg(cri_dir().join("oci_image.py"))
        .arg(&rootfs)
        .arg(&tar)
        .args([IMAGE, "/bin/busybox", "sleep", "2147483647"]);
    ok(
        &run_timeout(&mut c, Duration::from_secs(30), "oci_image.py"),
        "oci_image.py",
    );

    let t = Instant::now();
    let status = ctrd.wait_ready();
    let ready = t.elapsed();
    let version = ctrd.rt("Version", json!({"version": "v1"}));
    assert_eq!(version["runtime_name"], "containerd", "{version}");
    assert!(
        version["runtime_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.6")),
        "not containerd 1.6: {version}"
    );
    assert_eq!(version["runtime_api_version"], "v1", "{version}");
    ctrd.import(&tar);
    let img = ctrd
        .cri(
            "ImageService",
            "ImageStatus",
            &json!({"image": {"image": IMAGE}}),
        )
        .unwrap_or_else(|e| panic!("ImageStatus: {e}"));
    assert!(
        img["image"]["repo_tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == IMAGE)),
        "CRI does not see {IMAGE}: {img}; status {status}"
    );

    // RunPodSandbox: containerd creates the netns and runs loopback, then the
    // conflist (bridge -> host-local, portmap, bandwidth), all wasm-cni.
    let sandbox_config = json!({
        "metadata": {"name": "web", "uid": format!("wcni-e2e-uid-{pid}"), "namespace": "default", "attempt": 0},
        "hostname": "web",
        "log_directory": ctrd.dir.path().join("logs"),
        "port_mappings": [{"protocol": "TCP", "container_port": 80, "host_port": HOST_PORT}],
        "labels": {"app": "web"},
        "annotations": {"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "10M"},
    });
    let t = Instant::now();
    let sb = ctrd.rt("RunPodSandbox", json!({"config": sandbox_config}));
    let runp = t.elapsed();
    let id = sb["pod_sandbox_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 64, "sandbox id: {sb}");
    let st = ctrd.rt(
        "PodSandboxStatus",
        json!({"pod_sandbox_id": id, "verbose": true}),
    );
    assert_eq!(st["status"]["state"], "SANDBOX_READY", "{st}");
    let ip = st["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ip.starts_with(SUBNET_PREFIX), "pod IP {ip:?}: {st}");
    let info: Value = serde_json::from_str(st["info"]["info"].as_str().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("verbose info: {e}: {st}"));
    let netns = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["type"] == "network"))
        .and_then(|n| n["path"].as_str())
        .unwrap_or_else(|| panic!("no network namespace in the sandbox spec: {info}"))
        .to_string();
    ctrd.netns.borrow_mut().push(netns.clone());
    assert!(
        netns.starts_with("/var/run/netns/cni-") && Path::new(&netns).exists(),
        "pod netns {netns:?}"
    );
    let pod_ns = netns.rsplit('/').next().unwrap_or_default().to_string();

    // The container: busybox httpd on :80 in the pod's netns.
    let t = Instant::now();
    let created = ctrd.rt(
        "CreateContainer",
        json!({"pod_sandbox_id": id, "sandbox_config": sandbox_config, "config": {
            "metadata": {"name": "httpd", "attempt": 0},
            "image": {"image": IMAGE},
            "command": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
            "log_path": "httpd.log",
        }}),
    );
    let cid = created["container_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(cid.len(), 64, "container id: {created}");
    ctrd.rt("StartContainer", json!({"container_id": cid}));
    let start = t.elapsed();
    let cs = ctrd.rt("ContainerStatus", json!({"container_id": cid}));
    assert_eq!(cs["status"]["state"], "CONTAINER_RUNNING", "{cs}");

    // Reached via hostPort on the node address and localhost, via the pod IP,
    // and from the pod itself through its own hostPort (hairpin).
    let first_http = http_eventually(
        &node.ns.name,
        &format!("http://{NODE_IP}:{HOST_PORT}/"),
        &marker,
        Duration::from_secs(20),
    );
    http_eventually(
        &node.ns.name,
        &format!("http://127.0.0.1:{HOST_PORT}/"),
        &marker,
        Duration::from_secs(5),
    );
    http_eventually(
        &node.ns.name,
        &format!("http://{ip}:80/"),
        &marker,
        Duration::from_secs(5),
    );
    // (busybox-static's wget crashes with -T: ExecSync's timeout bounds it.)
    let hairpin = ctrd.rt(
        "ExecSync",
        json!({"container_id": cid, "timeout": 10,
               "cmd": ["/bin/busybox", "wget", "-q", "-O", "-", format!("http://{NODE_IP}:{HOST_PORT}/")]}),
    );
    assert!(
        hairpin["exit_code"] == 0
            && hairpin["stdout"]
                .as_str()
                .is_some_and(|s| s.contains(&marker)),
        "hairpin through the pod's own hostPort failed: {hairpin}"
    );

    // The kernel's view: pod netns, veth, nat rules, tc.
    let pod_addrs = sh(&format!("ip -n {pod_ns} -o addr show"));
    assert!(
        pod_addrs.contains(&format!("inet {ip}/24")) && pod_addrs.contains("inet 127.0.0.1/8"),
        "pod netns addresses (eth0 + lo up by loopback):\n{pod_addrs}"
    );
    let veths = node.links("veth");
    assert_eq!(veths.len(), 1, "one host veth: {veths:?}");
    let veth = &veths[0];
    assert!(
        node.ns
            .exec(&format!("ip -o link show {veth}"))
            .contains("master cni0"),
        "{veth} not on cni0"
    );
    let nat = node.nat();
    for want in [
        "CNI-HOSTPORT-DNAT",
        "CNI-DN-",
        &format!("--to-destination {ip}:80"),
        &format!("--dport {HOST_PORT}"),
        "-j KUBE-MARK-MASQ",
        &format!("id: \\\"{id}\\\""),
    ] {
        assert!(
            nat.contains(want),
            "missing {want} in the node's nat table:\n{nat}"
        );
    }
    // kubernetes.io/*-bandwidth: 10M -> 10 Mbit/s: ingress (to the pod) as
    // tbf on the host veth, egress through an ifb with its own tbf.
    let q = node.qdiscs(veth);
    assert!(
        q.contains("tbf") && q.contains("rate 10Mbit") && q.contains("ingress"),
        "{veth}: no 10Mbit tbf + ingress qdisc:\n{q}"
    );
    let ifbs = node.links("ifb");
    assert_eq!(ifbs.len(), 1, "one ifb: {ifbs:?}");
    let q = node.qdiscs(&ifbs[0]);
    assert!(
        q.contains("tbf") && q.contains("rate 10Mbit"),
        "{}: no 10Mbit tbf:\n{q}",
        ifbs[0]
    );
    assert_eq!(
        allocations(&ipam_dir),
        vec![ip.clone()],
        "host-local allocation"
    );
    let cached = [
        PathBuf::from(format!("/var/lib/cni/results/k8s-pod-network-{id}-eth0")),
        PathBuf::from(format!("/var/lib/cni/results/cni-loopback-{id}-lo")),
    ];
    for c in &cached {
        assert!(c.is_file(), "libcni result cache {} missing", c.display());
    }
    for module in ["loopback", "bridge", "portmap", "bandwidth"] {
        assert!(
            log_has(&install, &id, "ADD", module),
            "no ADD {module} for {id} in the wasm-cni log:\n{}",
            fs::read_to_string(install.log_file()).unwrap_or_default()
        );
    }

    // Stop (CNI DEL; kubelet repeats it, so twice) and remove: nothing may be left.
    let t = Instant::now();
    ctrd.rt("StopPodSandbox", json!({"pod_sandbox_id": id}));
    let stopp = t.elapsed();
    ctrd.rt("StopPodSandbox", json!({"pod_sandbox_id": id}));
    let t = Instant::now();
    ctrd.rt("RemovePodSandbox", json!({"pod_sandbox_id": id}));
    let rmp = t.elapsed();
    for module in ["loopback", "bridge", "portmap", "bandwidth"] {
        assert!(
            log_has(&install, &id, "DEL", module),
            "no DEL {module} for {id} in the wasm-cni log"
        );
    }
    let default_log = fs::read_to_string("/var/log/wasm-cni.log").unwrap_or_default();
    assert!(
        !default_log.contains(&id),
        "a CNI call for {id} ran without the private settings (logged to /var/log/wasm-cni.log)"
    );
    assert!(
        node.links("veth").is_empty(),
        "veth left: {:?}",
        node.links("veth")
    );
    assert!(
        node.links("ifb").is_empty(),
        "ifb left: {:?}",
        node.links("ifb")
    );
    let q = node.ns.exec("tc qdisc show");
    assert!(
        !q.contains("tbf") && !q.contains("ingress"),
        "qdisc left:\n{q}"
    );
    let nat = node.nat();
    assert!(
        !nat.contains("CNI-DN-") && !nat.contains(&id) && !nat.contains(&ip),
        "rules left after RemovePodSandbox:\n{nat}"
    );
    assert!(
        allocations(&ipam_dir).is_empty(),
        "host-local allocation left: {:?}",
        allocations(&ipam_dir)
    );
    for c in &cached {
        assert!(!c.exists(), "libcni result cache left: {}", c.display());
    }
    assert!(!Path::new(&netns).exists(), "pod netns {netns} left");
    assert!(
        curl(&node.ns.name, &format!("http://{NODE_IP}:{HOST_PORT}/"))
            .stdout
            .is_empty(),
        "hostPort still answers after RemovePodSandbox"
    );
    let left = ctrd.rt("ListPodSandbox", json!({}));
    assert_eq!(left["items"], json!([]), "sandboxes left: {left}");
    let left = ctrd.rt("ListContainers", json!({}));
    assert_eq!(left["containers"], json!([]), "containers left: {left}");
    let sock = ctrd.sock().display().to_string();
    assert!(
        eventually(Duration::from_secs(10), || pids_mentioning(&sock)
            .is_empty()),
        "shims left: {:?}",
        pids_mentioning(&sock)
    );
    let state = ctrd.dir.path().join("state");
    assert!(
        eventually(Duration::from_secs(10), || mounts_under(&state).is_empty()),
        "mounts left under {}: {:?}",
        state.display(),
        mounts_under(&state)
    );
    assert!(
        fs::read_dir("/run/containerd/s")
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "shim sockets left in /run/containerd/s"
    );
    assert_eq!(
        sh("iptables -t nat -S"),
        host_nat_before,
        "the host's own nat table changed"
    );
    drop(ctrd);
    assert_eq!(etc_state(), etc_before, "/etc changed");
    eprintln!(
        "containerd: CRI ready {ready:?}, RunPodSandbox {runp:?}, create+start {start:?}, first hostPort answer +{first_http:?}, \
         StopPodSandbox {stopp:?}, RemovePodSandbox {rmp:?}, test total {:?}",
        t0.elapsed()
    );
}
