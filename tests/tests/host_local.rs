//! host-local and static IPAM through the real binary: `<bin>/host-local`
//! (a link to wasm-cni) exec'd with the CNI environment and the config on
//! stdin, as a runtime does, next to the reference plugins from
//! containernetworking-plugins 1.1.1 in /usr/lib/cni. Every test has its own
//! Install and a private `ipam.dataDir` inside it.
//!
//! No netns is needed: IPAM plugins only allocate, so these run
//! unprivileged (the reference does not look at CNI_NETNS either).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use wasm_cni_tests::*;

const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
const NO_NETNS: &str = "/var/run/netns/wcni-ipam-unused";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bin {
    /// `<install bin>/<type>`, the link to wasm-cni.
    Ours,
    /// `/usr/lib/cni/<type>`.
    Reference,
}

/// A host-local network config whose state lives under `data_dir`.
fn hl_conf(version: &str, name: &str, data_dir: &Path, ipam: Value) -> String {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(data_dir.display().to_string());
    json!({"cniVersion": version, "name": name, "type": "host-local", "ipam": ipam}).to_string()
}

/// One CNI call of `plugin` (host-local or static) by `bin`.
fn call(i: &Install, bin: Bin, plugin: &str, cmd: &str, cid: &str, conf: &str) -> PluginRun {
    call_args(i, bin, plugin, cmd, cid, "", conf)
}

fn call_args(
    i: &Install,
    bin: Bin,
    plugin: &str,
    cmd: &str,
    cid: &str,
    args: &str,
    conf: &str,
) -> PluginRun {
    let mut env = vec![("CNI_COMMAND", cmd)];
    if !matches!(cmd, "STATUS" | "GC") {
        env.extend([
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", NO_NETNS),
            ("CNI_IFNAME", "eth0"),
        ]);
    }
    if !args.is_empty() {
        env.push(("CNI_ARGS", args));
    }
    match bin {
        Bin::Ours => i.plugin(plugin, &env, conf),
        Bin::Reference => run_plugin(
            &reference_plugin(plugin),
            Path::new("/usr/lib/cni"),
            &env,
            conf,
            |_| {},
        ),
    }
}

/// The network's state directory: name -> content of every file in it.
fn state(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let e = e.expect("dir entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let content = std::fs::read(e.path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        out.insert(name, content);
    }
    out
}

/// The allocation files (names that are IP addresses) of a state directory.
fn allocations(dir: &Path) -> BTreeMap<String, String> {
    state(dir)
        .into_iter()
        .filter(|(n, _)| n.parse::<IpAddr>().is_ok())
        .collect()
}

/// Asserts the directory holds nothing but the lock and the round-robin files.
#[track_caller]
fn assert_only_bookkeeping(dir: &Path, sets: usize) {
    let names: BTreeSet<String> = state(dir).into_keys().collect();
    let mut want: BTreeSet<String> = (0..sets).map(|s| format!("last_reserved_ip.{s}")).collect();
    want.insert("lock".into());
    assert_eq!(
        names,
        want,
        "{} should hold only the lock and last_reserved_ip files",
        dir.display()
    );
}

/// The addresses (without prefix) of an ADD result in any version.
fn addresses(v: &Value) -> Vec<String> {
    let strip = |s: &Value| {
        s.as_str()
            .unwrap_or_else(|| panic!("no address in {v}"))
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    if let Some(ips) = v.get("ips").and_then(Value::as_array) {
        return ips.iter().map(|ip| strip(&ip["address"])).collect();
    }
    ["ip4", "ip6"]
        .iter()
        .filter_map(|k| v.get(*k))
        .map(|ip| strip(&ip["ip"]))
        .collect()
}

fn one_address(r: &PluginRun) -> String {
    let a = addresses(&r.ok().json());
    assert_eq!(a.len(), 1, "expected one address: {}", r.stdout);
    a[0].clone()
}

/// Runs `f(k)` for k in 0..n, each on its own thread, all released at once.
fn parallel<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let (f, barrier) = (f.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                f(k)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread panicked"))
        .collect()
}

fn attachment_content(cid: &str) -> String {
    format!("{cid}\r\neth0")
}

/// 200 ADDs racing in 200 processes on one /24: 200 distinct addresses, one
/// file each in the reference's format; then 200 racing DELs free them all.
#[test]
fn parallel_adds_get_distinct_addresses_and_parallel_dels_free_them() {
    let i = Arc::new(Install::new("hl-par", &[]));
    let data = i.data_dir();
    let conf = Arc::new(hl_conf(
        "1.0.0",
        "par",
        &data,
        json!({"subnet": "10.77.0.0/24"}),
    ));
    let dir = data.join("par");

    let runs = {
        let (i, conf) = (i.clone(), conf.clone());
        parallel(200, move |k| {
            let cid = format!("par-{k}");
            let r = call(&i, Bin::Ours, "host-local", "ADD", &cid, &conf);
            (cid, r)
        })
    };
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for (cid, r) in &runs {
        let j = r.ok().json();
        assert_eq!(j["ips"][0]["gateway"], "10.77.0.1", "{j}");
        assert!(
            j["ips"][0]["address"]
                .as_str()
                .is_some_and(|a| a.ends_with("/24")),
            "{j}"
        );
        let ip = one_address(r);
        if let Some(other) = got.insert(ip.clone(), cid.clone()) {
            panic!("{ip} handed to both {other} and {cid}");
        }
    }
    assert_eq!(got.len(), 200);
    let files = allocations(&dir);
    assert_eq!(files.len(), 200, "one file per address: {:?}", files.keys());
    for (ip, cid) in &got {
        assert_eq!(
            files.get(ip),
            Some(&attachment_content(cid)),
            "file {ip} must name {cid}"
        );
        let a: IpAddr = ip.parse().expect("address");
        assert!(
            matches!(a, IpAddr::V4(v) if v.octets()[..3] == [10, 77, 0] && v.octets()[3] >= 2 && v.octets()[3] <= 254),
            "{ip} outside 10.77.0.2-254"
        );
    }
    let names: BTreeSet<String> = state(&dir).into_keys().collect();
    assert_eq!(
        names.len(),
        202,
        "200 allocations + lock + last_reserved_ip.0: {names:?}"
    );
    assert!(names.contains("lock") && names.contains("last_reserved_ip.0"));

    let dels = {
        let (i, conf) = (i.clone(), conf.clone());
        parallel(200, move |k| {
            call(
                &i,
                Bin::Ours,
                "host-local",
                "DEL",
                &format!("par-{k}"),
                &conf,
            )
        })
    };
    for r in &dels {
        r.ok();
        assert!(r.stdout.is_empty(), "DEL prints nothing: {}", r.stdout);
    }
    assert_only_bookkeeping(&dir, 1);
}

/// A range of exactly N addresses: N ADDs succeed, the next one fails with
/// the reference's error, and leaves nothing behind.
#[test]
fn exhausted_range_fails_cleanly_like_the_reference() {
    const N: usize = 10;
    let i = Arc::new(Install::new("hl-full", &[]));
    let ipam = json!({"ranges": [[{"subnet": "10.79.0.0/24", "rangeStart": "10.79.0.10", "rangeEnd": "10.79.0.19"}]]});
    let ours_dir = i.root.path().join("ours");
    let conf = Arc::new(hl_conf("1.0.0", "full", &ours_dir, ipam.clone()));
    let runs = {
        let (i, conf) = (i.clone(), conf.clone());
        parallel(N, move |k| {
            call(
                &i,
                Bin::Ours,
                "host-local",
                "ADD",
                &format!("full-{k}"),
                &conf,
            )
        })
    };
    let got: BTreeSet<String> = runs.iter().map(one_address).collect();
    let want: BTreeSet<String> = (10..=19).map(|o| format!("10.79.0.{o}")).collect();
    assert_eq!(
        got, want,
        "the N ADDs take exactly the N addresses of the range"
    );

    let before = state(&ours_dir.join("full"));
    let r = call(&i, Bin::Ours, "host-local", "ADD", "full-extra", &conf);
    assert!(
        r.stderr.contains("no IP addresses available"),
        "the failure is told on stderr too: {}",
        r.stderr
    );
    let e = r.err(999);
    let msg = e["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("no IP addresses available"), "{e}");
    assert!(
        msg.contains("10.79.0.10-10.79.0.19"),
        "the message names the range: {e}"
    );
    assert_eq!(e["cniVersion"], "1.0.0", "{e}");
    assert_eq!(
        state(&ours_dir.join("full")),
        before,
        "a failed ADD leaves the directory as it was"
    );
    assert!(!before.values().any(|c| c.contains("full-extra")));

    // The reference fails the same way (same code, same message).
    let ref_dir = i.root.path().join("ref");
    let ref_conf = hl_conf("1.0.0", "full", &ref_dir, ipam);
    for k in 0..N {
        call(
            &i,
            Bin::Reference,
            "host-local",
            "ADD",
            &format!("full-{k}"),
            &ref_conf,
        )
        .ok();
    }
    let re = call(
        &i,
        Bin::Reference,
        "host-local",
        "ADD",
        "full-extra",
        &ref_conf,
    )
    .err(999);
    assert_eq!(re["msg"], e["msg"], "ours {e} vs reference {re}");
    // The reference prints no cniVersion in its error (spec 1.0 asks for
    // one); ours does, checked above.
    assert_eq!(allocations(&ref_dir.join("full")).len(), N);
}

/// A tiny deterministic PRNG (xorshift64*), seeded per run and printed so a
/// failure can be replayed with HL_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("HL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("crash test seed: HL_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What became of one plugin process.
enum Fate {
    Exited(PluginRun),
    Killed,
}

/// Runs our plugin; with `kill_after`, SIGKILLs it after that long unless
/// it has exited by then.
fn run_maybe_killed(
    i: &Install,
    cmd: &str,
    cid: &str,
    conf: &str,
    kill_after: Option<Duration>,
) -> Fate {
    let mut c = Command::new(i.bin_dir().join("host-local"));
    c.env_clear()
        .env("CNI_PATH", i.bin_dir())
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", NO_NETNS)
        .env("CNI_IFNAME", "eth0")
        .env("WASM_CNI_CACHE_DIR", i.cache_dir())
        .env("WASM_CNI_LOG_FILE", i.log_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn host-local");
    if let Some(mut si) = child.stdin.take() {
        let _ = si.write_all(conf.as_bytes());
    }
    if let Some(d) = kill_after {
        thread::sleep(d);
        // An already exited child is still a zombie here, so this cannot hit another process.
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait host-local");
    match out.status.code() {
        Some(code) => Fate::Exited(PluginRun {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code,
        }),
        None => Fate::Killed,
    }
}

#[derive(Default)]
struct CrashLog {
    /// Attachments whose ADD succeeded and that were never DELeted: cid -> address.
    valid: BTreeMap<String, String>,
    /// Every address a successful ADD returned, with its container.
    handed_out: Vec<(String, String)>,
    killed: usize,
    calls: usize,
}

/// ADD/DEL from 4 concurrent workers with random SIGKILLs, then GC with the
/// attachments known good: nothing leaks, nothing valid is lost.
#[test]
fn sigkilled_adds_and_dels_are_cleaned_by_gc() {
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 40;
    let i = Arc::new(Install::new("hl-crash", &[]));
    let data = i.data_dir();
    let conf = Arc::new(hl_conf(
        "1.1.0",
        "crash",
        &data,
        json!({"subnet": "10.78.0.0/24"}),
    ));
    let dir = data.join("crash");
    let log = Arc::new(Mutex::new(CrashLog::default()));
    let seeds: Vec<u64> = {
        let mut r = Rng::new();
        (0..WORKERS).map(|_| r.next()).collect()
    };
    {
        let (i, conf, log) = (i.clone(), conf.clone(), log.clone());
        parallel(WORKERS, move |w| {
            let mut rng = Rng(seeds[w] | 1);
            // A kill lands anywhere from just after exec to after the
            // call has finished (a call takes a few ms).
            let kill = |rng: &mut Rng, percent: u64| {
                rng.chance(percent)
                    .then(|| Duration::from_micros(200 + rng.below(8_000)))
            };
            for k in 0..PER_WORKER {
                let cid = format!("crash-{w}-{k}");
                let add = run_maybe_killed(&i, "ADD", &cid, &conf, kill(&mut rng, 60));
                let mut l = log.lock().expect("log");
                l.calls += 1;
                match add {
                    Fate::Exited(r) => {
                        let ip = one_address(&r);
                        l.handed_out.push((cid.clone(), ip.clone()));
                        if rng.chance(40) {
                            drop(l);
                            // Once a DEL is attempted the runtime no longer
                            // lists the attachment, whatever became of the DEL.
                            let del = run_maybe_killed(&i, "DEL", &cid, &conf, kill(&mut rng, 50));
                            let mut l = log.lock().expect("log");
                            l.calls += 1;
                            match del {
                                Fate::Exited(r) => {
                                    r.ok();
                                }
                                Fate::Killed => l.killed += 1,
                            }
                        } else {
                            l.valid.insert(cid, ip);
                        }
                    }
                    Fate::Killed => {
                        l.killed += 1;
                        // Sometimes the runtime cleans up a failed ADD with a DEL, sometimes it dies too.
                        if rng.chance(30) {
                            drop(l);
                            match run_maybe_killed(&i, "DEL", &cid, &conf, None) {
                                Fate::Exited(r) => {
                                    r.ok();
                                }
                                Fate::Killed => panic!("DEL of {cid} died without being killed"),
                            }
                            log.lock().expect("log").calls += 1;
                        }
                    }
                }
            }
        });
    }
    let log = Arc::try_unwrap(log)
        .unwrap_or_else(|_| panic!("workers still hold the log"))
        .into_inner()
        .expect("log");
    assert!(
        log.killed >= 10,
        "the test must actually kill plugin processes (killed {})",
        log.killed
    );
    assert!(!log.valid.is_empty(), "some ADDs must survive");

    // No address was ever held by two attachments at once: the valid ones are distinct...
    let mut holders: BTreeMap<&str, &str> = BTreeMap::new();
    for (cid, ip) in &log.valid {
        if let Some(other) = holders.insert(ip.as_str(), cid.as_str()) {
            panic!("{ip} is held by both {other} and {cid}");
        }
    }
    // ...and before GC each valid attachment's file still names it.
    let before = allocations(&dir);
    for (cid, ip) in &log.valid {
        assert_eq!(
            before.get(ip),
            Some(&attachment_content(cid)),
            "{cid} lost its address {ip} before GC"
        );
    }
    let leaked = before.len() - log.valid.len();
    let empty = before.values().filter(|c| c.is_empty()).count();
    eprintln!(
        "crash test: {} calls, {} killed, {} successful ADDs, {} valid, {} leaked files before GC ({} empty)",
        log.calls,
        log.killed,
        log.handed_out.len(),
        log.valid.len(),
        leaked,
        empty
    );
    // What a writer killed between create and write leaves (an empty file),
    // and a garbled one, to be sure GC handles both whatever the kills hit.
    std::fs::write(dir.join("10.78.0.250"), "").expect("plant empty file");
    std::fs::write(dir.join("10.78.0.251"), "garbage-without-ifname").expect("plant garbled file");
    // Files that are not allocations are not GC's business.
    std::fs::write(dir.join("notes.txt"), "operator notes").expect("plant other file");

    let attachments: Vec<Value> = log
        .valid
        .keys()
        .map(|cid| json!({"containerID": cid, "ifname": "eth0"}))
        .collect();
    let gc = json!({
        "cniVersion": "1.1.0", "name": "crash", "type": "host-local",
        "ipam": {"type": "host-local", "dataDir": data.display().to_string(), "subnet": "10.78.0.0/24"},
        "cni.dev/valid-attachments": attachments,
    })
    .to_string();
    let r = call(&i, Bin::Ours, "host-local", "GC", "", &gc);
    r.ok();
    assert!(r.stdout.is_empty(), "GC prints nothing: {}", r.stdout);

    let after = allocations(&dir);
    let want: BTreeMap<String, String> = log
        .valid
        .iter()
        .map(|(cid, ip)| (ip.clone(), attachment_content(cid)))
        .collect();
    assert_eq!(
        after, want,
        "after GC exactly the valid attachments hold exactly their addresses"
    );
    let mut names: BTreeSet<String> = state(&dir).into_keys().collect();
    for ip in want.keys() {
        names.remove(ip);
    }
    assert_eq!(
        names,
        ["last_reserved_ip.0", "lock", "notes.txt"]
            .map(String::from)
            .into_iter()
            .collect(),
        "nothing else is left"
    );

    // The network works on: each valid attachment passes CHECK, a new ADD
    // gets a free address, and DEL frees it.
    for cid in log.valid.keys() {
        call(&i, Bin::Ours, "host-local", "CHECK", cid, &conf).ok();
    }
    let ip = one_address(&call(&i, Bin::Ours, "host-local", "ADD", "after-gc", &conf));
    assert!(!want.contains_key(&ip), "{ip} is still held");
    call(&i, Bin::Ours, "host-local", "DEL", "after-gc", &conf).ok();
    assert_eq!(allocations(&dir), want);
}

/// Our binary and the reference share one data dir: each DELs what the
/// other ADDed, CHECK by ours accepts the reference's files, and both can
/// allocate from one range at the same time (they take the same flock).
#[test]
fn interoperates_with_the_reference_on_one_data_dir() {
    let i = Arc::new(Install::new("hl-interop", &[]));
    let data = i.data_dir();
    let conf = Arc::new(hl_conf(
        "1.0.0",
        "mixed",
        &data,
        json!({"subnet": "10.81.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}),
    ));
    let dir = data.join("mixed");

    // Reference ADD, our CHECK (with the prevResult a runtime would send) and DEL.
    let r = call(&i, Bin::Reference, "host-local", "ADD", "by-ref", &conf);
    let ref_result = r.ok().json();
    let ref_ip = one_address(&r);
    assert_eq!(
        allocations(&dir).get(&ref_ip),
        Some(&attachment_content("by-ref"))
    );
    let mut with_prev: Value = serde_json::from_str(&conf).expect("conf");
    with_prev["prevResult"] = ref_result;
    call(
        &i,
        Bin::Ours,
        "host-local",
        "CHECK",
        "by-ref",
        &with_prev.to_string(),
    )
    .ok();
    call(&i, Bin::Ours, "host-local", "CHECK", "by-nobody", &conf).err(999);
    // A second ADD of the same attachment is refused by ours, as by the reference.
    let dup = call(&i, Bin::Ours, "host-local", "ADD", "by-ref", &conf).err(999);
    assert!(
        dup["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate allocation is not allowed"),
        "{dup}"
    );
    call(&i, Bin::Ours, "host-local", "DEL", "by-ref", &conf).ok();
    assert_only_bookkeeping(&dir, 1);

    // Our ADD, the reference's CHECK and DEL.
    let ours_ip = one_address(&call(&i, Bin::Ours, "host-local", "ADD", "by-ours", &conf));
    assert_ne!(
        ours_ip, ref_ip,
        "round robin continues from the reference's last_reserved_ip"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("last_reserved_ip.0")).expect("last reserved"),
        ours_ip
    );
    call(&i, Bin::Reference, "host-local", "CHECK", "by-ours", &conf).ok();
    call(&i, Bin::Reference, "host-local", "DEL", "by-ours", &conf).ok();
    assert_only_bookkeeping(&dir, 1);

    // 100 ADDs by each, all racing on one range.
    let runs = {
        let (i, conf) = (i.clone(), conf.clone());
        parallel(200, move |k| {
            let bin = if k % 2 == 0 {
                Bin::Ours
            } else {
                Bin::Reference
            };
            let cid = format!("{}-{k}", if bin == Bin::Ours { "ours" } else { "ref" });
            let r = call(&i, bin, "host-local", "ADD", &cid, &conf);
            (bin, cid, r)
        })
    };
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for (bin, cid, r) in &runs {
        assert_eq!(
            r.code, 0,
            "{bin:?} ADD {cid} failed: {} {}",
            r.stdout, r.stderr
        );
        let ip = one_address(r);
        if let Some(other) = got.insert(ip.clone(), cid.clone()) {
            panic!("{ip} handed to both {other} and {cid}");
        }
    }
    let files = allocations(&dir);
    assert_eq!(files.len(), 200);
    for (ip, cid) in &got {
        assert_eq!(files.get(ip), Some(&attachment_content(cid)), "file {ip}");
    }
    // Ours reads every reference allocation (CHECK passes), then each
    // binary DELs the other's attachments, concurrently.
    let ref_cids: Vec<String> = runs
        .iter()
        .filter(|(b, _, _)| *b == Bin::Reference)
        .map(|(_, c, _)| c.clone())
        .collect();
    {
        let (i, conf, cids) = (i.clone(), conf.clone(), Arc::new(ref_cids));
        let checks = parallel(cids.len(), move |k| {
            call(&i, Bin::Ours, "host-local", "CHECK", &cids[k], &conf)
        });
        for r in checks {
            r.ok();
        }
    }
    let dels = {
        let (i, conf, runs) = (
            i.clone(),
            conf.clone(),
            Arc::new(runs.into_iter().map(|(b, c, _)| (b, c)).collect::<Vec<_>>()),
        );
        parallel(200, move |k| {
            let (bin, cid) = &runs[k];
            let other = if *bin == Bin::Ours {
                Bin::Reference
            } else {
                Bin::Ours
            };
            (other, call(&i, other, "host-local", "DEL", cid, &conf))
        })
    };
    for (bin, r) in dels {
        assert_eq!(r.code, 0, "{bin:?} DEL failed: {} {}", r.stdout, r.stderr);
    }
    assert_only_bookkeeping(&dir, 1);
}

/// ADD's result for every cniVersion has the reference's shape (and, on
/// fresh directories, its very content).
#[test]
fn result_shape_matches_the_reference_for_every_version() {
    let i = Install::new("hl-shape", &[]);
    let ipam = json!({
        "ranges": [[{"subnet": "10.80.0.0/24"}], [{"subnet": "fd80::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.80.0.254"}, {"dst": "::/0"}],
    });
    for v in VERSIONS {
        let name = format!("shape-{}", v.replace('.', ""));
        let ours = call(
            &i,
            Bin::Ours,
            "host-local",
            "ADD",
            "shape",
            &hl_conf(v, &name, &i.root.path().join("ours"), ipam.clone()),
        );
        let j = ours.ok().json();
        assert_eq!(j["cniVersion"], v, "{j}");
        assert!(
            j.get("interfaces").is_none(),
            "{v}: IPAM results carry no interfaces: {j}"
        );
        assert_eq!(j["dns"], json!({}), "{v}: {j}");
        match v {
            "0.1.0" | "0.2.0" => {
                assert_eq!(
                    j["ip4"],
                    json!({"ip": "10.80.0.2/24", "gateway": "10.80.0.1", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.80.0.254"}]}),
                    "{v}: {j}"
                );
                assert_eq!(
                    j["ip6"],
                    json!({"ip": "fd80::2/64", "gateway": "fd80::1", "routes": [{"dst": "::/0"}]}),
                    "{v}: {j}"
                );
                assert!(
                    j.get("ips").is_none() && j.get("routes").is_none(),
                    "{v}: {j}"
                );
            }
            _ => {
                let legacy = v.starts_with("0.");
                let ip = |addr: &str, gw: &str, fam: &str| {
                    if legacy {
                        json!({"address": addr, "gateway": gw, "version": fam})
                    } else {
                        json!({"address": addr, "gateway": gw})
                    }
                };
                assert_eq!(
                    j["ips"],
                    json!([
                        ip("10.80.0.2/24", "10.80.0.1", "4"),
                        ip("fd80::2/64", "fd80::1", "6")
                    ]),
                    "{v}: {j}"
                );
                assert_eq!(j["routes"], ipam["routes"], "{v}: {j}");
                assert!(j.get("ip4").is_none(), "{v}: {j}");
            }
        }
        let ref_conf = hl_conf(v, &name, &i.root.path().join("ref"), ipam.clone());
        let reference = call(&i, Bin::Reference, "host-local", "ADD", "shape", &ref_conf);
        if v == "1.1.0" {
            // containernetworking-plugins 1.1.1 predates CNI 1.1.0 and
            // refuses it; ours supports it. 1.1.0 added no field an IPAM
            // result uses, so ours must equal the reference's 1.0.0 result.
            let e = reference.err(1);
            assert_eq!(e["msg"], "incompatible CNI versions", "{e}");
            let r10 = call(
                &i,
                Bin::Reference,
                "host-local",
                "ADD",
                "shape",
                &hl_conf("1.0.0", &name, &i.root.path().join("ref"), ipam.clone()),
            );
            let mut rj = r10.ok().json();
            rj["cniVersion"] = json!("1.1.0");
            assert_eq!(j, rj, "ours 1.1.0 vs reference 1.0.0 relabelled");
        } else {
            assert_eq!(j, reference.ok().json(), "{v}: ours vs reference");
        }
    }
}

/// An IPv4 and an IPv6 range set: ADD takes one of each, DEL frees both;
/// the reference reads our IPv6 files and we read its.
#[test]
fn dual_stack_allocates_one_of_each_and_del_frees_both() {
    let i = Install::new("hl-dual", &[]);
    let data = i.data_dir();
    let ipam = json!({"ranges": [[{"subnet": "10.82.0.0/24"}], [{"subnet": "fd82:0:0:1::/64", "rangeStart": "fd82:0:0:1::100", "rangeEnd": "fd82:0:0:1::1ff"}]]});
    let conf = hl_conf("1.0.0", "dual", &data, ipam);
    let dir = data.join("dual");
    for (adder, deleter) in [
        (Bin::Ours, Bin::Ours),
        (Bin::Ours, Bin::Reference),
        (Bin::Reference, Bin::Ours),
    ] {
        let cid = format!("dual-{adder:?}-{deleter:?}");
        let r = call(&i, adder, "host-local", "ADD", &cid, &conf);
        let j = r.ok().json();
        let ips = j["ips"].as_array().unwrap_or_else(|| panic!("no ips: {j}"));
        assert_eq!(ips.len(), 2, "{j}");
        let v4 = ips[0]["address"].as_str().unwrap_or_default();
        let v6 = ips[1]["address"].as_str().unwrap_or_default();
        assert!(v4.starts_with("10.82.0.") && v4.ends_with("/24"), "{j}");
        assert!(
            v6.starts_with("fd82:0:0:1::1") && v6.ends_with("/64"),
            "{j}"
        );
        assert_eq!(ips[1]["gateway"], "fd82:0:0:1::1", "{j}");
        let files = allocations(&dir);
        let want: BTreeMap<String, String> = addresses(&j)
            .into_iter()
            .map(|a| (a, attachment_content(&cid)))
            .collect();
        assert_eq!(files, want, "{adder:?} ADD");
        let names: BTreeSet<String> = state(&dir).into_keys().collect();
        assert!(
            names.contains("last_reserved_ip.0") && names.contains("last_reserved_ip.1"),
            "{names:?}"
        );
        if adder != deleter {
            call(&i, deleter, "host-local", "CHECK", &cid, &conf).ok();
        }
        call(&i, deleter, "host-local", "DEL", &cid, &conf).ok();
        assert_only_bookkeeping(&dir, 2);
    }

    // With the v6 set full, ADD fails and rolls its v4 address back.
    let tiny = hl_conf(
        "1.0.0",
        "dual-tiny",
        &data,
        json!({"ranges": [[{"subnet": "10.83.0.0/24"}], [{"subnet": "fd83::/64", "rangeStart": "fd83::5", "rangeEnd": "fd83::5"}]]}),
    );
    assert_eq!(
        addresses(
            &call(&i, Bin::Ours, "host-local", "ADD", "t1", &tiny)
                .ok()
                .json()
        )
        .len(),
        2
    );
    let e = call(&i, Bin::Ours, "host-local", "ADD", "t2", &tiny).err(999);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("failed to allocate for range 1"),
        "{e}"
    );
    let files = allocations(&data.join("dual-tiny"));
    assert_eq!(
        files.len(),
        2,
        "t2's IPv4 address is rolled back: {files:?}"
    );
    assert!(
        files.values().all(|c| c == &attachment_content("t1")),
        "{files:?}"
    );
}

fn static_conf(version: &str, addresses: Value) -> String {
    json!({
        "cniVersion": version, "name": "st", "type": "static",
        "ipam": {
            "type": "static",
            "addresses": addresses,
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.0.254"}, {"dst": "::/0", "gw": "fd10::1"}],
            "dns": {"nameservers": ["10.10.0.53", "fd10::53"], "domain": "example.com", "search": ["a.example.com"], "options": ["ndots:2"]},
        },
    })
    .to_string()
}

/// static returns what it is configured with, in the reference's shape.
#[test]
fn static_returns_its_config_like_the_reference() {
    let i = Install::new("hl-static", &[]);
    let addrs = json!([{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}, {"address": "fd10::5/64", "gateway": "fd10::1"}]);
    for v in VERSIONS {
        let conf = static_conf(v, addrs.clone());
        let j = call(&i, Bin::Ours, "static", "ADD", "st", &conf)
            .ok()
            .json();
        assert_eq!(j["cniVersion"], v, "{j}");
        assert!(j.get("interfaces").is_none(), "{v}: {j}");
        match v {
            "0.1.0" | "0.2.0" => {
                assert_eq!(j["ip4"]["ip"], "10.10.0.5/24", "{v}: {j}");
                assert_eq!(j["ip6"]["ip"], "fd10::5/64", "{v}: {j}");
            }
            _ => {
                assert_eq!(j["ips"][0]["address"], "10.10.0.5/24", "{v}: {j}");
                assert_eq!(j["ips"][0]["gateway"], "10.10.0.1", "{v}: {j}");
                assert_eq!(j["ips"][1]["address"], "fd10::5/64", "{v}: {j}");
                assert_eq!(j["ips"][1]["gateway"], "fd10::1", "{v}: {j}");
                assert_eq!(
                    j["ips"][0].get("version").is_some(),
                    v.starts_with("0."),
                    "{v}: {j}"
                );
                assert_eq!(j["routes"].as_array().map(Vec::len), Some(3), "{v}: {j}");
                assert_eq!(
                    j["dns"]["nameservers"],
                    json!(["10.10.0.53", "fd10::53"]),
                    "{v}: {j}"
                );
                assert_eq!(j["dns"]["domain"], "example.com", "{v}: {j}");
            }
        }
        let reference = call(&i, Bin::Reference, "static", "ADD", "st", &conf);
        if v == "1.1.0" {
            // The reference predates 1.1.0 (see the host-local shape test).
            assert_eq!(reference.err(1)["msg"], "incompatible CNI versions");
            let mut rj = call(
                &i,
                Bin::Reference,
                "static",
                "ADD",
                "st",
                &static_conf("1.0.0", addrs.clone()),
            )
            .ok()
            .json();
            rj["cniVersion"] = json!("1.1.0");
            assert_eq!(j, rj, "ours 1.1.0 vs reference 1.0.0 relabelled");
        } else {
            assert_eq!(j, reference.ok().json(), "{v}: ours vs reference");
        }
        call(&i, Bin::Ours, "static", "DEL", "st", &conf).ok();
    }

    // CNI_ARGS IP= adds addresses to the configured ones (appended, as the
    // reference does: it is not a replacement); GATEWAY= sets the gateway of
    // the CNI_ARGS addresses whose subnet contains it.
    let conf = static_conf("1.0.0", addrs.clone());
    let args = "IgnoreUnknown=1;IP=10.20.0.9/24,fd10::9/64;GATEWAY=10.20.0.254";
    let j = call_args(&i, Bin::Ours, "static", "ADD", "st", args, &conf)
        .ok()
        .json();
    let got: Vec<(&str, &str)> = j["ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|ip| {
                    (
                        ip["address"].as_str().unwrap_or_default(),
                        ip["gateway"].as_str().unwrap_or("-"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        got,
        [
            ("10.10.0.5/24", "10.10.0.1"),
            ("fd10::5/64", "fd10::1"),
            ("10.20.0.9/24", "10.20.0.254"),
            ("fd10::9/64", "-")
        ],
        "{j}"
    );
    assert_eq!(
        j,
        call_args(&i, Bin::Reference, "static", "ADD", "st", args, &conf)
            .ok()
            .json(),
        "CNI_ARGS: ours vs reference"
    );

    // A GATEWAY= inside the subnet of a *configured* address leaves that
    // address alone: it applies to the IP= addresses only, as in the reference.
    let args = "IP=10.10.0.9/24;GATEWAY=10.10.0.254";
    let j = call_args(&i, Bin::Ours, "static", "ADD", "st", args, &conf)
        .ok()
        .json();
    assert_eq!(
        j["ips"][0],
        json!({"address": "10.10.0.5/24", "gateway": "10.10.0.1"}),
        "{j}"
    );
    assert_eq!(
        j["ips"][2],
        json!({"address": "10.10.0.9/24", "gateway": "10.10.0.254"}),
        "{j}"
    );
    assert_eq!(
        j,
        call_args(&i, Bin::Reference, "static", "ADD", "st", args, &conf)
            .ok()
            .json(),
        "ours vs reference"
    );
    // With no configured addresses, IP= alone supplies them.
    let only_args = static_conf("1.0.0", json!([]));
    let j = call_args(
        &i,
        Bin::Ours,
        "static",
        "ADD",
        "st",
        "IP=10.10.0.7/24",
        &only_args,
    )
    .ok()
    .json();
    assert_eq!(addresses(&j), ["10.10.0.7"], "{j}");
    assert_eq!(
        j,
        call_args(
            &i,
            Bin::Reference,
            "static",
            "ADD",
            "st",
            "IP=10.10.0.7/24",
            &only_args
        )
        .ok()
        .json()
    );

    // An invalid address is an invalid network config: code 7. The
    // reference reports 999 (untyped Go error); 7 is the spec's code for it.
    let bad = static_conf("1.0.0", json!([{"address": "10.10.0.500/24"}]));
    let e = call(&i, Bin::Ours, "static", "ADD", "st", &bad).err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("10.10.0.500"),
        "{e}"
    );
    call(&i, Bin::Reference, "static", "ADD", "st", &bad).err(999);
    let e = call_args(&i, Bin::Ours, "static", "ADD", "st", "IP=not-an-ip", &conf).err(7);
    assert!(
        e["msg"].as_str().unwrap_or_default().contains("not-an-ip"),
        "{e}"
    );
    call_args(
        &i,
        Bin::Reference,
        "static",
        "ADD",
        "st",
        "IP=not-an-ip",
        &conf,
    )
    .err(999);
}

/// STATUS (1.1.0) stays ready while a range set is full (issue #21): a
/// failed STATUS makes containerd report the network not ready and the node
/// NotReady; exhaustion is ADD's error only.
#[test]
fn status_stays_ready_on_a_full_range() {
    let i = Install::new("hl-status", &[]);
    let conf = hl_conf(
        "1.1.0",
        "st",
        &i.data_dir(),
        json!({"ranges": [[{"subnet": "10.84.0.0/24", "rangeStart": "10.84.0.2", "rangeEnd": "10.84.0.3"}]]}),
    );
    let status = || call(&i, Bin::Ours, "host-local", "STATUS", "", &conf);
    let r = status();
    r.ok();
    assert!(
        r.stdout.is_empty(),
        "STATUS prints nothing on success: {}",
        r.stdout
    );
    call(&i, Bin::Ours, "host-local", "ADD", "s1", &conf).ok();
    call(&i, Bin::Ours, "host-local", "ADD", "s2", &conf).ok();
    call(&i, Bin::Ours, "host-local", "ADD", "s3", &conf).err(999);
    status().ok();
    // Dual stack: one full set does not make it unavailable either.
    let dual = hl_conf(
        "1.1.0",
        "st2",
        &i.data_dir(),
        json!({"ranges": [[{"subnet": "10.85.0.0/24"}], [{"subnet": "fd85::/64", "rangeStart": "fd85::2", "rangeEnd": "fd85::2"}]]}),
    );
    call(&i, Bin::Ours, "host-local", "ADD", "d1", &dual).ok();
    call(&i, Bin::Ours, "host-local", "STATUS", "", &dual).ok();
    // STATUS only exists from 1.1.0 on.
    call(
        &i,
        Bin::Ours,
        "host-local",
        "STATUS",
        "",
        &hl_conf(
            "1.0.0",
            "st",
            &i.data_dir(),
            json!({"subnet": "10.84.0.0/24"}),
        ),
    )
    .err(1);
}

#[test]
fn resolv_conf_dns_matches_the_reference_and_unknown_args_are_refused() {
    let i = Install::new("hl-resolv", &[]);
    let resolv = i.root.path().join("resolv.conf");
    std::fs::write(&resolv, "# test resolver\nnameserver 10.96.0.10\nnameserver fd00::a\ndomain cluster.local\nsearch svc.cluster.local cluster.local\noptions ndots:5\n").expect("resolv.conf");
    for (bin, tag) in [(Bin::Ours, "ours"), (Bin::Reference, "ref")] {
        let data = i.root.path().join(format!("data-{tag}"));
        let conf = hl_conf(
            "1.0.0",
            "resolvnet",
            &data,
            json!({"subnet": "10.81.0.0/24", "resolvConf": resolv.display().to_string()}),
        );
        let j = call(&i, bin, "host-local", "ADD", "r1", &conf).ok().json();
        assert_eq!(
            j["dns"],
            json!({"nameservers": ["10.96.0.10", "fd00::a"], "domain": "cluster.local", "search": ["svc.cluster.local", "cluster.local"], "options": ["ndots:5"]}),
            "{tag}: {j}"
        );
    }
    // A missing file is a configuration error that names it.
    let data = i.root.path().join("data-missing");
    let conf = hl_conf(
        "1.0.0",
        "resolvnet",
        &data,
        json!({"subnet": "10.81.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}),
    );
    let e = call(&i, Bin::Ours, "host-local", "ADD", "r2", &conf).err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("/nonexistent/resolv.conf"),
        "{e}"
    );
    assert_eq!(
        allocations(&data.join("resolvnet")).len(),
        0,
        "nothing allocated after the failure"
    );

    // CNI_ARGS keys the plugin does not know need IgnoreUnknown, as in the reference.
    let conf = hl_conf(
        "1.0.0",
        "argsnet",
        &i.root.path().join("data-args"),
        json!({"subnet": "10.82.0.0/24"}),
    );
    let e = call_args(
        &i,
        Bin::Ours,
        "host-local",
        "ADD",
        "a1",
        "K8S_POD_NAME=x",
        &conf,
    )
    .err(4);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("K8S_POD_NAME"),
        "{e}"
    );
    let r = call_args(
        &i,
        Bin::Reference,
        "host-local",
        "ADD",
        "a1",
        "K8S_POD_NAME=x",
        &conf,
    );
    assert_ne!(r.code, 0, "the reference refuses it too: {}", r.stdout);
    call_args(
        &i,
        Bin::Ours,
        "host-local",
        "ADD",
        "a2",
        "IgnoreUnknown=1;K8S_POD_NAME=x",
        &conf,
    )
    .ok();
}

/// Upstream host-local (0600 since v1.4.0) keeps its files readable by root
/// alone: the allocations (made by the host) and `last_reserved_ip.N`
/// (written by the module through WASI, which creates 0644); the directory
/// stays 0755. A file the reference 1.1.1 left 0644 is tightened too.
#[test]
fn state_files_are_private_like_upstream() {
    use std::os::unix::fs::PermissionsExt;
    let i = Install::new("hl-modes", &[]);
    let conf = hl_conf(
        "1.0.0",
        "modes",
        &i.data_dir(),
        json!({"ranges": [[{"subnet": "10.86.0.0/24"}], [{"subnet": "fd86::/64"}]]}),
    );
    call(&i, Bin::Reference, "host-local", "ADD", "ref1", &conf).ok();
    let dir = i.data_dir().join("modes");
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        mode("last_reserved_ip.0"),
        0o644,
        "the reference 1.1.1's mode"
    );
    call(&i, Bin::Ours, "host-local", "ADD", "ours1", &conf).ok();
    assert_eq!(mode(""), 0o755, "the network's directory");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lock")
        .collect();
    assert!(
        files.iter().any(|f| f == "10.86.0.3") && files.iter().any(|f| f == "last_reserved_ip.1"),
        "{files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{f} (of {files:?})");
    }
}
