//! End to end with real clients from Debian's packages: podman 4.3 (CNI
//! backend, runc) and libcni 1.1 (the library runtimes embed), driving an
//! installed wasm-cni. Needs root.
//!
//! Every client is a private instance: its own storage root, run root, tmp,
//! network config and plugin dirs (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF
//! point at files in a temp dir; nothing under /etc is read or changed), and
//! it runs inside a throwaway "node" netns, so bridges, veths, iptables rules
//! and tc qdiscs never touch the real host network.
//!
//! podman runs under `nsenter --net=<node>`, not `ip netns exec`: the latter
//! also unshares the mount namespace and mounts a fresh /sys without the
//! cgroup2 mount, so runc fails ("no cgroup mount found in mountinfo"), and
//! the container netns podman bind-mounts under /run/netns would be invisible
//! to the next podman call. What podman 4.3 writes outside its private dirs
//! regardless of configuration — libcni's result cache in /var/lib/cni/results,
//! runc's state dir /run/runc, the image blob-info cache in
//! /var/lib/containers/cache, the container netns in /run/netns — is checked
//! to be gone after `podman rm`, and the directories are removed again if this
//! test created them. conmon runs `podman container cleanup` (which may be the
//! one to call CNI DEL) with only `conmon_env_vars`, so those carry the
//! private CONTAINERS_CONF and WASM_CNI_* settings; the test checks that no
//! call for its container reached the default /var/log/wasm-cni.log.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::*;

/// Runs `cmd` with a deadline (killed and reported on timeout). Output goes
/// to files, not pipes: a daemon it leaves behind (conmon) must not keep the
/// test waiting for EOF.
fn run_timeout(cmd: &mut Command, timeout: Duration, what: &str) -> Output {
    let dir = TempDir::new("e2e-out");
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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

/// Fetches `url` from inside netns `ns` until it answers with `body`, for up
/// to `within`; returns how long that took.
#[track_caller]
fn http_eventually(ns: &str, url: &str, body: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-g", "-s", "-m", "2", url])
            .output()
            .expect("curl");
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

fn http_fails(ns: &str, url: &str) -> bool {
    !Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-g",
            "-s",
            "-m",
            "2",
            "-o",
            "/dev/null",
            url,
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A test node: a netns with lo up and a "node address" on lo.
struct Node {
    ns: Netns,
    ip: &'static str,
}

impl Node {
    fn new(tag: &str, ip: &'static str) -> Node {
        let ns = Netns::new(tag);
        sh(&format!(
            "ip -n {n} link set lo up && ip -n {n} addr add {ip}/32 dev lo",
            n = ns.name
        ));
        Node { ns, ip }
    }

    fn nat(&self) -> String {
        self.ns.exec("iptables-save -t nat")
    }

    fn veths(&self) -> Vec<String> {
        self.ns
            .exec("ip -o link show type veth")
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|s| s.split('@').next().unwrap_or(s).to_string())
            .collect()
    }

    fn ifbs(&self) -> String {
        self.ns.exec("ip -o link show type ifb")
    }

    /// Chains and rules kube-proxy keeps on a node, for portmap's
    /// `externalSetMarkChain`.
    fn kube_proxy_chains(&self) {
        self.ns.exec(
            "sh -c 'iptables -t nat -N KUBE-MARK-MASQ && iptables -t nat -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000 && \
             iptables -t nat -N KUBE-POSTROUTING && iptables -t nat -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN && \
             iptables -t nat -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000 && iptables -t nat -A KUBE-POSTROUTING -j MASQUERADE && \
             iptables -t nat -A POSTROUTING -j KUBE-POSTROUTING'",
        );
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

// ---------------------------------------------------------------- podman

/// Host paths podman 4.3 writes outside its configured dirs. Those that did
/// not exist before the test are removed after it (only if empty, apart from
/// podman's own blob-info cache file).
const PODMAN_HOST_DIRS: &[&str] = &[
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/run/runc",
    "/var/lib/containers/cache",
    "/var/lib/containers",
];

/// A private podman instance; `rm -af` and host-dir cleanup on drop.
struct Podman {
    dir: TempDir,
    node_path: String,
    runc: String,
    created: Vec<&'static str>,
}

impl Podman {
    fn new(
        tag: &str,
        node: &Node,
        install: &Install,
        network: &str,
        bridge: &str,
        subnet: &str,
    ) -> Podman {
        let created = PODMAN_HOST_DIRS
            .iter()
            .copied()
            .filter(|d| !Path::new(d).exists())
            .collect();
        let dir = TempDir::new(tag);
        let d = dir.path();
        for sub in ["root", "run", "tmp", "net", "ipam"] {
            fs::create_dir_all(d.join(sub)).expect("podman dir");
        }
        let runc = sh("command -v runc").trim().to_string();
        assert!(
            !runc.is_empty(),
            "runc is missing: install runc (tests/install-deps.sh does)"
        );
        fs::write(
            d.join("containers.conf"),
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{bin}\"]\nnetwork_config_dir = \"{d}/net\"\ndefault_network = \"{network}\"\n\
                 default_subnet = \"{subnet}\"\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{d}/events.log\"\ntmp_dir = \"{d}/tmp\"\nvolume_path = \"{d}/root/volumes\"\n\
                 env = [{wasm_env}]\nconmon_env_vars = [\"PATH={path}\", \"CONTAINERS_CONF={d}/containers.conf\", \"CONTAINERS_STORAGE_CONF={d}/storage.conf\", {wasm_env}]\n",
                bin = install.bin_dir().display(),
                d = d.display(),
                path = std::env::var("PATH").unwrap_or_default(),
                wasm_env = format!("\"WASM_CNI_CACHE_DIR={}\", \"WASM_CNI_LOG_FILE={}\"", install.cache_dir().display(), install.log_file().display()),
            ),
        )
        .expect("containers.conf");
        fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/run\"\n",
                d = d.display()
            ),
        )
        .expect("storage.conf");
        let conflist = json!({"cniVersion": "1.0.0", "name": network, "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": d.join("ipam"), "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]});
        fs::write(
            d.join("net").join(format!("{network}.conflist")),
            serde_json::to_string_pretty(&conflist).expect("json"),
        )
        .expect("conflist");
        Podman {
            dir,
            node_path: node.ns.path(),
            runc,
            created,
        }
    }

    fn ipam_dir(&self, network: &str) -> PathBuf {
        self.dir.path().join("ipam").join(network)
    }

    /// `podman <args>` with the private configuration, in the node netns.
    fn cmd(&self, args: &[&str], install: &Install) -> Command {
        let d = self.dir.path().display().to_string();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.node_path)).arg("podman");
        c.args([
            "--root",
            &format!("{d}/root"),
            "--runroot",
            &format!("{d}/run"),
            "--tmpdir",
            &format!("{d}/tmp"),
        ]);
        c.args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            &self.runc,
        ]);
        c.args(["--network-config-dir", &format!("{d}/net")])
            .args(args);
        c.env("CONTAINERS_CONF", format!("{d}/containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", format!("{d}/storage.conf"))
            .env("WASM_CNI_CACHE_DIR", install.cache_dir())
            .env("WASM_CNI_LOG_FILE", install.log_file());
        c
    }

    #[track_caller]
    fn ok(&self, install: &Install, args: &[&str]) -> String {
        let what = format!("podman {}", args.join(" "));
        ok(
            &run_timeout(&mut self.cmd(args, install), Duration::from_secs(90), &what),
            &what,
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Removes any container left by a failed run (CNI DEL in the node
        // netns: the bin dir and the netns are dropped after this guard).
        let d = self.dir.path().display().to_string();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.node_path)).arg("podman");
        c.args([
            "--root",
            &format!("{d}/root"),
            "--runroot",
            &format!("{d}/run"),
            "--tmpdir",
            &format!("{d}/tmp"),
            "--storage-driver",
            "vfs",
        ]);
        c.args([
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            &self.runc,
            "--network-config-dir",
            &format!("{d}/net"),
        ]);
        c.args(["rm", "-a", "-f", "-t", "0"])
            .env("CONTAINERS_CONF", format!("{d}/containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", format!("{d}/storage.conf"));
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut child) = c.spawn() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for d in &self.created {
            if *d == "/var/lib/containers/cache" {
                let _ = fs::remove_file(Path::new(d).join("blob-info-cache-v1.boltdb"));
            }
            let _ = fs::remove_dir(d);
        }
    }
}

#[test]
fn podman_cni_backend_bridge_portmap() {
    require_root();
    let t0 = Instant::now();
    let pid = std::process::id();
    let (network, bridge, subnet) = (
        format!("wcni-e2e-{pid}"),
        format!("wcbr{pid}"),
        format!("10.231.{}.0/24", pid % 250),
    );
    let (name, image) = (
        format!("wcni-e2e-web-{pid}"),
        format!("localhost/wcni-e2e-busybox:{pid}"),
    );
    let host_nat_before = sh("iptables -t nat -S");

    let install = Install::new("e2e-podman", &[]);
    let node = Node::new("e2epod", "198.51.100.10");
    let podman = Podman::new(
        "e2e-podman-state",
        &node,
        &install,
        &network,
        &bridge,
        &subnet,
    );

    // A tiny image from Debian's busybox-static: /bin/busybox and /www.
    let rootfs = podman.dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
    fs::create_dir_all(rootfs.join("www")).expect("rootfs");
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: install busybox-static (tests/install-deps.sh does)"
    );
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    let marker = format!("served by busybox in podman via wasm-cni {pid}");
    fs::write(rootfs.join("www/index.html"), format!("{marker}\n")).expect("index.html");
    let tar = podman.dir.path().join("image.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        rootfs.display(),
        tar.display()
    ));
    let t = Instant::now();
    podman.ok(&install, &["import", &tar.display().to_string(), &image]);
    let import = t.elapsed();
    let info = podman.ok(
        &install,
        &[
            "info",
            "--format",
            "{{.Host.NetworkBackend}} {{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}}",
        ],
    );
    assert!(
        info.starts_with("cni vfs") && info.contains("runc"),
        "private podman setup not in effect: {info}"
    );
    assert!(
        podman
            .ok(&install, &["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|l| l == network),
        "podman does not see {network}"
    );

    // Run: podman execs <bin dir>/bridge (-> host-local) and portmap, which are wasm-cni.
    let t = Instant::now();
    // nofile/nproc: podman's defaults exceed this machine's hard limits (no CAP_SYS_RESOURCE).
    let id = podman
        .ok(
            &install,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                &network,
                "-p",
                "18080:80",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                &image,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/www",
            ],
        )
        .trim()
        .to_string();
    let run = t.elapsed();
    assert_eq!(id.len(), 64, "container id: {id:?}");
    let first_http = http_eventually(
        &node.ns.name,
        &format!("http://{}:18080/", node.ip),
        &marker,
        Duration::from_secs(20),
    );
    http_eventually(
        &node.ns.name,
        "http://127.0.0.1:18080/",
        &marker,
        Duration::from_secs(10),
    );

    // State while running: podman's view, the kernel's, host-local's, libcni's.
    let inspect: Value =
        serde_json::from_str(&podman.ok(&install, &["inspect", &name])).expect("inspect json");
    let ns = &inspect[0]["NetworkSettings"];
    let ip = ns["Networks"][&network]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("no IP in inspect: {ns}"))
        .to_string();
    let sandbox = ns["SandboxKey"].as_str().unwrap_or_default().to_string();
    assert!(
        ip.starts_with(&subnet[..subnet.len() - 4]),
        "{ip} not in {subnet}"
    );
    assert_eq!(
        ns["Networks"][&network]["Gateway"],
        subnet.replace(".0/24", ".1"),
        "{ns}"
    );
    assert!(
        ns["Ports"]["80/tcp"][0]["HostPort"] == "18080",
        "ports: {}",
        ns["Ports"]
    );
    http_eventually(
        &node.ns.name,
        &format!("http://{ip}:80/"),
        &marker,
        Duration::from_secs(5),
    );
    assert!(
        Path::new(&sandbox).exists() && sandbox.starts_with("/run/netns/"),
        "sandbox {sandbox:?}"
    );
    assert_eq!(node.veths().len(), 1, "one host veth: {:?}", node.veths());
    assert!(
        node.ns
            .exec(&format!("ip -o link show {bridge}"))
            .contains("UP"),
        "bridge {bridge} not up"
    );
    let nat = node.nat();
    for want in [
        "CNI-HOSTPORT-DNAT",
        "CNI-DN-",
        &format!("--to-destination {ip}:80"),
        &format!("id: \\\"{id}\\\""),
    ] {
        assert!(
            nat.contains(want),
            "missing {want} in the node's nat table:\n{nat}"
        );
    }
    assert_eq!(
        allocations(&podman.ipam_dir(&network)),
        vec![ip.clone()],
        "host-local allocation"
    );
    let cached = PathBuf::from(format!("/var/lib/cni/results/{network}-{id}-eth0"));
    assert!(
        cached.is_file(),
        "libcni result cache {} missing",
        cached.display()
    );
    for (cmd, module) in [("ADD", "bridge"), ("ADD", "portmap")] {
        assert!(
            log_has(&install, &id, cmd, module),
            "no {cmd} {module} for {id} in the wasm-cni log:\n{}",
            fs::read_to_string(install.log_file()).unwrap_or_default()
        );
    }

    // Remove: podman runs CNI DEL; nothing may be left.
    let t = Instant::now();
    podman.ok(&install, &["rm", "-f", "-t", "0", &name]);
    let rm = t.elapsed();
    // The DEL may come from `podman container cleanup`, conmon's exit command,
    // racing the rm: it must have run with the private settings too.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(log_has(&install, &id, "DEL", "portmap") && log_has(&install, &id, "DEL", "bridge")) {
        assert!(
            Instant::now() < deadline,
            "no DEL portmap + bridge for {id} in the private wasm-cni log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let default_log = fs::read_to_string("/var/log/wasm-cni.log").unwrap_or_default();
    assert!(
        !default_log.contains(&id),
        "a CNI call for {id} ran without the private settings (logged to /var/log/wasm-cni.log)"
    );
    assert!(node.veths().is_empty(), "veth left: {:?}", node.veths());
    let nat = node.nat();
    assert!(
        !nat.contains("CNI-DN-") && !nat.contains(&id) && !nat.contains(&ip),
        "rules left after rm:\n{nat}"
    );
    assert!(
        allocations(&podman.ipam_dir(&network)).is_empty(),
        "host-local allocation left: {:?}",
        allocations(&podman.ipam_dir(&network))
    );
    assert!(
        !cached.exists(),
        "libcni result cache left: {}",
        cached.display()
    );
    assert!(
        !Path::new(&sandbox).exists(),
        "container netns {sandbox} left"
    );
    assert!(
        http_fails(&node.ns.name, &format!("http://{}:18080/", node.ip)),
        "hostPort still answers after rm"
    );
    assert!(
        podman.ok(&install, &["ps", "-a", "-q"]).trim().is_empty(),
        "containers left"
    );
    assert_eq!(
        sh("iptables -t nat -S"),
        host_nat_before,
        "the host's own nat table changed"
    );
    eprintln!("podman: import {import:?}, run -d {run:?}, first hostPort answer +{first_http:?}, rm -f {rm:?}, test total {:?}", t0.elapsed());
}

// ---------------------------------------------------------------- libcni

/// The libcni client (tests/e2e/libcni-client), built offline in GOPATH mode
/// against Debian's golang-github-containernetworking-cni-dev.
fn build_libcni_client(dir: &Path) -> PathBuf {
    let src = workspace_root().join("tests/e2e/libcni-client/main.go");
    assert!(Path::new("/usr/share/gocode/src/github.com/containernetworking/cni/libcni").is_dir(), "libcni is missing: install golang-github-containernetworking-cni-dev (tests/install-deps.sh does)");
    let out = dir.join("libcni-client");
    let mut c = Command::new("go");
    c.arg("build")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .current_dir(dir);
    c.env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .env("HOME", dir);
    ok(
        &run_timeout(&mut c, Duration::from_secs(120), "go build libcni-client"),
        "go build libcni-client",
    );
    out
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One example conflist driven through libcni, as a kubelet-era runtime would.
struct LibcniCase {
    install: Install,
    node: Node,
    pod: Netns,
    dir: TempDir,
    client: PathBuf,
    conflist: PathBuf,
    cid: String,
    caps: Value,
}

impl LibcniCase {
    fn new(tag: &str, example: &str, node_ip: &'static str, caps: Value) -> LibcniCase {
        LibcniCase::with(Install::new(tag, &[]), tag, example, node_ip, caps)
    }

    fn with(
        install: Install,
        tag: &str,
        example: &str,
        node_ip: &'static str,
        caps: Value,
    ) -> LibcniCase {
        let dir = TempDir::new(&format!("{tag}-state"));
        let node = Node::new(tag, node_ip);
        let pod = Netns::new(&format!("{tag}p"));
        let t = Instant::now();
        let client = build_libcni_client(dir.path());
        eprintln!("{tag}: go build libcni-client {:?}", t.elapsed());
        let mut conf: Value = serde_json::from_str(
            &fs::read_to_string(workspace_root().join("examples").join(example)).expect("example"),
        )
        .expect("example json");
        conf["plugins"][0]["ipam"]["dataDir"] = json!(dir.path().join("ipam"));
        let conflist = dir.path().join(example);
        fs::write(&conflist, conf.to_string()).expect("conflist");
        LibcniCase {
            install,
            node,
            pod,
            cid: format!("wcni-e2e-{tag}-{}", std::process::id()),
            dir,
            client,
            conflist,
            caps,
        }
    }

    fn cache_file(&self) -> PathBuf {
        self.dir
            .path()
            .join("cache/results")
            .join(format!("k8s-pod-network-{}-eth0", self.cid))
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam/k8s-pod-network")
    }

    /// Runs the client for `ops` in the node netns; one JSON line per op.
    fn client(&self, ops: &[&str]) -> Result<Vec<Value>, String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node.ns.name])
            .arg(&self.client);
        c.arg("-conflist")
            .arg(&self.conflist)
            .arg("-path")
            .arg(self.install.bin_dir())
            .arg("-cache")
            .arg(self.dir.path().join("cache"));
        c.args([
            "-netns",
            &self.pod.path(),
            "-id",
            &self.cid,
            "-ifname",
            "eth0",
            "-caps",
            &self.caps.to_string(),
        ]);
        c.arg("-args").arg(format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={}", self.cid));
        c.args(ops)
            .env("WASM_CNI_CACHE_DIR", self.install.cache_dir())
            .env("WASM_CNI_LOG_FILE", self.install.log_file());
        let out = run_timeout(
            &mut c,
            Duration::from_secs(60),
            &format!("libcni-client {}", ops.join(" ")),
        );
        if !out.status.success() {
            return Err(text(&out.stderr));
        }
        Ok(text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("client output {l:?}: {e}")))
            .collect())
    }

    #[track_caller]
    fn ok(&self, ops: &[&str]) -> Vec<Value> {
        self.client(ops)
            .unwrap_or_else(|e| panic!("libcni {ops:?} failed: {e}"))
    }

    /// ADD through libcni; checks the result as a runtime reads it and returns
    /// (pod IP, host veth).
    fn add(&self) -> (String, String) {
        let pre = self.ok(&["version", "validate"]);
        assert_eq!(
            pre[0]["versions"]["bridge"]
                .as_array()
                .map(|v| v.iter().any(|x| x == "0.4.0")),
            Some(true),
            "VERSION: {}",
            pre[0]
        );
        let t = Instant::now();
        let r = self.ok(&["add"]).remove(0)["result"].clone();
        eprintln!("{}: libcni ADD {:?}", self.cid, t.elapsed());
        assert_eq!(r["cniVersion"], "0.4.0", "{r}");
        let ifaces = r["interfaces"]
            .as_array()
            .unwrap_or_else(|| panic!("no interfaces: {r}"));
        let eth0 = ifaces
            .iter()
            .position(|i| i["name"] == "eth0" && i["sandbox"] == self.pod.path().as_str())
            .unwrap_or_else(|| panic!("no eth0 in the pod netns: {r}"));
        let ip = &r["ips"][0];
        assert_eq!(ip["interface"], eth0, "{r}");
        assert_eq!(ip["gateway"], "10.244.0.1", "{r}");
        let addr = ip["address"].as_str().unwrap_or_default().to_string();
        assert!(
            addr.starts_with("10.244.0.") && addr.ends_with("/24"),
            "{r}"
        );
        let pod_ip = addr.trim_end_matches("/24").to_string();
        assert!(
            self.pod.exec("ip -4 -o addr show dev eth0").contains(&addr),
            "eth0 lacks {addr}"
        );
        let veth = ifaces
            .iter()
            .find(|i| i["sandbox"].is_null() && i["name"] != "cni0")
            .and_then(|i| i["name"].as_str())
            .unwrap_or_else(|| panic!("no host veth: {r}"))
            .to_string();
        assert_eq!(self.node.veths(), vec![veth.clone()], "host veth");
        assert!(
            self.cache_file().is_file(),
            "libcni cache {} missing",
            self.cache_file().display()
        );
        assert_eq!(allocations(&self.ipam_dir()), vec![pod_ip.clone()]);
        let t = Instant::now();
        self.ok(&["check"]);
        eprintln!("{}: libcni CHECK {:?}", self.cid, t.elapsed());
        let cached = self.ok(&["cached"]).remove(0);
        assert_eq!(
            cached["result"], r,
            "libcni's cached result differs from ADD's"
        );
        (pod_ip, veth)
    }

    /// DEL through libcni (twice: runtimes retry) and what must be gone.
    fn del(&self, pod_ip: &str) {
        let t = Instant::now();
        self.ok(&["del"]);
        eprintln!("{}: libcni DEL {:?}", self.cid, t.elapsed());
        self.ok(&["del"]);
        assert!(
            self.node.veths().is_empty(),
            "veth left: {:?}",
            self.node.veths()
        );
        assert!(
            !self.pod.exec("ip -o link").contains("eth0"),
            "eth0 left in the pod"
        );
        let nat = self.node.nat();
        assert!(
            !nat.contains("CNI-DN-") && !nat.contains(&self.cid) && !nat.contains(pod_ip),
            "rules left after DEL:\n{nat}"
        );
        assert!(
            allocations(&self.ipam_dir()).is_empty(),
            "allocation left: {:?}",
            allocations(&self.ipam_dir())
        );
        assert!(!self.cache_file().exists(), "libcni cache left");
        // host-local runs nested in bridge's invocation (one log line per exec).
        assert!(
            log_has(&self.install, &self.cid, "ADD", "bridge")
                && log_has(&self.install, &self.cid, "DEL", "bridge"),
            "no ADD/DEL bridge in the wasm-cni log"
        );
    }

    fn serve(&self, marker: &str) -> Server {
        let www = self.dir.path().join("www");
        fs::create_dir_all(&www).expect("www");
        fs::write(www.join("index.html"), marker).expect("index");
        let c = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.pod.name,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
            ])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox httpd");
        Server(c)
    }
}

#[test]
fn libcni_k8s_pod_network_portmap() {
    require_root();
    let t0 = Instant::now();
    let caps = json!({"portMappings": [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]});
    let case = LibcniCase::new(
        "e2elpm",
        "k8s-pod-network-portmap.conflist",
        "198.51.100.20",
        caps,
    );
    case.node.kube_proxy_chains();
    let marker = format!("pod behind hostPort {}", case.cid);
    let _server = case.serve(&marker);
    let (ip, _veth) = case.add();

    let nat = case.node.nat();
    for want in [
        "CNI-HOSTPORT-DNAT",
        "CNI-DN-",
        &format!("--to-destination {ip}:80"),
        "-j KUBE-MARK-MASQ",
        &format!("id: \\\"{}\\\"", case.cid),
    ] {
        assert!(
            nat.contains(want),
            "missing {want} in the node's nat table:\n{nat}"
        );
    }
    assert!(
        log_has(&case.install, &case.cid, "ADD", "portmap"),
        "no ADD portmap in the wasm-cni log"
    );
    let first = http_eventually(
        &case.node.ns.name,
        &format!("http://{}:18081/", case.node.ip),
        &marker,
        Duration::from_secs(20),
    );
    http_eventually(
        &case.node.ns.name,
        "http://127.0.0.1:18081/",
        &marker,
        Duration::from_secs(10),
    );
    // (A pod reaching its own hostPort needs "hairpinMode", which the example does not set.)

    // CHECK through libcni notices a DNAT rule removed behind the plugin's back.
    let dnat = case
        .node
        .ns
        .exec("iptables -t nat -S")
        .lines()
        .find(|l| l.starts_with("-A CNI-DN-") && l.contains(&format!("--to-destination {ip}:80")))
        .map(str::to_string);
    let dnat = dnat.unwrap_or_else(|| panic!("no DNAT rule for {ip}"));
    case.node.ns.exec(&format!(
        "iptables -t nat {}",
        dnat.replacen("-A ", "-D ", 1)
    ));
    let err = case
        .client(&["check"])
        .expect_err("CHECK must fail without the DNAT rule");
    assert!(err.contains("check"), "{err}");

    case.del(&ip);
    assert!(
        log_has(&case.install, &case.cid, "DEL", "portmap"),
        "no DEL portmap in the wasm-cni log"
    );
    assert!(
        http_fails(
            &case.node.ns.name,
            &format!("http://{}:18081/", case.node.ip)
        ),
        "hostPort still answers after DEL"
    );
    eprintln!(
        "libcni portmap: first hostPort answer +{first:?}, total {:?}",
        t0.elapsed()
    );
}

#[test]
fn libcni_k8s_pod_network_bandwidth() {
    require_root();
    let t0 = Instant::now();
    let caps = json!({"bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 500_000, "egressRate": 20_000_000, "egressBurst": 1_000_000}});
    let case = LibcniCase::new(
        "e2elbw",
        "k8s-pod-network-bandwidth.conflist",
        "198.51.100.30",
        caps,
    );
    let marker = format!("pod behind a bandwidth limit {}", case.cid);
    let _server = case.serve(&marker);
    let (ip, veth) = case.add();

    let q = case.node.ns.exec(&format!("tc qdisc show dev {veth}"));
    assert!(
        q.contains("tbf") && q.contains("ingress"),
        "veth {veth}: no tbf/ingress qdisc:\n{q}"
    );
    let ifbs = case.node.ifbs();
    let ifb = ifbs
        .lines()
        .find_map(|l| l.split(": ").nth(1))
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .unwrap_or_else(|| panic!("no ifb device: {ifbs}"));
    assert!(
        case.node
            .ns
            .exec(&format!("tc qdisc show dev {ifb}"))
            .contains("tbf"),
        "no tbf on {ifb}"
    );
    let nat = case.node.nat();
    assert!(
        nat.contains(&format!("id: \\\"{}\\\"", case.cid)) && nat.contains("MASQUERADE"),
        "ipMasq rules missing:\n{nat}"
    );
    assert!(
        log_has(&case.install, &case.cid, "ADD", "bandwidth"),
        "no ADD bandwidth in the wasm-cni log"
    );
    let first = http_eventually(
        &case.node.ns.name,
        &format!("http://{ip}:80/"),
        &marker,
        Duration::from_secs(20),
    );

    case.del(&ip);
    assert!(
        log_has(&case.install, &case.cid, "DEL", "bandwidth"),
        "no DEL bandwidth in the wasm-cni log"
    );
    assert!(
        case.node.ifbs().trim().is_empty(),
        "ifb left: {}",
        case.node.ifbs()
    );
    let q = case.node.ns.exec("tc qdisc show");
    assert!(
        !q.contains("tbf") && !q.contains("ingress"),
        "qdisc left:\n{q}"
    );
    eprintln!(
        "libcni bandwidth: first answer +{first:?}, total {:?}",
        t0.elapsed()
    );
}

/// Modules built before the redesign (tests/fixtures/modules-d853799: the
/// WIT and SDK of that time) on this host: the Kubernetes chain with a
/// hostPort through libcni, traffic through it, CHECK, and a DEL that
/// leaves nothing. The interface module authors build against is unchanged.
#[test]
fn libcni_modules_built_before_the_redesign() {
    require_root();
    let old = workspace_root().join("tests/fixtures/modules-d853799");
    let caps = json!({"portMappings": [{"hostPort": 18083, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]});
    let case = LibcniCase::with(
        Install::from_modules("e2eold", &old, &[]),
        "e2eold",
        "k8s-pod-network-portmap.conflist",
        "198.51.100.22",
        caps,
    );
    let installed = fs::read(case.install.bin_dir().join("bridge.wasm")).expect("installed bridge");
    assert_eq!(
        installed,
        fs::read(old.join("bridge.wasm")).expect("old bridge"),
        "the old module is the one installed"
    );
    case.node.kube_proxy_chains();
    let marker = format!("old modules {}", case.cid);
    let _server = case.serve(&marker);
    let (ip, _veth) = case.add();
    http_eventually(
        &case.node.ns.name,
        &format!("http://{}:18083/", case.node.ip),
        &marker,
        Duration::from_secs(20),
    );
    case.ok(&["check"]);
    case.del(&ip);
    assert!(
        http_fails(
            &case.node.ns.name,
            &format!("http://{}:18083/", case.node.ip)
        ),
        "hostPort still answers after DEL"
    );
}
