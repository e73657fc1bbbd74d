//! Property/fuzz tier of issue #15, for every type: valid configs (those of
//! examples/ and the tests) and the CNI_* environment mutated at random
//! (missing/empty/garbage variables, non-UTF-8 bytes in env and stdin, huge
//! values, wrong cniVersion, wrong JSON types, deep nesting, bad CIDRs,
//! portMappings and rates, long container ids, ...). Needs root.
//!
//! Invariants for every call of ours: stdout is exactly one JSON document (an
//! error object with a numeric `code` and a `msg`, or a result), the exit
//! status is non-zero iff it is an error, no panic, abort, signal or hang,
//! stdout is empty only for a successful DEL/CHECK/GC/STATUS. Every ADD that
//! succeeded is followed by a DEL with the same input, which must succeed; and
//! no state is left in the node netns, the pods or the data dir (checked after
//! every batch of cases against the state before it).
//!
//! The same inputs go to the reference plugins (/usr/lib/cni) in their own
//! node, in the same run; their figures are printed, not asserted.
//!
//! Each type runs `WASM_CNI_CAMPAIGN_CASES` cases (default below, sized so the
//! tier takes a few minutes on 2 cores). Replay with the printed seed:
//! `WASM_CNI_CAMPAIGN_SEED=<seed>`; one case verbosely with
//! `WASM_CNI_CAMPAIGN_ONLY=<type>:<index>`. Nightly:
//! `WASM_CNI_CAMPAIGN_CASES=20000 cargo test --locked --release -p wasm-cni-tests --test campaign_fuzz -- --nocapture`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::campaign::*;
use wasm_cni_tests::*;

/// Cases per type in CI (each case is one to two calls on each side): ~5
/// minutes for the seven types on the 2-core CI machine.
const DEFAULT_CASES: usize = 2000;
/// Cases per leak check (the state is compared after each batch).
const BATCH: usize = 25;
/// Parallel workers per side.
const WORKERS: usize = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A call this slow is a stall. When both sides stall in the same batch (on
/// a loaded CI machine the kernel has held rtnl for tens of seconds while
/// namespaces of other tests were torn down), the batch's hangs and leaks are
/// reported as an environment stall rather than failures of ours.
const STALL: Duration = Duration::from_secs(20);

/// The reference gets every n-th input only, to keep the tier's time: its
/// ptp waits ~2.5 s for IPv6 DAD per ADD, its portmap execs iptables per
/// mapping.
fn reference_every(ty: &str) -> usize {
    match ty {
        "ptp" => 4,
        "portmap" | "bridge" => 2,
        _ => 1,
    }
}

/// One side of the comparison: its node, pods, data and binaries.
struct Side {
    ours: bool,
    ty: String,
    node: Node,
    /// per worker: a bare pod netns (bridge, ptp, loopback) and a wired one
    /// (portmap, bandwidth act on a prevResult)
    bare: Vec<Netns>,
    wired: Vec<WiredPod>,
    tmp: TempDir,
    install: Option<Install>,
}

impl Side {
    fn new(ours: bool, ty: &str) -> Side {
        let tag = if ours { "fzo" } else { "fzr" };
        let node = Node::new(tag);
        let bare = (0..WORKERS)
            .map(|_| Netns::new(&format!("{tag}b")))
            .collect();
        let wired = (0..WORKERS)
            .map(|w| {
                WiredPod::new(
                    &node,
                    &format!("{tag}w"),
                    &format!("wfz{w}"),
                    62,
                    w as u8 + 1,
                )
            })
            .collect();
        let tmp = TempDir::new(&format!("{tag}-{ty}"));
        std::fs::write(tmp.path().join("regular-file"), b"x").expect("tmp file");
        let install = ours.then(|| Install::new(&format!("{tag}-{ty}"), &[]));
        Side {
            ours,
            ty: ty.to_string(),
            node,
            bare,
            wired,
            tmp,
            install,
        }
    }

    /// The network name of this side's configs (mutated names keep it as
    /// a prefix, so what lands in /var/lib/cni/networks is attributed).
    fn net_name(&self) -> String {
        format!("wcni-fz-{}-{}", if self.ours { "o" } else { "r" }, self.ty)
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("networks")
    }

    fn bin(&self, ty: &str) -> PathBuf {
        match &self.install {
            Some(i) => i.bin_dir().join(ty),
            None => reference_plugin(ty),
        }
    }

    fn cni_path(&self) -> String {
        match &self.install {
            Some(i) => p(&i.bin_dir()),
            None => "/usr/lib/cni".into(),
        }
    }

    fn ctx(&self, w: usize) -> Ctx {
        Ctx {
            data: p(&self.data_dir()),
            tmp: p(self.tmp.path()),
            bare_netns: self.bare[w].path(),
            wired: self.wired[w].prev_result(),
            wired_netns: self.wired[w].ns.path(),
            cni_path: self.cni_path(),
            name: self.net_name(),
            extra_env: match &self.install {
                Some(i) => vec![
                    ("WASM_CNI_CACHE_DIR".into(), p(&i.cache_dir())),
                    ("WASM_CNI_LOG_FILE".into(), p(&i.log_file())),
                ],
                None => vec![],
            },
        }
    }

    /// Everything a plugin may leave behind, on this side.
    fn items(&self) -> Items {
        let mut m = self.node.items();
        for b in &self.bare {
            m.extend(pod_items(&b.name));
        }
        for w in &self.wired {
            m.extend(pod_items(&w.ns.name));
        }
        m.extend(data_items(&self.data_dir()));
        m.extend(machine_items(&self.net_name()));
        m
    }

    /// After a leak: the bare pods get their links removed so the next cases
    /// do not all fail on an existing eth0.
    fn heal(&self) {
        for b in &self.bare {
            for l in node_links(&b.name) {
                if l != "lo" {
                    let _ = sh_ok(&format!("ip -n {} link del {l}", b.name));
                }
            }
        }
    }
}

/// Entries a plugin created in the machine's default host-local data dir
/// (/var/lib/cni/networks) for one of this side's network names (they all
/// start with `prefix`): never expected, every valid config here names its
/// dataDir (issue #15: static IPAM, and a host-local refusing its config,
/// must not write there). Removed once seen.
fn machine_items(prefix: &str) -> Items {
    let dir = Path::new("/var/lib/cni/networks");
    let mut m = Items::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(prefix) {
            *m.entry(format!("machine file {}/{}", dir.display(), clip(&n, 60)))
                .or_default() += 1;
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(e.path());
        }
    }
    m
}

/// What a case may refer to on the side it runs on.
struct Ctx {
    data: String,
    tmp: String,
    bare_netns: String,
    wired: Value,
    wired_netns: String,
    cni_path: String,
    name: String,
    extra_env: Vec<(String, String)>,
}

/// One generated input.
struct Case {
    env: Vec<(OsString, OsString)>,
    stdin: Vec<u8>,
    command: Vec<u8>,
    desc: Vec<String>,
    /// a DEL of a valid config whose changes a teardown must tolerate
    del_must_succeed: bool,
}

impl Case {
    fn env_mut(&mut self, k: &str) -> Option<&mut OsString> {
        self.env.iter_mut().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    fn set(&mut self, k: &str, v: OsString) {
        match self.env_mut(k) {
            Some(slot) => *slot = v,
            None => self.env.push((k.into(), v)),
        }
    }

    fn remove(&mut self, k: &str) {
        self.env.retain(|(n, _)| n != k);
    }

    fn with_command(&self, cmd: &str) -> Vec<(OsString, OsString)> {
        let mut env = self.env.clone();
        for (k, v) in &mut env {
            if k == "CNI_COMMAND" {
                *v = cmd.into();
            }
        }
        env
    }

    fn show(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .filter(|(k, _)| k != "PATH")
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    clip(&format!("{:?}", k), 60),
                    clip(&format!("{:?}", v), 120)
                )
            })
            .collect();
        format!(
            "mutations {:?}\n  env {}\n  stdin {}",
            self.desc,
            env.join(" "),
            clip(&format!("{:?}", String::from_utf8_lossy(&self.stdin)), 700)
        )
    }
}

const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The valid configs a type's cases start from.
fn bases(ty: &str, c: &Ctx) -> Vec<(Value, Vec<(&'static str, String)>)> {
    let n = &c.name;
    let d = &c.data;
    let hl = |subnets: Value| {
        json!({"type": "host-local", "dataDir": d, "ranges": subnets,
               "routes": [{"dst": "0.0.0.0/0"}]})
    };
    let none = Vec::new;
    match ty {
        "loopback" => vec![
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "loopback"}),
                none(),
            ),
            (
                json!({"cniVersion": "0.3.1", "name": n, "type": "loopback"}),
                none(),
            ),
        ],
        "host-local" => vec![
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "host-local",
                       "ipam": hl(json!([[{"subnet": "10.60.0.0/24", "gateway": "10.60.0.1"}], [{"subnet": "fd60::/64"}]]))}),
                none(),
            ),
            (
                json!({"cniVersion": "0.3.1", "name": n, "type": "host-local",
                       "ipam": {"type": "host-local", "dataDir": d, "subnet": "10.60.1.0/24",
                                "rangeStart": "10.60.1.10", "rangeEnd": "10.60.1.200", "gateway": "10.60.1.1"}}),
                none(),
            ),
        ],
        "static" => vec![
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "static",
                       "ipam": {"type": "static", "dataDir": d,
                                "addresses": [{"address": "10.61.0.5/24", "gateway": "10.61.0.1"}, {"address": "fd61::5/64"}],
                                "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.61.0.1"]}}}),
                none(),
            ),
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "static",
                       "ipam": {"type": "static", "dataDir": d}}),
                vec![("CNI_ARGS", "IgnoreUnknown=1;IP=10.61.0.9/24".into())],
            ),
        ],
        "bridge" => vec![
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "bridge", "bridge": "wfzbr0",
                       "isGateway": true, "ipMasq": true,
                       "ipam": hl(json!([[{"subnet": "10.63.0.0/16"}], [{"subnet": "fd63::/64"}]]))}),
                none(),
            ),
            (
                json!({"cniVersion": "0.4.0", "name": n, "type": "bridge", "bridge": "wfzbr1",
                       "isGateway": true, "ipMasq": true, "hairpinMode": true, "mtu": 1400,
                       "ipam": hl(json!([[{"subnet": "10.64.0.0/16"}]]))}),
                none(),
            ),
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "bridge", "bridge": "wfzbr2",
                       "isGateway": true, "ipMasq": true, "ipMasqBackend": "nftables", "macspoofchk": true,
                       "ipam": hl(json!([[{"subnet": "10.66.0.0/16"}], [{"subnet": "fd66::/64"}]]))}),
                none(),
            ),
        ],
        "ptp" => vec![(
            json!({"cniVersion": "1.0.0", "name": n, "type": "ptp", "ipMasq": true, "mtu": 1400,
                   "ipam": hl(json!([[{"subnet": "10.65.0.0/16"}], [{"subnet": "fd65::/64"}]]))}),
            none(),
        )],
        "portmap" => vec![
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "portmap", "capabilities": {"portMappings": true},
                       "runtimeConfig": {"portMappings": [
                           {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                           {"hostPort": 8053, "containerPort": 53, "protocol": "udp"}]},
                       "prevResult": c.wired}),
                none(),
            ),
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "portmap", "capabilities": {"portMappings": true},
                       "backend": "nftables",
                       "runtimeConfig": {"portMappings": [
                           {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                           {"hostPort": 8053, "containerPort": 53, "protocol": "udp"}]},
                       "prevResult": c.wired}),
                none(),
            ),
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "portmap", "capabilities": {"portMappings": true},
                       "snat": true, "markMasqBit": 13,
                       "runtimeConfig": {"portMappings": [
                           {"hostPort": 9090, "containerPort": 90, "protocol": "tcp", "hostIP": "192.0.2.1"}]},
                       "prevResult": c.wired}),
                none(),
            ),
        ],
        "bandwidth" => vec![
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "bandwidth",
                       "ingressRate": 1_000_000, "ingressBurst": 100_000,
                       "egressRate": 2_000_000, "egressBurst": 200_000,
                       "prevResult": c.wired}),
                none(),
            ),
            (
                json!({"cniVersion": "1.0.0", "name": n, "type": "bandwidth", "capabilities": {"bandwidth": true},
                       "runtimeConfig": {"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 80_000,
                                                       "egressRate": 8_000_000, "egressBurst": 80_000}},
                       "prevResult": c.wired}),
                none(),
            ),
        ],
        other => panic!("unknown type {other}"),
    }
}

fn netns_for(ty: &str, c: &Ctx) -> String {
    match ty {
        "portmap" | "bandwidth" => c.wired_netns.clone(),
        _ => c.bare_netns.clone(),
    }
}

/// Sets `v[keys...] = x`, turning any non-object on the way into an object
/// (indexing a non-object with a key would panic).
fn put(v: &mut Value, keys: &[&str], x: Value) {
    let mut cur = v;
    for k in keys {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .map(|o| o.entry(k.to_string()).or_insert(Value::Null))
            .expect("object");
    }
    *cur = x;
}

/// A path into a JSON value.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Idx(usize),
}

fn paths(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                here.push(Seg::Key(k.clone()));
                out.push(here.clone());
                paths(x, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                here.push(Seg::Idx(i));
                out.push(here.clone());
                paths(x, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match s {
            Seg::Key(k) => cur.get_mut(k.as_str())?,
            Seg::Idx(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn last_key(path: &[Seg]) -> &str {
    match path.last() {
        Some(Seg::Key(k)) => k,
        _ => "",
    }
}

/// Keys the mutator never touches: they keep every plugin's state inside the
/// test's directories.
fn protected(path: &[Seg]) -> bool {
    path.iter()
        .any(|s| matches!(s, Seg::Key(k) if k == "dataDir" || k == "logFile" || k == "resolvConf"))
}

fn garbage_ascii(r: &mut Rng, max: usize) -> String {
    let n = 1 + r.below(max);
    (0..n)
        .map(|_| (0x20 + r.below(0x5f) as u8) as char)
        .filter(|ch| *ch != '/')
        .collect()
}

fn random_bytes(r: &mut Rng, max: usize) -> Vec<u8> {
    let n = 1 + r.below(max);
    (0..n)
        .map(|_| r.next_u64() as u8)
        .filter(|b| *b != 0)
        .collect()
}

/// A value of a different kind than the one there.
fn wrong_value(r: &mut Rng, name: &str) -> Value {
    match r.below(14) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1e308),
        4 => json!(18446744073709551615u64),
        5 => json!(""),
        6 => json!([]),
        7 => json!({}),
        8 => json!("x".repeat(70_000)),
        9 => json!("ünïcødé 容器 \u{202e}"),
        10 => json!([1, "a", null, {"k": []}]),
        11 => json!(format!("{name}{name}")),
        12 => json!(0),
        _ => json!("10.0.0.0/33"),
    }
}

const CIDRS: &[&str] = &[
    "10.0.0.0/33",
    "300.1.1.1/24",
    "::/129",
    "10.1.2.3",
    "",
    " 10.1.2.0/24",
    "10.1.2.0/24 ",
    "fe80::/64",
    "0.0.0.0/0",
    "10.99.0.0/31",
    "10.99.0.0/32",
    "10.99.0.1/24",
    "::ffff:10.0.0.0/120",
    "10.66.0.0/-1",
    "10.66.0.0/08",
    "fd66::/127",
    "1.2.3.4/24/5",
];

/// Changes one value somewhere in the config tree.
fn mutate_tree(r: &mut Rng, v: &mut Value, base: &str, desc: &mut Vec<String>) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    all.retain(|p| !protected(p));
    if all.is_empty() {
        return;
    }
    let path = r.pick(&all).clone();
    let key = last_key(&path).to_string();
    let Some(slot) = get_mut(v, &path) else {
        return;
    };
    let what = r.below(10);
    let new = match key.as_str() {
        // names stay inside the data dir: no '/', never "." or ".."
        "name" if path.len() == 1 => match r.below(6) {
            0 => json!(format!("{base}{}", "n".repeat(300))),
            1 => json!(""),
            2 => json!(42),
            3 => Value::Null,
            4 => json!(format!("{base}-é 容 sp")),
            _ => json!(format!("{base}-\\x")),
        },
        "type" if path.len() >= 2 => json!(*r.pick(&["host-local", "static", "dhcp", "nope", ""])),
        "cniVersion" => json!(*r.pick(&[
            "", "0.0.1", "9.9.9", "1.1.0", "0.1.0", "0.2.0", "0.3.0", "0.4.0", "1.0.0", "1.0",
            "1.0.0.0", "v1.0.0",
        ])),
        "subnet" | "address" | "dst" | "rangeStart" | "rangeEnd" | "gateway" | "hostIP"
            if what < 7 =>
        {
            json!(*r.pick(CIDRS))
        }
        "hostPort" | "containerPort" if what < 7 => json!(*r.pick(&[
            json!(0),
            json!(65536),
            json!(-1),
            json!("80"),
            json!(1.5),
            json!(4294967297u64),
        ])),
        "protocol" if what < 7 => json!(*r.pick(&["xyz", "TCP", "", "sctp", "icmp", "tcp;udp"])),
        k if k.ends_with("Rate") || k.ends_with("Burst") => json!(*r.pick(&[
            json!(0),
            json!(-5),
            json!(18446744073709551615u64),
            json!(4294967296u64),
            json!(1),
            json!("100"),
            json!(1e300),
        ])),
        "interface" if what < 7 => {
            json!(*r.pick(&[json!(7), json!(-1), json!(1000000), json!("1")]))
        }
        "mtu" => json!(*r.pick(&[json!(0), json!(67), json!(65536), json!(-1), json!(9000)])),
        "sandbox" => json!(*r.pick(&["/nonexistent", "", "/proc/self/ns/mnt"])),
        _ => {
            if what < 3 && !path.is_empty() {
                // delete
                let (parent_path, lastseg) = path.split_at(path.len() - 1);
                if let Some(parent) = get_mut(v, parent_path) {
                    match (&lastseg[0], parent) {
                        (Seg::Key(k), Value::Object(o)) => {
                            o.remove(k);
                        }
                        (Seg::Idx(i), Value::Array(a)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
                desc.push(format!("delete {}", show_path(&path)));
                return;
            }
            wrong_value(r, &key)
        }
    };
    desc.push(format!(
        "set {} = {}",
        show_path(&path),
        clip(&new.to_string(), 60)
    ));
    *slot = new;
}

fn show_path(p: &[Seg]) -> String {
    p.iter()
        .map(|s| match s {
            Seg::Key(k) => format!(".{k}"),
            Seg::Idx(i) => format!("[{i}]"),
        })
        .collect()
}

/// A type-aimed mutation: the fields each plugin validates.
/// Returns whether a DEL must still succeed after this change (invalid
/// portMappings must not stop a teardown, issue #15).
fn mutate_targeted(r: &mut Rng, v: &mut Value, ty: &str, desc: &mut Vec<String>) -> bool {
    let pick = r.below(4);
    let tolerable = ty == "portmap" && pick <= 1;
    match (ty, pick) {
        ("portmap", 0) => {
            let n = *r.pick(&[0usize, 1, 50, 150]);
            let pms: Vec<Value> = (0..n)
                .map(|k| json!({"hostPort": 10000 + k, "containerPort": 80, "protocol": if k % 2 == 0 {"tcp"} else {"udp"}}))
                .collect();
            put(v, &["runtimeConfig", "portMappings"], json!(pms));
            desc.push(format!("{n} portMappings"));
        }
        ("portmap", 1) => {
            let pm = json!(*r.pick(&[
                json!({"hostPort": 65536, "containerPort": 80, "protocol": "tcp"}),
                json!({"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "not-an-ip"}),
                json!({"hostPort": 8082, "containerPort": 80, "protocol": "bogus"}),
                json!({"hostPort": 8083}),
                json!({"hostPort": 8084, "containerPort": 0, "protocol": "tcp"}),
                json!({"hostPort": 8085, "containerPort": 80, "protocol": "tcp", "hostIP": "fd00::1"}),
                json!("8086:80"),
                json!(null),
            ]));
            put(v, &["runtimeConfig", "portMappings"], json!([pm.clone()]));
            desc.push(format!("portMappings [{pm}]"));
        }
        ("portmap" | "bandwidth", 2) => {
            let prev = json!(*r.pick(&[
                json!(null),
                json!({}),
                json!({"cniVersion": "1.0.0", "ips": []}),
                json!({"cniVersion": "1.0.0", "interfaces": [], "ips": [{"address": "10.62.1.2/24", "interface": 5}]}),
                json!({"cniVersion": "1.0.0", "interfaces": [{"name": "nosuchdev0"}], "ips": [{"address": "10.62.1.2/24"}]}),
                json!({"cniVersion": "1.0.0", "interfaces": [{"name": "lo"}], "ips": [{"address": "bogus", "interface": 0}]}),
                json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.62.1.2/24"}}),
            ]));
            desc.push(format!("prevResult {}", clip(&prev.to_string(), 80)));
            put(v, &["prevResult"], prev);
        }
        ("bandwidth", _) => {
            let k = *r.pick(&["ingressRate", "ingressBurst", "egressRate", "egressBurst"]);
            let x = json!(*r.pick(&[
                json!(0),
                json!(1),
                json!(-1),
                json!(18446744073709551615u64),
                json!(34359738368u64),
                json!("1000"),
                json!(null),
            ]));
            desc.push(format!("{k} = {x}"));
            put(v, &[k], x);
        }
        ("bridge" | "ptp" | "host-local", _) => {
            let cidr = *r.pick(CIDRS);
            if v.get("ipam").is_some_and(Value::is_object) {
                put(v, &["ipam", "ranges"], json!([[{"subnet": cidr}]]));
            }
            desc.push(format!("ranges [[{cidr}]]"));
        }
        ("static", _) => {
            let cidr = *r.pick(CIDRS);
            if v.get("ipam").is_some_and(Value::is_object) {
                put(v, &["ipam", "addresses"], json!([{"address": cidr}]));
            }
            desc.push(format!("addresses [{cidr}]"));
        }
        _ => {
            let x = json!(*r.pick(VERSIONS));
            desc.push(format!("cniVersion {x}"));
            put(v, &["cniVersion"], x);
        }
    }
    tolerable
}

/// One or two changes a DEL of a valid config must tolerate (CNI spec: DEL
/// completes even if resources are missing; issue #15 item 7: an unusable
/// module cache or log file, invalid portMappings; item 1: non-UTF-8 env).
fn tolerable_del(r: &mut Rng, case: &mut Case, conf: &mut Value, ty: &str, c: &Ctx) {
    for _ in 0..1 + r.below(2) {
        match r.below(8) {
            0 => {
                case.desc.push("X=<0xff>".into());
                case.set("X", os(b"\xff"));
            }
            1 => {
                case.desc.push("<0xff>NAME=1".into());
                case.env.push((os(b"\xffNAME"), "1".into()));
            }
            2 => {
                let v = format!("{}/regular-file", c.tmp);
                case.desc.push(format!("WASM_CNI_CACHE_DIR={v}"));
                case.set("WASM_CNI_CACHE_DIR", v.into());
            }
            3 => {
                let v = format!("{}/missing/cache", c.tmp);
                case.desc.push(format!("WASM_CNI_CACHE_DIR={v}"));
                case.set("WASM_CNI_CACHE_DIR", v.into());
            }
            4 => {
                case.desc.push("WASM_CNI_CACHE_DIR=/proc/x".into());
                case.set("WASM_CNI_CACHE_DIR", "/proc/x".into());
            }
            5 => {
                let v = format!("{}/missing/dir/log", c.tmp);
                case.desc.push(format!("WASM_CNI_LOG_FILE={v}"));
                case.set("WASM_CNI_LOG_FILE", v.into());
            }
            6 => {
                case.desc.push("CNI_NETNS=/nonexistent/ns".into());
                case.set("CNI_NETNS", "/nonexistent/ns".into());
            }
            _ if ty == "portmap" => {
                let pm = r
                    .pick(&[
                        json!({"hostPort": 65536, "containerPort": 80, "protocol": "tcp"}),
                        json!({"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "not-an-ip"}),
                        json!({"hostPort": 8082, "containerPort": 80, "protocol": "bogus"}),
                        json!({"hostPort": -1, "containerPort": 80, "protocol": "tcp"}),
                    ])
                    .clone();
                case.desc.push(format!("portMappings [{pm}]"));
                put(conf, &["runtimeConfig", "portMappings"], json!([pm]));
            }
            _ => {
                case.desc
                    .push("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=x".into());
                case.set("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x".into());
            }
        }
    }
}

const CNI_VARS: &[&str] = &[
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

fn interesting_env(r: &mut Rng, var: &str, c: &Ctx) -> OsString {
    let s: String = match var {
        "CNI_COMMAND" => (*r.pick(&[
            "add",
            "ADD ",
            "FOO",
            "VERSION",
            "DEL",
            "CHECK",
            "GC",
            "STATUS",
            "ＡＤＤ",
        ]))
        .into(),
        "CNI_CONTAINERID" => match r.below(8) {
            0 => "c".repeat(300),
            1 => "c".repeat(2100),
            2 => "c".repeat(4100),
            3 => "a/b".into(),
            4 => "../x".into(),
            5 => "x y".into(),
            6 => ".".into(),
            _ => "容器".into(),
        },
        "CNI_NETNS" => match r.below(6) {
            0 => "/nonexistent/ns".into(),
            1 => "/".into(),
            2 => "/dev/null".into(),
            3 => "relative/ns".into(),
            4 => "/proc/self/ns/mnt".into(),
            _ => format!("{}/regular-file", c.tmp),
        },
        "CNI_IFNAME" => (*r.pick(&[
            "eth0eth0eth0eth0x",
            "lo",
            "a/b",
            "eth 0",
            ".",
            "..",
            "eth0:1",
            "тест",
            "eth1",
        ]))
        .into(),
        "CNI_ARGS" => (*r.pick(&[
            "IgnoreUnknown=1",
            "foo",
            "=",
            ";;;",
            "K8S_POD_NAME=x;K8S_POD_NAMESPACE=y;IgnoreUnknown=true",
            "IP=10.60.0.77",
            "IgnoreUnknown=1;IP=notanip",
            "IgnoreUnknown=1;MAC=zz:zz",
            "IgnoreUnknown=1;IP=10.60.0.77,fd60::77",
        ]))
        .into(),
        _ => match r.below(4) {
            0 => String::new(),
            1 => "/nonexistent".into(),
            2 => "::::".into(),
            _ => format!("{}:/nonexistent", c.cni_path),
        },
    };
    s.into()
}

/// Changes the environment.
/// Returns whether a DEL must still succeed after this change (the CNI spec:
/// DEL completes even if resources are missing; issue #15: an unusable
/// module cache or log file, or stray bytes in the environment, must not stop
/// a teardown).
fn mutate_env(r: &mut Rng, case: &mut Case, c: &Ctx) -> bool {
    let var = *r.pick(CNI_VARS);
    let branch = r.below(12);
    match branch {
        0 => {
            case.remove(var);
            case.desc.push(format!("unset {var}"));
        }
        1 => {
            case.set(var, OsString::new());
            case.desc.push(format!("{var}=''"));
        }
        2 => {
            let g = garbage_ascii(r, 40);
            case.desc.push(format!("{var}={g:?}"));
            case.set(var, g.into());
        }
        3 => {
            let mut b = case
                .env_mut(var)
                .map(|v| v.as_encoded_bytes().to_vec())
                .unwrap_or_default();
            b.extend([0xff, 0xfe, b'x', 0xc3]);
            case.desc.push(format!("{var} += non-UTF-8"));
            case.set(var, os(&b));
        }
        4 => {
            let n = *r.pick(&[4096usize, 70_000, 120_000]);
            case.desc.push(format!("{var} = {n} chars"));
            case.set(var, "a".repeat(n).into());
        }
        5 | 6 => {
            let v = interesting_env(r, var, c);
            case.desc
                .push(format!("{var}={}", clip(&format!("{v:?}"), 40)));
            case.set(var, v);
        }
        7 => {
            case.desc.push("X=<0xff>".into());
            case.set("X", os(b"\xff"));
        }
        8 => {
            case.desc.push("<0xff>NAME=1".into());
            case.env.push((os(b"\xffNAME"), "1".into()));
        }
        9 => {
            let k = *r.pick(&[
                "WASM_CNI_TIMEOUT_MS",
                "WASM_CNI_MEMORY_MIB",
                "WASM_CNI_LOG_LEVEL",
            ]);
            let v = *r.pick(&[
                "0",
                "-1",
                "abc",
                "17592186044416",
                "1",
                "99999999999999999999",
                "",
                "debug",
                "16",
            ]);
            case.desc.push(format!("{k}={v:?}"));
            case.set(k, v.into());
        }
        10 => {
            let (k, v) = match r.below(3) {
                0 => ("WASM_CNI_CACHE_DIR", format!("{}/regular-file", c.tmp)),
                1 => ("WASM_CNI_CACHE_DIR", format!("{}/missing/cache", c.tmp)),
                _ => ("WASM_CNI_LOG_FILE", format!("{}/missing/dir/log", c.tmp)),
            };
            case.desc.push(format!("{k}={v}"));
            case.set(k, v.into());
        }
        _ => {
            let v = interesting_env(r, "CNI_CONTAINERID", c);
            case.desc
                .push(format!("CNI_CONTAINERID={}", clip(&format!("{v:?}"), 40)));
            case.set("CNI_CONTAINERID", v);
        }
    }
    match branch {
        7 | 8 | 10 => true,
        5 | 6 => {
            var == "CNI_NETNS"
                && case
                    .env_mut("CNI_NETNS")
                    .is_some_and(|v| v == "/nonexistent/ns")
        }
        _ => false,
    }
}

/// Changes the bytes on stdin (after the tree is serialised).
fn mutate_bytes(r: &mut Rng, s: &mut Vec<u8>, desc: &mut Vec<String>) {
    match r.below(10) {
        0 => {
            s.clear();
            desc.push("empty stdin".into());
        }
        1 => {
            let at = r.below(s.len().max(1));
            s.truncate(at);
            desc.push(format!("truncated at {at}"));
        }
        2 => {
            *s = random_bytes(r, 200);
            desc.push("random bytes".into());
        }
        3 => {
            let tails: [&[u8]; 5] = [b"{}", b" x", b"\n{\"a\":1}", b"]", b"\0"];
            let tail = r.pick(&tails);
            s.extend_from_slice(tail);
            desc.push(format!("appended {:?}", String::from_utf8_lossy(tail)));
        }
        4 => {
            // a non-UTF-8 byte inside the first string after the opening brace
            if let Some(i) = s.iter().position(|b| *b == b'"') {
                s.splice(i + 1..i + 1, [0xff, 0xc3]);
            }
            desc.push("non-UTF-8 in a string".into());
        }
        5 => {
            let n = *r.pick(&[100_000usize, 300_000]);
            let junk = format!("\"junk\":[{}0],", "0,".repeat(n));
            if s.first() == Some(&b'{') {
                s.splice(1..1, junk.bytes());
            }
            desc.push(format!("unknown array of {n}"));
        }
        6 => {
            let depth = *r.pick(&[50usize, 127, 129, 1000, 100_000]);
            let junk = format!("\"deep\":{}{},", "[".repeat(depth), "]".repeat(depth));
            if s.first() == Some(&b'{') {
                s.splice(1..1, junk.bytes());
            }
            desc.push(format!("nesting depth {depth}"));
        }
        7 => {
            s.splice(0..0, [0xef, 0xbb, 0xbf]);
            desc.push("BOM".into());
        }
        8 => {
            let dup = b"\"cniVersion\":\"0.1.0\",";
            if s.first() == Some(&b'{') {
                s.splice(1..1, dup.iter().copied());
            }
            desc.push("duplicate cniVersion key".into());
        }
        _ => {
            let n = *r.pick(&[1usize << 20, 3 << 20]);
            let pad = " ".repeat(n);
            if s.first() == Some(&b'{') {
                s.splice(1..1, pad.bytes());
            }
            desc.push(format!("{n} bytes of whitespace"));
        }
    }
}

/// Case `idx` of type `ty`: a pure function of (seed, type, idx, ctx).
fn gen(seed: u64, ty: &str, idx: usize, c: &Ctx) -> Case {
    let mut r = Rng::for_case(seed, ty, idx as u64);
    let bases = bases(ty, c);
    let (mut conf, base_env) = r.pick(&bases).clone();
    let command = match r.below(20) {
        0..=12 => "ADD",
        13..=15 => "DEL",
        16 => "CHECK",
        17 => "VERSION",
        18 => "GC",
        _ => "STATUS",
    };
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), path_env()),
        ("CNI_COMMAND".into(), command.into()),
        ("CNI_CONTAINERID".into(), format!("fz-{ty}-{idx}").into()),
        ("CNI_NETNS".into(), netns_for(ty, c).into()),
        ("CNI_IFNAME".into(), "eth0".into()),
        ("CNI_PATH".into(), c.cni_path.clone().into()),
    ];
    for (k, v) in &c.extra_env {
        env.push((k.into(), v.into()));
    }
    for (k, v) in base_env {
        env.push((k.into(), v.into()));
    }
    if command == "GC" {
        conf["cniVersion"] = json!("1.1.0");
        conf["cni.dev/valid-attachments"] = json!([]);
    }
    let mut case = Case {
        env,
        stdin: Vec::new(),
        command: Vec::new(),
        desc: vec![format!("base {command}")],
        del_must_succeed: false,
    };
    // ~1 in 6 cases stay valid: the success paths (and their DEL) must be
    // exercised too.
    let n = if r.one_in(6) { 0 } else { 1 + r.below(3) };
    let mut byte_mut = false;
    let mut tolerable = true;
    if command == "DEL" && r.one_in(2) {
        // half the DELs get only what a teardown must tolerate
        tolerable_del(&mut r, &mut case, &mut conf, ty, c);
        case.stdin = serde_json::to_vec(&conf).expect("serialise");
        case.command = b"DEL".to_vec();
        case.del_must_succeed = true;
        case.desc.push("(a DEL that must succeed)".into());
        return case;
    }
    for _ in 0..n {
        match r.below(10) {
            0..=2 => tolerable &= mutate_env(&mut r, &mut case, c),
            3..=5 => {
                mutate_tree(&mut r, &mut conf, &c.name, &mut case.desc);
                tolerable = false;
            }
            6 | 7 => tolerable &= mutate_targeted(&mut r, &mut conf, ty, &mut case.desc),
            _ => {
                byte_mut = true;
                tolerable = false;
            }
        }
    }
    case.stdin = serde_json::to_vec(&conf).expect("serialise");
    if byte_mut {
        mutate_bytes(&mut r, &mut case.stdin, &mut case.desc);
    }
    case.command = case
        .env
        .iter()
        .find(|(k, _)| k == "CNI_COMMAND")
        .map(|(_, v)| v.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    case.del_must_succeed = tolerable && case.command == b"DEL";
    if case.del_must_succeed {
        case.desc.push("(a DEL that must succeed)".into());
    }
    case
}

/// What happened to one case on one side.
struct Outcome {
    verdict: Verdict,
    /// a protocol failure of ours, with why
    problem: Option<String>,
    took: Duration,
    del_required: bool,
    del_failed: bool,
    /// a call hung or took longer than STALL
    stalled: bool,
}

/// Env settings under which a call may legitimately fail for lack of time or
/// memory (a DEL under them is retried without them, as an admin would).
const LIMITS: &[&str] = &["WASM_CNI_TIMEOUT_MS", "WASM_CNI_MEMORY_MIB"];

fn run_case(side: &Side, ty: &str, case: &Case) -> Outcome {
    let start = Instant::now();
    let bin = side.bin(ty);
    let e = side
        .node
        .run(&bin, &case.env, &case.stdin, None, CALL_TIMEOUT);
    let (verdict, why) = judge(&case.command, &e);
    let mut problem = (!why.is_empty()).then_some(why);
    let mut stalled = e.timed_out || e.elapsed > STALL;
    if e.timed_out && case.command == b"ADD" {
        // The test killed it: as a runtime would after a failed ADD, DEL.
        let d = side.node.run(
            &bin,
            &case.with_command("DEL"),
            &case.stdin,
            None,
            CALL_TIMEOUT,
        );
        stalled |= d.timed_out || d.elapsed > STALL;
    }
    let del_failed = case.del_must_succeed && verdict != Verdict::Result;
    if del_failed && problem.is_none() {
        problem = Some(format!(
            "a DEL that must succeed (valid config, only changes a teardown must tolerate) failed: {}",
            e.brief()
        ));
    }
    if case.command == b"ADD" && e.ok() {
        // As a runtime does after a successful ADD (and before the next
        // case reuses the pod): DEL with the same input.
        let env = case.with_command("DEL");
        let mut d = side.node.run(&bin, &env, &case.stdin, None, CALL_TIMEOUT);
        stalled |= d.timed_out || d.elapsed > STALL;
        let (mut dv, mut dwhy) = judge(b"DEL", &d);
        let limited = env.iter().any(|(k, _)| LIMITS.iter().any(|l| k == *l));
        if dv == Verdict::Error && limited {
            let env: Vec<_> = env
                .into_iter()
                .filter(|(k, _)| !LIMITS.iter().any(|l| k == *l))
                .collect();
            d = side.node.run(&bin, &env, &case.stdin, None, CALL_TIMEOUT);
            (dv, dwhy) = judge(b"DEL", &d);
        }
        if dv != Verdict::Result && problem.is_none() {
            problem = Some(format!(
                "DEL after a successful ADD failed ({dv:?} {dwhy}): {}",
                d.brief()
            ));
        }
    }
    Outcome {
        verdict,
        problem,
        took: start.elapsed(),
        del_required: case.del_must_succeed,
        del_failed,
        stalled,
    }
}

/// The cases of a batch a leaked item names: by container id, or by the
/// sha512(network + id) prefix every per-pod chain, ifb and comment carries.
fn attribute(leaked: &[String], cases: &[(usize, Case)], default_name: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (idx, c) in cases {
        let cid = c
            .env
            .iter()
            .find(|(k, _)| k == "CNI_CONTAINERID")
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = serde_json::from_slice::<Value>(&c.stdin)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string))
            .unwrap_or_else(|| default_name.to_string());
        let hash = wasm_cni::kernel::masq::chain_name(&name, &cid)[4..16].to_string();
        let hit = leaked.iter().any(|l| {
            l.contains(&hash)
                || (cid.len() >= 4
                    && (l.contains(&format!("{cid} "))
                        || l.contains(&format!("{cid}\""))
                        || l.ends_with(&cid)
                        || l.contains(&format!("{cid}\r"))))
        });
        if hit {
            out.push(*idx);
        }
    }
    out
}

fn campaign(ty: &str) {
    require_root();
    let seed = seed(&format!("fuzz {ty}"));
    let only: Option<usize> = knob("WASM_CNI_CAMPAIGN_ONLY").and_then(|s| {
        let (t, i) = s.split_once(':')?;
        (t == ty).then(|| i.parse().ok())?
    });
    if knob("WASM_CNI_CAMPAIGN_ONLY").is_some() && only.is_none() {
        return;
    }
    let n = if only.is_some() {
        1
    } else {
        cases(DEFAULT_CASES)
    };
    let start = Instant::now();
    let sides = [Side::new(true, ty), Side::new(false, ty)];
    let mut tallies = [Tally::default(), Tally::default()];
    let failures = Mutex::new(Vec::<String>::new());
    let ids: Vec<usize> = match only {
        Some(i) => vec![i],
        None => (0..n).collect(),
    };
    let mut baselines: Vec<Items> = sides.iter().map(Side::items).collect();
    let mut slowest: [Vec<(Duration, usize)>; 2] = [Vec::new(), Vec::new()];
    let mut stalls: Vec<String> = Vec::new();
    for batch in ids.chunks(BATCH) {
        // Both sides run the batch at once, each with WORKERS workers.
        let results: Vec<Vec<(usize, Outcome)>> = std::thread::scope(|s| {
            let hs: Vec<_> = sides
                .iter()
                .map(|side| {
                    s.spawn(move || {
                        let every = if side.ours { 1 } else { reference_every(ty) };
                        let slots: Vec<(usize, usize)> = batch
                            .iter()
                            .filter(|idx| *idx % every == 0)
                            .enumerate()
                            .map(|(k, idx)| (k % WORKERS, *idx))
                            .collect();
                        // worker w runs the cases assigned to it, in order
                        let per_worker: Vec<Vec<(usize, Outcome)>> =
                            par_map(&(0..WORKERS).collect::<Vec<_>>(), WORKERS, |w| {
                                let ctx = side.ctx(*w);
                                slots
                                    .iter()
                                    .filter(|(sw, _)| sw == w)
                                    .map(|(_, idx)| {
                                        let case = gen(seed, ty, *idx, &ctx);
                                        (*idx, run_case(side, ty, &case))
                                    })
                                    .collect()
                            });
                        per_worker.into_iter().flatten().collect()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("side thread"))
                .collect()
        });
        let joint_stall = results.iter().all(|res| res.iter().any(|(_, o)| o.stalled));
        for (si, res) in results.iter().enumerate() {
            for (idx, o) in res {
                tallies[si].count(o.verdict);
                tallies[si].dels_required += o.del_required as usize;
                tallies[si].dels_failed += o.del_failed as usize;
                slowest[si].push((o.took, *idx));
                slowest[si].sort_by(|a, b| b.cmp(a));
                slowest[si].truncate(3);
                if si == 0 && joint_stall && o.stalled {
                    stalls.push(format!(
                        "case {idx}: {}",
                        o.problem
                            .as_deref()
                            .map(|p| clip(p, 200))
                            .unwrap_or_default()
                    ));
                } else if si == 0 {
                    if let Some(p) = &o.problem {
                        let case = gen(seed, ty, *idx, &sides[0].ctx(0));
                        failures.lock().expect("lock").push(format!(
                            "{ty} case {idx}: {p}\n  {}\n  repro: WASM_CNI_CAMPAIGN_SEED={seed} WASM_CNI_CAMPAIGN_ONLY={ty}:{idx}",
                            case.show()
                        ));
                    }
                }
            }
        }
        // Leaks: what the batch left, on each side.
        for (si, side) in sides.iter().enumerate() {
            let now = side.items();
            let mut leaked = added(&baselines[si], &now);
            if !leaked.is_empty() {
                // the kernel tears links down asynchronously: look again
                std::thread::sleep(Duration::from_millis(300));
                let now2 = side.items();
                leaked = added(&baselines[si], &now2);
                baselines[si] = now2;
            } else {
                baselines[si] = now;
            }
            tallies[si].leaks += leaked.len();
            if !leaked.is_empty() {
                side.heal();
                baselines[si] = side.items();
            }
            if si == 0 && !leaked.is_empty() && joint_stall {
                stalls.push(format!(
                    "cases {}..={} left {:?}",
                    batch[0],
                    batch[batch.len() - 1],
                    leaked.iter().map(|l| clip(l, 120)).collect::<Vec<_>>()
                ));
            } else if si == 0 && !leaked.is_empty() {
                let ctx = side.ctx(0);
                let cases: Vec<(usize, Case)> = batch
                    .iter()
                    .map(|idx| (*idx, gen(seed, ty, *idx, &ctx)))
                    .collect();
                let named = attribute(&leaked, &cases, &ctx.name);
                let shown: Vec<String> = if named.is_empty() {
                    cases
                        .iter()
                        .map(|(idx, c)| format!("    case {idx}: {:?}", c.desc))
                        .collect()
                } else {
                    cases
                        .iter()
                        .filter(|(idx, _)| named.contains(idx))
                        .map(|(idx, c)| format!("    case {idx}: {}", c.show()))
                        .collect()
                };
                failures.lock().expect("lock").push(format!(
                    "{ty} cases {}..={} left state behind: {:?}\n  {} (repro: WASM_CNI_CAMPAIGN_SEED={seed} WASM_CNI_CAMPAIGN_ONLY={ty}:<case>):\n{}",
                    batch[0],
                    batch[batch.len() - 1],
                    leaked.iter().map(|l| clip(l, 200)).collect::<Vec<_>>(),
                    if named.is_empty() { "no case named by the items; the batch was" } else { "named by the items" },
                    shown.join("\n")
                ));
            }
        }
        if only.is_some() {
            let ctx = sides[0].ctx(0);
            let case = gen(seed, ty, batch[0], &ctx);
            let e = sides[0].node.run(
                &sides[0].bin(ty),
                &case.env,
                &case.stdin,
                None,
                CALL_TIMEOUT,
            );
            eprintln!("{}\n  (re-run) {}", case.show(), e.brief());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    for (si, side) in sides.iter().enumerate() {
        let who = if side.ours { "ours" } else { "reference" };
        let ctx = side.ctx(0);
        for (took, idx) in &slowest[si] {
            eprintln!(
                "[fuzz] {ty}: slow ({who}) case {idx} {:.2} s: {:?}",
                took.as_secs_f64(),
                gen(seed, ty, *idx, &ctx).desc
            );
        }
    }
    eprintln!(
        "[fuzz] {ty}: seed {seed}, {secs:.0} s\n[fuzz] {ty}: ours      {}\n[fuzz] {ty}: reference {}",
        tallies[0].line(),
        tallies[1].line()
    );
    for st in &stalls {
        eprintln!(
            "[fuzz] {ty}: environment stall (both sides in the same batch), not counted: {st}"
        );
    }
    let failures = failures.into_inner().expect("lock");
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(12).collect();
        panic!(
            "{ty}: {} failures (seed {seed}); the first {}:\n{}",
            failures.len(),
            shown.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
        );
    }
}

#[test]
fn fuzz_loopback() {
    campaign("loopback");
}

#[test]
fn fuzz_host_local() {
    campaign("host-local");
}

#[test]
fn fuzz_static() {
    campaign("static");
}

#[test]
fn fuzz_bridge() {
    campaign("bridge");
}

#[test]
fn fuzz_ptp() {
    campaign("ptp");
}

#[test]
fn fuzz_portmap() {
    campaign("portmap");
}

#[test]
fn fuzz_bandwidth() {
    campaign("bandwidth");
}
