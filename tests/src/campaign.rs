//! Support for the campaign tiers of issue #15 (`tests/tests/campaign_*.rs`):
//! a seeded PRNG, the seed and case-count knobs, running a plugin inside a
//! throwaway "node" netns with raw (possibly non-UTF-8) env and stdin and an
//! optional kill -9, the CNI output invariants, and snapshots of everything a
//! plugin can leave behind in a node (links, addresses, routes, iptables and
//! nftables rules, qdiscs, host-local files) to diff against a pristine one.
//!
//! Reproduce a failing run with the seed it printed:
//! `WASM_CNI_CAMPAIGN_SEED=<seed>`; lengthen it with
//! `WASM_CNI_CAMPAIGN_CASES=<n>` (cases per type for the fuzz tier, kills for
//! the crash tier). A nightly job runs e.g.
//! `WASM_CNI_CAMPAIGN_CASES=20000 cargo test --release -p wasm-cni-tests --test campaign_fuzz`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{require_root, sh, Netns};

/// splitmix64: tiny, seedable, good enough to pick mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for one case, independent of every other case's draws.
    pub fn for_case(seed: u64, stream: &str, idx: u64) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stream.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let mut r = Rng(seed ^ h ^ idx.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// The campaign seed: `WASM_CNI_CAMPAIGN_SEED`, else from the clock. Printed
/// so a failure can be replayed.
/// A `WASM_CNI_CAMPAIGN_*` knob (read with var_os: a stray non-UTF-8
/// value is taken lossily, never an error).
pub fn knob(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

pub fn seed(tier: &str) -> u64 {
    let s = knob("WASM_CNI_CAMPAIGN_SEED")
        .and_then(|s| {
            let s = s.trim();
            s.strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| s.parse().ok())
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("[{tier}] seed {s} (replay: WASM_CNI_CAMPAIGN_SEED={s})");
    s
}

/// `WASM_CNI_CAMPAIGN_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    knob("WASM_CNI_CAMPAIGN_CASES")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// What one plugin process did.
#[derive(Debug, Clone)]
pub struct Exit {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The kill -9 was sent while the process was still running.
    pub killed: bool,
    pub elapsed: Duration,
}

impl Exit {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.stdout).ok()
    }

    pub fn brief(&self) -> String {
        format!(
            "exit {:?} signal {:?}{} stdout {:?} stderr {:?}",
            self.code,
            self.signal,
            if self.timed_out { " TIMED OUT" } else { "" },
            clip(&String::from_utf8_lossy(&self.stdout), 600),
            clip(&String::from_utf8_lossy(&self.stderr), 600)
        )
    }
}

pub fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len())
}

/// Runs `bin` inside netns `ns` (`ip netns exec`, which execs it: the pid is
/// the plugin's) with exactly `env` and `stdin`. With `kill_after`, sends
/// SIGKILL after that delay. Anything still running at `timeout` is killed and
/// reported as timed out.
pub fn run_in_ns(
    ns: &str,
    bin: &Path,
    env: &[(OsString, OsString)],
    stdin: &[u8],
    kill_after: Option<Duration>,
    timeout: Duration,
) -> Exit {
    let mut c = Command::new("/usr/sbin/ip");
    c.args(["netns", "exec", ns]).arg(bin).env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().expect("spawn ip netns exec");
    let mut si = child.stdin.take();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(si) = si.as_mut() {
            let _ = si.write_all(&input);
        }
    });
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let ro = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let re = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let mut killed = false;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        let el = start.elapsed();
        if let Some(k) = kill_after {
            if !killed && el >= k {
                killed = child.kill().is_ok();
                continue;
            }
        }
        if el >= timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        let step = match kill_after {
            Some(k) if !killed && k > el => (k - el).min(Duration::from_millis(1)),
            _ => Duration::from_micros(500),
        };
        std::thread::sleep(step);
    };
    let elapsed = start.elapsed();
    let _ = writer.join();
    let stdout = ro.join().unwrap_or_default();
    let stderr = re.join().unwrap_or_default();
    Exit {
        stdout,
        stderr,
        code: status.code(),
        signal: status.signal(),
        timed_out,
        killed: killed && status.signal() == Some(9),
        elapsed,
    }
}

/// The environment a runtime passes, as raw bytes.
pub fn env_of(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

pub fn os(b: &[u8]) -> OsString {
    OsStr::from_bytes(b).to_os_string()
}

/// How one CNI call ended, judged by the protocol's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Non-zero exit and exactly one JSON error object (numeric code, msg).
    Error,
    /// Zero exit with a JSON result (or nothing, where the spec allows it).
    Result,
    /// Exit 134, a signal, a Rust or Go panic.
    Panic,
    /// Still running at the timeout (killed).
    Hang,
    /// Anything else: several documents, garbage, exit status and stdout
    /// disagreeing, an empty stdout where output is required.
    Violation,
}

/// Judges one call of `command` (the CNI_COMMAND value as sent, possibly
/// garbage; empty if unset). Returns the verdict and, when it is not clean, why.
pub fn judge(command: &[u8], e: &Exit) -> (Verdict, String) {
    let stderr = String::from_utf8_lossy(&e.stderr);
    if e.timed_out {
        return (
            Verdict::Hang,
            format!("hung past the timeout of {:?}", e.elapsed),
        );
    }
    if e.signal.is_some() || e.code == Some(134) {
        return (Verdict::Panic, format!("died: {}", e.brief()));
    }
    if stderr.contains("panicked at") || stderr.contains("panic: ") || stderr.contains("goroutine ")
    {
        return (Verdict::Panic, format!("panicked: {}", e.brief()));
    }
    let ok = e.ok();
    let text = String::from_utf8_lossy(&e.stdout);
    if text.trim().is_empty() {
        // CNI spec: DEL, CHECK, GC and STATUS print nothing on success; a
        // call without CNI_COMMAND is no CNI call (the reference prints its
        // "about" text to stderr and exits 0).
        let may_be_empty =
            command.is_empty() || matches!(command, b"DEL" | b"CHECK" | b"GC" | b"STATUS");
        return if ok && may_be_empty {
            (Verdict::Result, String::new())
        } else {
            (Verdict::Violation, format!("empty stdout: {}", e.brief()))
        };
    }
    // Exactly one document: serde_json rejects trailing non-whitespace.
    let v: Value = match serde_json::from_slice(&e.stdout) {
        Ok(v) => v,
        Err(err) => {
            return (
                Verdict::Violation,
                format!("stdout is not one JSON document ({err}): {}", e.brief()),
            )
        }
    };
    let Some(o) = v.as_object() else {
        return (
            Verdict::Violation,
            format!("stdout is not a JSON object: {}", e.brief()),
        );
    };
    let is_error = o.contains_key("code");
    if is_error {
        let code_ok = o.get("code").is_some_and(|c| c.as_u64().is_some());
        let msg_ok = o.get("msg").is_some_and(|m| m.is_string());
        if !code_ok || !msg_ok {
            return (
                Verdict::Violation,
                format!("error without numeric code and msg: {}", e.brief()),
            );
        }
        if ok {
            return (
                Verdict::Violation,
                format!("error object with exit 0: {}", e.brief()),
            );
        }
        return (Verdict::Error, String::new());
    }
    if !ok {
        return (
            Verdict::Violation,
            format!("non-zero exit without an error object: {}", e.brief()),
        );
    }
    (Verdict::Result, String::new())
}

/// Tally of verdicts and leaks for one side (ours or the reference).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub inputs: usize,
    pub errors: usize,
    pub results: usize,
    pub panics: usize,
    pub hangs: usize,
    pub violations: usize,
    pub leaks: usize,
    /// DELs that must succeed (fuzz tier), and how many did not
    pub dels_required: usize,
    pub dels_failed: usize,
}

impl Tally {
    pub fn count(&mut self, v: Verdict) {
        self.inputs += 1;
        match v {
            Verdict::Error => self.errors += 1,
            Verdict::Result => self.results += 1,
            Verdict::Panic => self.panics += 1,
            Verdict::Hang => self.hangs += 1,
            Verdict::Violation => self.violations += 1,
        }
    }

    pub fn clean(&self) -> usize {
        self.errors + self.results
    }

    pub fn line(&self) -> String {
        format!(
            "{} inputs: {} errors / {} results / {} panics / {} hangs / {} protocol violations / {} leaked items ({} handled cleanly); {} of {} tolerable DELs failed",
            self.inputs,
            self.errors,
            self.results,
            self.panics,
            self.hangs,
            self.violations,
            self.leaks,
            self.clean(),
            self.dels_failed,
            self.dels_required
        )
    }
}

/// A multiset of state items ("link veth1234 veth", "ipt4 -A CNI-… …").
pub type Items = BTreeMap<String, usize>;

/// Items of `after` not in `before` (with multiplicity).
pub fn added(before: &Items, after: &Items) -> Vec<String> {
    let mut out = Vec::new();
    for (k, n) in after {
        let b = before.get(k).copied().unwrap_or(0);
        for _ in b..*n {
            out.push(k.clone());
        }
    }
    out
}

fn bump(m: &mut Items, k: String) {
    *m.entry(k).or_default() += 1;
}

/// Whether a chain name is one a plugin creates per pod (and must remove).
pub fn per_pod_chain(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = name.strip_prefix("CNI-DN-") {
        return hex(rest, 21);
    }
    if let Some(rest) = name.strip_prefix("CNI-SN-") {
        return hex(rest, 21);
    }
    if let Some(rest) = name.strip_prefix("CNI-") {
        return hex(rest, 24);
    }
    name.starts_with("cni-br-iface-")
}

/// Whether a rule belongs to one pod: it is in or jumps to a per-pod chain,
/// or its comment names a container.
pub fn per_pod_rule(chain: &str, rule: &str) -> bool {
    per_pod_chain(chain)
        || rule
            .split(|c: char| c.is_whitespace() || c == '"')
            .any(per_pod_chain)
        || rule.contains("id: ")
        || rule.contains("dnat name:")
}

/// Chains whose non-per-pod rules are shared scaffolding every portmap ADD
/// sets up and no DEL removes (the reference keeps them too): the hooks'
/// jumps into CNI-HOSTPORT-*, the masquerade mark and its MASQUERADE.
pub fn shared_chain(chain: &str) -> bool {
    matches!(
        chain,
        "PREROUTING" | "OUTPUT" | "POSTROUTING" | "CNI-HOSTPORT-SETMARK" | "CNI-HOSTPORT-MASQ"
    )
}

/// The state of a node netns a plugin may leave behind, as items. Bridges
/// (and their addresses and routes) are shared infrastructure the reference
/// keeps too, so they are not items; neither are empty shared chains, only
/// rules and per-pod chains.
pub fn node_items(ns: &str) -> Items {
    const SEP: &str = "\n@@@@\n";
    let script = format!(
        "ip -j -d link show; echo '{SEP}'; ip -j addr show; echo '{SEP}'; ip -j route show table all; echo '{SEP}'; \
         ip -j -6 route show table all; echo '{SEP}'; iptables-save; echo '{SEP}'; ip6tables-save; echo '{SEP}'; \
         nft list ruleset; echo '{SEP}'; tc -j qdisc show"
    );
    let out = sh(&format!("ip netns exec {ns} sh -c \"{script}\""));
    let parts: Vec<&str> = out.split("@@@@").collect();
    assert_eq!(parts.len(), 8, "snapshot of {ns}: {out}");
    let mut m = Items::new();
    let j = |s: &str| -> Vec<Value> {
        serde_json::from_str::<Value>(s.trim())
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let mut bridges = std::collections::BTreeSet::new();
    for l in j(parts[0]) {
        let name = l["ifname"].as_str().unwrap_or("?").to_string();
        let kind = l["linkinfo"]["info_kind"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if kind == "bridge" {
            bridges.insert(name);
            continue;
        }
        bump(&mut m, format!("link {name} {kind}"));
    }
    for l in j(parts[1]) {
        let dev = l["ifname"].as_str().unwrap_or("?");
        if bridges.contains(dev) {
            continue;
        }
        for a in l["addr_info"].as_array().cloned().unwrap_or_default() {
            let local = a["local"].as_str().unwrap_or("");
            if local.starts_with("fe80:") {
                continue;
            }
            bump(&mut m, format!("addr {local}/{} dev {dev}", a["prefixlen"]));
        }
    }
    for part in [parts[2], parts[3]] {
        for r in j(part) {
            let dev = r["dev"].as_str().unwrap_or("");
            if bridges.contains(dev) {
                continue;
            }
            let dst = r["dst"].as_str().unwrap_or("");
            if dst.starts_with("fe80:") || dst.starts_with("ff00:") || r["table"] == "local" {
                continue;
            }
            bump(
                &mut m,
                format!(
                    "route {dst} via {} dev {dev} table {}",
                    r["gateway"].as_str().unwrap_or("-"),
                    r["table"].as_str().unwrap_or("main")
                ),
            );
        }
    }
    for (fam, part) in [("ipt4", parts[4]), ("ipt6", parts[5])] {
        let mut table = String::new();
        for line in part.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(c) = line.strip_prefix(':') {
                let name = c.split_whitespace().next().unwrap_or("");
                if per_pod_chain(name) {
                    bump(&mut m, format!("{fam} {table} chain {name}"));
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap_or("");
                if per_pod_rule(chain, rule) || !shared_chain(chain) {
                    bump(&mut m, format!("{fam} {table} {line}"));
                }
            }
        }
    }
    // nftables: tables iptables-nft manages are covered above.
    let xt = [
        "ip nat",
        "ip filter",
        "ip mangle",
        "ip raw",
        "ip security",
        "ip6 nat",
        "ip6 filter",
        "ip6 mangle",
        "ip6 raw",
        "ip6 security",
    ];
    let (mut table, mut chain, mut set) = (String::new(), String::new(), String::new());
    let mut depth = 0usize;
    let mut elements: Option<String> = None;
    for line in parts[6].lines() {
        let t = line.trim();
        if let Some(acc) = elements.as_mut() {
            // a set's or map's elements, up to the closing brace
            acc.push(' ');
            acc.push_str(t);
            if t.ends_with('}') {
                let body = acc.trim_end_matches('}').to_string();
                for e in body.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    bump(&mut m, format!("nft {table} {set} element {e}"));
                }
                elements = None;
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("table ") {
            table = rest.trim_end_matches(" {").to_string();
            depth = 1;
            continue;
        }
        if let Some(rest) = t.strip_prefix("chain ") {
            chain = rest.trim_end_matches(" {").to_string();
            depth = 2;
            if !xt.contains(&table.as_str()) && per_pod_chain(&chain) {
                bump(&mut m, format!("nft {table} chain {chain}"));
            }
            continue;
        }
        if let Some(rest) = t
            .strip_prefix("set ")
            .or_else(|| t.strip_prefix("map "))
            .or_else(|| t.strip_prefix("flowtable "))
        {
            set = rest.trim_end_matches(" {").to_string();
            depth = 3;
            continue;
        }
        if t == "}" {
            depth = depth.saturating_sub(1);
            continue;
        }
        if depth == 3 && !xt.contains(&table.as_str()) {
            if let Some(rest) = t.strip_prefix("elements = {") {
                let mut acc = rest.to_string();
                if rest.trim_end().ends_with('}') {
                    acc = acc.trim_end().trim_end_matches('}').to_string();
                    for e in acc.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                        bump(&mut m, format!("nft {table} {set} element {e}"));
                    }
                } else {
                    elements = Some(acc);
                }
            }
            continue;
        }
        if depth != 2 || t.is_empty() || xt.contains(&table.as_str()) {
            continue;
        }
        if t.starts_with("type ") || t.starts_with("policy ") || t.starts_with("comment ") {
            continue;
        }
        let shared = table.ends_with(" cni_hostport")
            || (table == "inet cni_plugins_masquerade" && chain == "postrouting");
        if per_pod_rule(&chain, t) || !shared {
            bump(&mut m, format!("nft {table} {chain}: {t}"));
        }
    }
    for q in j(parts[7]) {
        let dev = q["dev"].as_str().unwrap_or("");
        let kind = q["kind"].as_str().unwrap_or("");
        if kind == "noqueue" || dev == "lo" || bridges.contains(dev) {
            continue;
        }
        bump(&mut m, format!("qdisc {kind} {} dev {dev}", q["handle"]));
    }
    m
}

/// Links of a pod netns other than lo.
pub fn pod_items(ns: &str) -> Items {
    let out = sh(&format!("ip -n {ns} -j link show"));
    let mut m = Items::new();
    for l in serde_json::from_str::<Value>(out.trim())
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
    {
        let name = l["ifname"].as_str().unwrap_or("?");
        if name != "lo" {
            bump(&mut m, format!("pod {ns} link {name}"));
        }
    }
    m
}

/// Files under a host-local data dir other than the lock and round-robin
/// bookkeeping (which the reference keeps too).
pub fn data_items(dir: &Path) -> Items {
    let mut m = Items::new();
    fn walk(d: &Path, m: &mut Items) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, m);
                continue;
            }
            let n = e.file_name().to_string_lossy().into_owned();
            if n == "lock" || n.starts_with("last_reserved_ip.") {
                continue;
            }
            let content = std::fs::read(&p).unwrap_or_default();
            let content = String::from_utf8_lossy(&content).replace(['\r', '\n'], " ");
            bump(
                m,
                format!("file {} ({:?})", p.display(), clip(&content, 80)),
            );
        }
    }
    walk(dir, &mut m);
    m
}

/// A throwaway node: a netns with lo up and forwarding on, where plugins run.
pub struct Node {
    pub ns: Netns,
}

impl Node {
    pub fn new(tag: &str) -> Node {
        require_root();
        let ns = Netns::new(tag);
        sh(&format!(
            "ip -n {n} link set lo up && ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
            n = ns.name
        ));
        Node { ns }
    }

    pub fn name(&self) -> &str {
        &self.ns.name
    }

    pub fn run(
        &self,
        bin: &Path,
        env: &[(OsString, OsString)],
        stdin: &[u8],
        kill_after: Option<Duration>,
        timeout: Duration,
    ) -> Exit {
        run_in_ns(&self.ns.name, bin, env, stdin, kill_after, timeout)
    }

    pub fn items(&self) -> Items {
        node_items(&self.ns.name)
    }
}

/// A pod netns wired to a node by a veth (node end `host_if`, pod end eth0,
/// 10.<net>.<n>.2/24 and fd<net>:<n>::2/64), as a main plugin would leave it:
/// for the chained plugins (portmap, bandwidth) that act on a prevResult.
pub struct WiredPod {
    pub ns: Netns,
    pub host_if: String,
    pub ip4: String,
    pub ip6: String,
}

impl WiredPod {
    pub fn new(node: &Node, tag: &str, host_if: &str, net: u8, n: u8) -> WiredPod {
        let ns = Netns::new(tag);
        let (h, p) = (node.name(), &ns.name);
        let ip4 = format!("10.{net}.{n}.2");
        let ip6 = format!("fd{net}:{n}::2");
        sh(&format!(
            "ip -n {h} link add {host_if} type veth peer name eth0 netns {p} && \
             ip -n {h} link set {host_if} up && ip -n {h} addr add 10.{net}.{n}.1/24 dev {host_if} && \
             ip -n {h} addr add fd{net}:{n}::1/64 dev {host_if} nodad && \
             ip -n {p} link set lo up && ip -n {p} link set eth0 up && ip -n {p} addr add {ip4}/24 dev eth0 && \
             ip -n {p} addr add {ip6}/64 dev eth0 nodad && ip -n {p} route add default via 10.{net}.{n}.1"
        ));
        WiredPod {
            ns,
            host_if: host_if.to_string(),
            ip4,
            ip6,
        }
    }

    pub fn prev_result(&self) -> Value {
        serde_json::json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": self.host_if, "mac": "0a:58:0a:4d:00:01"}, {"name": "eth0", "sandbox": self.ns.path()}],
            "ips": [{"address": format!("{}/24", self.ip4), "interface": 1},
                    {"address": format!("{}/64", self.ip6), "interface": 1}],
            "dns": {}})
    }
}

/// Deletes a netns and waits until the kernel has destroyed its links
/// (a pod's veth host end disappears from the node asynchronously).
pub fn settle_links(node: &str, pred: impl Fn(&str) -> bool, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left: Vec<String> = node_links(node).into_iter().filter(|n| pred(n)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Link names of a netns.
pub fn node_links(ns: &str) -> Vec<String> {
    let out = sh(&format!("ip -n {ns} -j link show"));
    serde_json::from_str::<Value>(out.trim())
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Runs `f` over `items` on `workers` threads; results in input order.
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                *out[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("worker result")
        })
        .collect()
}

/// The PATH plugins get (their firewall and tc tools).
pub fn path_env() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// A directory path as a string.
pub fn p(path: &Path) -> String {
    path.display().to_string()
}
