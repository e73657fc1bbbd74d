//! Crash tier of issue #15: the Kubernetes pod chain (loopback; bridge +
//! host-local with ipMasq; portmap with the portMappings capability;
//! bandwidth with ingress and egress limits), run plugin by plugin as libcni
//! does (capability args as runtimeConfig, prevResult chained on ADD, DEL in
//! reverse order with the cached result, none after a failed ADD), with a
//! kill -9 at a random point of ADD or DEL: a random plugin of the chain, a
//! random delay after its spawn between 0 and its typical duration (measured
//! first). Then the runtime's recovery: DEL of the whole chain (retried DEL
//! after a killed DEL), which must succeed, and nothing of the pod may be
//! left (veths, bwp* ifbs, host-local allocations, CNI-* / CNI-DN-* chains and
//! the pod's CNI-HOSTPORT-* rules, qdiscs, the pod's eth0). At the end a GC
//! with an empty list of valid attachments, after which nothing may be left
//! either. Needs root; all in throwaway netns.
//!
//! The reference plugins get the same kill schedule in their own node in the
//! same run; their kills and leaks are printed, not asserted (they leak).
//! `WASM_CNI_CAMPAIGN_CASES` sets the number of kills per side,
//! `WASM_CNI_CAMPAIGN_SEED` replays a schedule. Nightly: `WASM_CNI_CAMPAIGN_CASES=1000`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::campaign::*;
use wasm_cni_tests::*;

/// Kills per side in CI.
const DEFAULT_KILLS: usize = 120;
const NET: &str = "wcni-crash";
const LO_NET: &str = "wcni-crash-lo";
const TIMEOUT: Duration = Duration::from_secs(60);

/// One plugin of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Loopback,
    Bridge,
    Portmap,
    Bandwidth,
}

const ADD_ORDER: [Step; 4] = [Step::Loopback, Step::Bridge, Step::Portmap, Step::Bandwidth];
const DEL_ORDER: [Step; 4] = [Step::Bandwidth, Step::Portmap, Step::Bridge, Step::Loopback];

impl Step {
    fn ty(self) -> &'static str {
        match self {
            Step::Loopback => "loopback",
            Step::Bridge => "bridge",
            Step::Portmap => "portmap",
            Step::Bandwidth => "bandwidth",
        }
    }
}

struct Side {
    ours: bool,
    node: Node,
    tmp: TempDir,
    install: Option<Install>,
}

impl Side {
    fn new(ours: bool) -> Side {
        let tag = if ours { "cro" } else { "crr" };
        Side {
            ours,
            node: Node::new(tag),
            tmp: TempDir::new(tag),
            install: ours.then(|| Install::new(tag, &[])),
        }
    }

    fn name(&self) -> &'static str {
        if self.ours {
            "ours"
        } else {
            "reference"
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("networks")
    }

    /// The main conflist's plugins, as the runtime reads them.
    fn plugins(&self) -> Vec<Value> {
        vec![
            json!({"type": "bridge", "bridge": "wcr0", "isGateway": true, "ipMasq": true,
                   "ipam": {"type": "host-local", "dataDir": p(&self.data()),
                            "ranges": [[{"subnet": "10.71.0.0/16"}]],
                            "routes": [{"dst": "0.0.0.0/0"}]}}),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        ]
    }

    /// The request config of `step` for pod `k`, as libcni builds it.
    fn conf(&self, step: Step, k: usize, version: &str, prev: Option<&Value>) -> Value {
        if step == Step::Loopback {
            return json!({"cniVersion": version, "name": LO_NET, "type": "loopback"});
        }
        let i = match step {
            Step::Bridge => 0,
            Step::Portmap => 1,
            _ => 2,
        };
        let mut c = self.plugins()[i].clone();
        c["cniVersion"] = json!(version);
        c["name"] = json!(NET);
        let port = 20000 + (k % 20000) as u64;
        match step {
            Step::Portmap => {
                c["runtimeConfig"] = json!({"portMappings": [
                    {"hostPort": port, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": port, "containerPort": 53, "protocol": "udp"}]});
            }
            Step::Bandwidth => {
                c["runtimeConfig"] = json!({"bandwidth": {
                    "ingressRate": 10_000_000, "ingressBurst": 100_000,
                    "egressRate": 20_000_000, "egressBurst": 200_000}});
            }
            _ => {}
        }
        if let Some(prev) = prev {
            c["prevResult"] = prev.clone();
        }
        c
    }

    fn bin(&self, ty: &str) -> (PathBuf, String) {
        match &self.install {
            Some(i) => (i.bin_dir().join(ty), p(&i.bin_dir())),
            None => (reference_plugin(ty), "/usr/lib/cni".into()),
        }
    }

    fn call(
        &self,
        cmd: &str,
        step: Step,
        pod: &Netns,
        k: usize,
        conf: &Value,
        kill: Option<Duration>,
    ) -> Exit {
        let (bin, cni_path) = self.bin(step.ty());
        let ifname = if step == Step::Loopback { "lo" } else { "eth0" };
        let mut env = env_of(&[
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", &cid(k)),
            ("CNI_NETNS", &pod.path()),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", &cni_path),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default"),
        ]);
        env.push(("PATH".into(), path_env()));
        if let Some(i) = &self.install {
            env.push(("WASM_CNI_CACHE_DIR".into(), OsString::from(i.cache_dir())));
            env.push(("WASM_CNI_LOG_FILE".into(), OsString::from(i.log_file())));
        }
        let stdin = serde_json::to_vec(conf).expect("conf");
        self.node.run(&bin, &env, &stdin, kill, TIMEOUT)
    }

    /// Everything of a pod that may be left: the node's state, the data dir
    /// and the pod's links.
    fn items(&self, pod: Option<&Netns>) -> Items {
        let mut m = self.node.items();
        m.extend(data_items(&self.data()));
        if let Some(pod) = pod {
            m.extend(pod_items(&pod.name));
        }
        m
    }
}

fn cid(k: usize) -> String {
    format!("crash-pod-{k:04}")
}

/// The chain's ADD without kills; returns the final result and each step's
/// duration.
fn full_add(side: &Side, pod: &Netns, k: usize) -> Result<(Option<Value>, Vec<Duration>), String> {
    let mut prev: Option<Value> = None;
    let mut took = Vec::new();
    for step in ADD_ORDER {
        let conf = if step == Step::Loopback {
            side.conf(step, k, "1.0.0", None)
        } else {
            side.conf(step, k, "1.0.0", prev.as_ref())
        };
        let e = side.call("ADD", step, pod, k, &conf, None);
        took.push(e.elapsed);
        if !e.ok() {
            return Err(format!("{} ADD failed: {}", step.ty(), e.brief()));
        }
        if step != Step::Loopback {
            prev = e.json();
        }
    }
    Ok((prev, took))
}

/// The chain's DEL (reverse order), with the cached result if any. Returns the
/// failures.
fn full_del(side: &Side, pod: &Netns, k: usize, cached: Option<&Value>) -> Vec<String> {
    let mut failures = Vec::new();
    for step in DEL_ORDER {
        let conf = side.conf(step, k, "1.0.0", cached);
        let e = side.call("DEL", step, pod, k, &conf, None);
        if judge(b"DEL", &e).0 != Verdict::Result {
            failures.push(format!("{} DEL failed: {}", step.ty(), e.brief()));
        }
    }
    failures
}

/// One side's campaign and what it found.
#[derive(Default)]
struct Figures {
    iterations: usize,
    kills: usize,
    kills_add: usize,
    kills_del: usize,
    /// (kill point, items left after the recovery DEL)
    leaks_after_del: Vec<(String, Vec<String>)>,
    leaked_items_after_del: usize,
    left_after_gc: Vec<String>,
    failures: Vec<String>,
    secs: f64,
}

impl Figures {
    fn line(&self) -> String {
        format!(
            "{} pods, {} kills ({} in ADD, {} in DEL) in {:.0} s: {} pods leaked {} items after the recovery DEL, {} items left after GC, {} failed recovery calls",
            self.iterations,
            self.kills,
            self.kills_add,
            self.kills_del,
            self.secs,
            self.leaks_after_del.len(),
            self.leaked_items_after_del,
            self.left_after_gc.len(),
            self.failures.len()
        )
    }
}

fn campaign(side: &Side, seed: u64, kills: usize) -> Figures {
    let start = Instant::now();
    let mut f = Figures::default();
    let tag = if side.ours { "crop" } else { "crrp" };
    let pristine = side.items(None);

    // Typical durations: three clean pods, the median per step.
    let mut add_t: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    let mut del_t: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    for k in 0..3 {
        let pod = Netns::new(tag);
        let k = 100_000 + k;
        let (res, took) = full_add(side, &pod, k)
            .unwrap_or_else(|e| panic!("{}: a clean ADD of the chain failed: {e}", side.name()));
        for (i, t) in took.into_iter().enumerate() {
            add_t[i].push(t);
        }
        for (i, step) in DEL_ORDER.iter().enumerate() {
            let conf = side.conf(*step, k, "1.0.0", res.as_ref());
            let e = side.call("DEL", *step, &pod, k, &conf, None);
            assert!(e.ok(), "{}: clean DEL failed: {}", side.name(), e.brief());
            del_t[i].push(e.elapsed);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let add_typ: Vec<Duration> = add_t.iter_mut().map(median).collect();
    let del_typ: Vec<Duration> = del_t.iter_mut().map(median).collect();
    eprintln!(
        "[crash] {}: typical ADD {:?}, DEL {:?} (loopback, bridge, portmap, bandwidth / reverse)",
        side.name(),
        add_typ,
        del_typ
    );
    let mut baseline = side.items(None);

    let mut k = 0;
    while f.kills < kills && k < kills * 3 {
        let mut r = Rng::for_case(seed, "crash", k as u64);
        k += 1;
        f.iterations += 1;
        let pod = Netns::new(tag);
        let in_add = r.below(2) == 0;
        // where to kill: bridge (links + IPAM + masquerade) most often,
        // loopback least
        let step_of = |ty: Step| {
            let order = if in_add { &ADD_ORDER } else { &DEL_ORDER };
            order.iter().position(|s| *s == ty).unwrap_or(0)
        };
        let at = match r.below(20) {
            0..=1 => step_of(Step::Loopback),
            2..=9 => step_of(Step::Bridge),
            10..=14 => step_of(Step::Portmap),
            _ => step_of(Step::Bandwidth),
        };
        let typ = if in_add { add_typ[at] } else { del_typ[at] };
        let delay = Duration::from_micros(r.below(typ.as_micros().max(1) as usize) as u64);
        let point;
        if in_add {
            let step = ADD_ORDER[at];
            point = format!("pod {k}: ADD of {} killed after {delay:?}", step.ty());
            // the steps before run to completion
            let mut prev: Option<Value> = None;
            let mut aborted = false;
            for s in &ADD_ORDER[..at] {
                let conf = side.conf(*s, k, "1.0.0", prev.as_ref());
                let e = side.call("ADD", *s, &pod, k, &conf, None);
                if !e.ok() {
                    f.failures.push(format!(
                        "{point}: earlier {} ADD failed: {}",
                        s.ty(),
                        e.brief()
                    ));
                    aborted = true;
                    break;
                }
                if *s != Step::Loopback {
                    prev = e.json();
                }
            }
            let mut killed = false;
            if !aborted {
                let conf = side.conf(step, k, "1.0.0", prev.as_ref());
                let e = side.call("ADD", step, &pod, k, &conf, Some(delay));
                killed = e.killed;
                if killed {
                    f.kills += 1;
                    f.kills_add += 1;
                }
            }
            // The runtime saw the ADD fail (or, if the kill came too late,
            // tears the pod down anyway): DEL without a cached result.
            let _ = killed;
            for fail in full_del(side, &pod, k, None) {
                f.failures.push(format!("{point}: recovery {fail}"));
            }
        } else {
            let step = DEL_ORDER[at];
            point = format!("pod {k}: DEL of {} killed after {delay:?}", step.ty());
            let cached = match full_add(side, &pod, k) {
                Ok((res, _)) => res,
                Err(e) => {
                    f.failures.push(format!("{point}: {e}"));
                    None
                }
            };
            for s in &DEL_ORDER[..at] {
                let conf = side.conf(*s, k, "1.0.0", cached.as_ref());
                let e = side.call("DEL", *s, &pod, k, &conf, None);
                if !e.ok() {
                    f.failures.push(format!(
                        "{point}: earlier {} DEL failed: {}",
                        s.ty(),
                        e.brief()
                    ));
                }
            }
            let conf = side.conf(step, k, "1.0.0", cached.as_ref());
            let e = side.call("DEL", step, &pod, k, &conf, Some(delay));
            if e.killed {
                f.kills += 1;
                f.kills_del += 1;
            }
            // libcni keeps the cached result until a DEL succeeds: retry.
            for fail in full_del(side, &pod, k, cached.as_ref()) {
                f.failures.push(format!("{point}: retried {fail}"));
            }
        }
        let now = side.items(Some(&pod));
        let leaked = added(&baseline, &now);
        if !leaked.is_empty() {
            f.leaked_items_after_del += leaked.len();
            f.leaks_after_del.push((point, leaked));
        }
        drop(pod);
        // the next pod's baseline: after the sandbox is gone
        let _ = settle_links(side.node.name(), |n| n.starts_with("veth"), 5);
        baseline = side.items(None);
    }

    // GC with no valid attachment (every pod is gone), plugin by plugin,
    // for what only GC can know.
    if side.ours {
        for step in [Step::Bridge, Step::Portmap, Step::Bandwidth] {
            let mut conf = side.conf(step, 0, "1.1.0", None);
            conf["cni.dev/valid-attachments"] = json!([]);
            let (bin, cni_path) = side.bin(step.ty());
            let mut env = env_of(&[("CNI_COMMAND", "GC"), ("CNI_PATH", &cni_path)]);
            env.push(("PATH".into(), path_env()));
            if let Some(i) = &side.install {
                env.push(("WASM_CNI_CACHE_DIR".into(), OsString::from(i.cache_dir())));
                env.push(("WASM_CNI_LOG_FILE".into(), OsString::from(i.log_file())));
            }
            let stdin = serde_json::to_vec(&conf).expect("conf");
            let e = side.node.run(&bin, &env, &stdin, None, TIMEOUT);
            if judge(b"GC", &e).0 != Verdict::Result {
                f.failures
                    .push(format!("{} GC failed: {}", step.ty(), e.brief()));
            }
        }
    }
    let _ = settle_links(side.node.name(), |n| n.starts_with("veth"), 5);
    f.left_after_gc = added(&pristine, &side.items(None));
    f.secs = start.elapsed().as_secs_f64();
    f
}

#[test]
fn crash_kill9_during_add_and_del_of_the_k8s_chain() {
    require_root();
    let seed = seed("crash");
    let kills = cases(DEFAULT_KILLS);
    let start = Instant::now();
    let sides = [Side::new(true), Side::new(false)];
    let figs: Vec<Figures> = std::thread::scope(|s| {
        let hs: Vec<_> = sides
            .iter()
            .map(|side| s.spawn(move || campaign(side, seed, kills)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("side")).collect()
    });
    for (side, f) in sides.iter().zip(&figs) {
        eprintln!("[crash] {}: {}", side.name(), f.line());
        let mut by_point: std::collections::BTreeMap<String, usize> = Default::default();
        for (point, items) in &f.leaks_after_del {
            let what = point.split(": ").nth(1).unwrap_or(point);
            let what = what.split(" after").next().unwrap_or(what).to_string();
            *by_point.entry(what).or_default() += items.len();
        }
        if !by_point.is_empty() {
            eprintln!(
                "[crash] {}: leaked items by kill point: {by_point:?}",
                side.name()
            );
        }
        for x in f.failures.iter().take(3) {
            eprintln!("[crash] {}: failed recovery: {}", side.name(), clip(x, 300));
        }
        for (point, items) in f.leaks_after_del.iter().take(3) {
            eprintln!(
                "[crash] {}: {point}: left {:?}",
                side.name(),
                items.iter().map(|i| clip(i, 120)).collect::<Vec<_>>()
            );
        }
    }
    eprintln!(
        "[crash] seed {seed}, total {:.0} s",
        start.elapsed().as_secs_f64()
    );
    let ours = &figs[0];
    let mut problems = Vec::new();
    if ours.kills < kills {
        problems.push(format!(
            "only {} kills hit a running plugin (wanted {kills})",
            ours.kills
        ));
    }
    for x in ours.failures.iter().take(10) {
        problems.push(clip(x, 500));
    }
    for (point, items) in ours.leaks_after_del.iter().take(10) {
        problems.push(format!(
            "{point}: left after the recovery DEL: {:?}",
            items.iter().map(|i| clip(i, 160)).collect::<Vec<_>>()
        ));
    }
    if !ours.left_after_gc.is_empty() {
        problems.push(format!(
            "left after GC: {:?}",
            ours.left_after_gc
                .iter()
                .map(|i| clip(i, 160))
                .collect::<Vec<_>>()
        ));
    }
    assert!(
        problems.is_empty(),
        "crash campaign of ours (seed {seed}, replay with WASM_CNI_CAMPAIGN_SEED={seed}):\n{}",
        problems.join("\n")
    );
}
