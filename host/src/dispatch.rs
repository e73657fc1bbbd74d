//! The CNI entry point: the runtime exec'd `<bin dir>/<type>`, a link to
//! this binary. Validate the environment and config, run the type's module
//! in a sandbox, render the result for the requested cniVersion.
//! Stdout carries only the result or error JSON.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::caps::bindings::wit;
use crate::caps::{cap_error, convert, CallContext};
use crate::kernel::Kernels;
use crate::protocol::config::{self, NetConf};
use crate::protocol::env::{self, CniEnv, Command};
use crate::protocol::error::{self, code, CniError};
use crate::protocol::{result, version};
use crate::runtime::cache::Cache;
use crate::runtime::phases::{self, Phase};
use crate::runtime::resolve::{self, SearchPath};
use crate::runtime::sandbox::{self, Call};
use crate::runtime::{engine, Limits, Runtime};
use crate::{logging, statedir};

pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wasm-cni/cache";

/// Host settings from the environment and the plugin config's `wasmCni`
/// object (config wins).
#[derive(Debug, Clone)]
pub struct Settings {
    pub cache_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    /// Whether `log_file` came from the conflist (opened contained).
    pub log_origin: logging::LogOrigin,
    pub limits: Limits,
}

/// One settable limit: its environment variable, its `wasmCni` key, the
/// values it takes and where it goes. The conflist key wins over the
/// environment; both take the same range.
struct Knob {
    env: &'static str,
    key: &'static str,
    range: std::ops::RangeInclusive<u64>,
    unit: &'static str,
    set: fn(&mut Limits, u64),
}

/// Every limit an operator may set (README, "Limits").
const KNOBS: [Knob; 6] = [
    Knob {
        env: "WASM_CNI_TIMEOUT_MS",
        key: "timeoutMs",
        range: 1..=600_000,
        unit: "milliseconds",
        set: |l, v| l.deadline = Duration::from_millis(v),
    },
    Knob {
        env: "WASM_CNI_MEMORY_MIB",
        key: "memoryMiB",
        range: 1..=4096,
        unit: "MiB",
        set: |l, v| l.memory_bytes = (v as usize) << 20,
    },
    Knob {
        env: "WASM_CNI_MAX_OBJECTS",
        key: "maxObjects",
        range: 1..=65_536,
        unit: "kernel objects",
        set: |l, v| l.max_objects = v as usize,
    },
    Knob {
        env: "WASM_CNI_STATE_FILES",
        key: "stateFiles",
        range: 1..=100_000,
        unit: "files",
        set: |l, v| l.state_files = v as usize,
    },
    Knob {
        env: "WASM_CNI_STATE_KIB",
        key: "stateKiB",
        range: 1..=1 << 20,
        unit: "KiB",
        set: |l, v| l.state_bytes = v << 10,
    },
    Knob {
        env: "WASM_CNI_LOG_KIB",
        key: "logKiB",
        range: 1..=1 << 20,
        unit: "KiB",
        set: |l, v| l.log_bytes = v << 10,
    },
];

impl Knob {
    /// The environment's value: unset or empty is the default, anything
    /// else must be a number in range.
    fn read_env(&self, get: &dyn Fn(&str) -> Option<String>) -> Result<Option<u64>, CniError> {
        let Some(raw) = get(self.env).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| self.range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                CniError::new(code::INVALID_ENVIRONMENT, format!("invalid {}", self.env))
                    .with_details(format!(
                        "{} is {:?}; set it to {} between {} and {}, or unset it",
                        self.env,
                        error::bounded(&raw, 64),
                        self.unit,
                        self.range.start(),
                        self.range.end()
                    ))
            })
    }

    /// The conflist's value, when `wasmCni` has the key.
    fn read_config(&self, w: &serde_json::Value) -> Result<Option<u64>, CniError> {
        let Some(v) = w.get(self.key) else {
            return Ok(None);
        };
        v.as_u64()
            .filter(|n| self.range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    format!("invalid wasmCni.{}", self.key),
                )
                .with_details(format!(
                    "expected {} between {} and {}, got {}",
                    self.unit,
                    self.range.start(),
                    self.range.end(),
                    error::bounded(&v.to_string(), 64)
                ))
            })
    }
}

impl Settings {
    /// Settings from the process environment; a bad value is an error
    /// naming the variable.
    pub fn from_env() -> Result<Settings, CniError> {
        let (settings, problem) = Settings::from_lookup(&|k| {
            std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
        });
        match problem {
            Some(e) => Err(e),
            None => Ok(settings),
        }
    }

    /// Settings from `get`: the valid values applied, defaults for the rest,
    /// and the first invalid value as an error (DEL goes on without it).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> (Settings, Option<CniError>) {
        let mut problem = None;
        let mut limits = Limits::default();
        for knob in &KNOBS {
            match knob.read_env(get) {
                Ok(Some(v)) => (knob.set)(&mut limits, v),
                Ok(None) => {}
                Err(e) => problem = problem.or(Some(e)),
            }
        }
        let path = |k: &str, default: &str| {
            PathBuf::from(
                get(k)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| default.into()),
            )
        };
        let settings = Settings {
            cache_dir: path("WASM_CNI_CACHE_DIR", DEFAULT_CACHE_DIR),
            log_file: Some(path("WASM_CNI_LOG_FILE", logging::DEFAULT_LOG_FILE)),
            log_origin: logging::LogOrigin::Environment,
            limits,
        };
        (settings, problem)
    }

    /// Applies `wasmCni: {logFile, <KNOBS keys>}` from a plugin config.
    /// Each valid key is applied even when another is refused.
    pub fn apply_config(&mut self, raw: &serde_json::Value) -> Result<(), CniError> {
        let Some(w) = raw.get("wasmCni") else {
            return Ok(());
        };
        let mut problem = None;
        if let Some(v) = w.get("logFile") {
            let why = match v.as_str().map(logging::check_config_path) {
                Some(Ok(p)) => {
                    self.log_file = Some(p);
                    self.log_origin = logging::LogOrigin::Conflist;
                    None
                }
                Some(Err(why)) => Some(format!("an absolute path to a *.log file: {why}")),
                None => Some("a path string".to_string()),
            };
            if let Some(why) = why {
                problem = Some(
                    CniError::new(code::INVALID_NETWORK_CONFIG, "invalid wasmCni.logFile")
                        .with_details(format!("expected {why}")),
                );
            }
        }
        for knob in &KNOBS {
            match knob.read_config(w) {
                Ok(Some(v)) => (knob.set)(&mut self.limits, v),
                Ok(None) => {}
                Err(e) => problem = problem.or(Some(e)),
            }
        }
        match problem {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

pub fn runtime(
    settings: &Settings,
    cni_path: &[PathBuf],
    kernels: Kernels,
) -> Result<Runtime, CniError> {
    runtime_for(settings, cni_path, kernels, None)
}

/// The runtime for a call of `command`. A DEL must tear down even when the
/// module cache is unusable (a file, on /proc, group-writable): it then
/// compiles into a private throwaway cache instead, slower but complete.
pub fn runtime_for(
    settings: &Settings,
    cni_path: &[PathBuf],
    kernels: Kernels,
    command: Option<Command>,
) -> Result<Runtime, CniError> {
    let t = Instant::now();
    let engine = engine::engine(false).map_err(|e| {
        CniError::internal("cannot create the wasm engine").with_details(format!("{e:#}"))
    })?;
    let engine_key = engine::compatibility_key(&engine);
    let cache = match Cache::open(&settings.cache_dir) {
        Ok(c) => c,
        Err(e) if command == Some(Command::Del) => {
            tracing::warn!(error = %e, "unusable module cache; DEL compiles into a private temporary cache");
            Cache::ephemeral().map_err(|e2| {
                CniError::new(code::IO_FAILURE, "unusable module cache")
                    .with_details(format!("{e}; and no temporary cache either: {e2}"))
            })?
        }
        Err(e) => {
            return Err(CniError::new(code::IO_FAILURE, "unusable module cache").with_details(e))
        }
    };
    phases::record(Phase::Engine, t);
    Ok(Runtime {
        engine,
        engine_key,
        cache,
        search: SearchPath::new(cni_path, resolve::self_dir()),
        limits: settings.limits,
        kernels,
    })
}

/// Runs a module for one call; IPAM modules get their locked state dir.
pub fn run_module(
    rt: &Arc<Runtime>,
    plugin_type: &str,
    call: Arc<CallContext>,
    what: Call,
) -> Result<Option<wit::CniResult>, CniError> {
    let t = Instant::now();
    let loaded = rt.load(plugin_type)?;
    phases::record(Phase::Load, t);
    if loaded.compiled {
        tracing::info!(
            module = plugin_type,
            "compiled module on first use (run `wasm-cni install` to precompile)"
        );
    }
    // GC and STATUS of an IPAM module also need its state, under the lock.
    let state = if loaded.meta.kind == wit::PluginKind::Ipam
        && crate::runtime::uses_state_dir(&loaded.component, &rt.engine)
    {
        let config: serde_json::Value =
            serde_json::from_slice(&call.config_bytes).map_err(|e| {
                CniError::decoding("network configuration is not valid JSON")
                    .with_details(e.to_string())
            })?;
        // Time queued behind other calls for the network's lock is not the
        // plugin's: the deadline moves by it (see `Deadline`).
        let queued = Instant::now();
        let opened = statedir::open(
            &config,
            &call.invocation.network_name,
            call.command == Command::Del,
        );
        call.deadline.extend(queued.elapsed());
        match opened? {
            Some(dir) => Some(dir),
            // DEL of a network that never had state: nothing to release,
            // and an IPAM module can hold no state anywhere else.
            None => return Ok(None),
        }
    } else {
        None
    };
    let is_add = matches!(what, Call::Add);
    let out = sandbox::invoke(
        &rt.engine,
        &loaded,
        &rt.limits,
        call.clone(),
        state.as_ref().map(|s| &s.dir),
        what,
    );
    // The module's leftovers and what it wrote past its quota go (see
    // `StateDir::after_call`); a call that succeeded fails then.
    let quota = match &state {
        Some(dir) => dir.after_call(out.is_err(), &rt.limits),
        None => Ok(()),
    };
    let out = match (out, quota) {
        (Ok(_), Err(e)) => {
            call.rollback();
            Err(e)
        }
        (out, _) => out,
    };
    // Background teardown steps end before the result is written; the
    // module's own error, if any, is the one reported.
    let deferred = call.finish_deferred();
    let out = out?;
    if let (true, Some(r)) = (is_add, &out) {
        let prev = call.invocation.prev_result.clone().map(convert::from_wit);
        if let Err(e) = crate::caps::claims::check(
            loaded.meta.kind,
            &call.invocation.netns,
            prev.as_ref(),
            &call.done(),
            &convert::from_wit(r.clone()),
        ) {
            call.rollback();
            return Err(e);
        }
    }
    deferred.map_err(|e| CniError {
        code: e.code,
        msg: e.msg,
        details: e.details,
    })?;
    Ok(out)
}

fn read_stdin() -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            "cannot read the network configuration from stdin",
        )
        .with_details(e.to_string())
    })?;
    Ok(buf)
}

/// Output of one CNI call: what goes to stdout and the exit status.
pub struct Outcome {
    pub stdout: String,
    pub status: i32,
}

/// Runs the CNI protocol for `plugin_type` with an explicit environment and
/// stdin (so tests can drive it), returning what to print.
pub fn cni_call(
    plugin_type: &str,
    vars: &[(String, String)],
    stdin: &[u8],
    kernels: Kernels,
) -> Outcome {
    let lookup = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let started = Instant::now();
    let mut cni_version = "0.1.0".to_string();
    let mut command_name = lookup("CNI_COMMAND").unwrap_or_default();
    let (mut settings, env_problem) = Settings::from_lookup(&lookup);
    let r = (|| -> Result<Option<String>, CniError> {
        let env = env::from_lookup(lookup)?;
        command_name = env.command.as_str().to_string();
        if env.command == Command::Version {
            return version::version_answer(stdin).map(Some);
        }
        let conf = config::parse(stdin, env.command)?;
        cni_version = conf.cni_version.clone();
        // A DEL goes on with the default for a bad setting: an operator's
        // typo must not keep pods from being torn down.
        let config_problem = settings.apply_config(&conf.raw).err();
        logging::init(
            settings.log_file.as_deref(),
            settings.log_origin,
            settings.limits.log_bytes,
        );
        for problem in [env_problem, config_problem].into_iter().flatten() {
            if env.command == Command::Del {
                tracing::warn!(container_id = %env.container_id, error = %problem, "ignored for DEL; the default applies");
            } else {
                return Err(problem);
            }
        }
        let rt = Arc::new(runtime_for(
            &settings,
            &env.path,
            kernels,
            Some(env.command),
        )?);
        execute(&rt, plugin_type, &env, &conf, stdin, vars)
    })();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let cid = lookup("CNI_CONTAINERID").unwrap_or_default();
    match r {
        Ok(out) => {
            let p = phases::take();
            tracing::info!(
                container_id = %cid,
                command = %command_name,
                module = %plugin_type,
                duration_ms = (elapsed_ms * 100.0).round() / 100.0,
                engine_us = p.engine_us,
                load_us = p.load_us,
                link_us = p.link_us,
                instantiate_us = p.instantiate_us,
                call_us = p.call_us,
                "ok"
            );
            Outcome {
                stdout: out.unwrap_or_default(),
                status: 0,
            }
        }
        Err(e) => {
            logging::init(
                settings.log_file.as_deref(),
                settings.log_origin,
                settings.limits.log_bytes,
            );
            tracing::error!(container_id = %cid, command = %command_name, module = %plugin_type, duration_ms = (elapsed_ms * 100.0).round() / 100.0, code = e.code, "{}", e);
            // Failures are also told on stderr, for humans and for runtimes that show it.
            eprintln!(
                "wasm-cni {plugin_type}: {}",
                error::bounded(&e.to_string(), 2 * error::MAX_TEXT_BYTES)
            );
            Outcome {
                stdout: e.to_json(&cni_version),
                status: 1,
            }
        }
    }
}

fn execute(
    rt: &Arc<Runtime>,
    plugin_type: &str,
    env: &CniEnv,
    conf: &NetConf,
    stdin: &[u8],
    vars: &[(String, String)],
) -> Result<Option<String>, CniError> {
    refuse_own_netns(&env.netns)?;
    let prev_result = match &conf.prev_result {
        Some(v) if !v.is_null() => {
            let prev = result::parse(v, &conf.cni_version)?;
            // Refused before the module runs: a chained plugin would act
            // on it (portmap maps ports) and only then fail to pass it on.
            result::validate(&prev).map_err(|e| {
                CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    format!(
                        "invalid prevResult: {}",
                        e.msg.trim_start_matches("invalid result: ")
                    ),
                )
                .with_details("the previous plugin's result must be a valid CNI result")
            })?;
            Some(convert::to_wit(prev))
        }
        _ => None,
    };
    let invocation = wit::Invocation {
        container_id: env.container_id.clone(),
        netns: env.netns.clone(),
        ifname: env.ifname.clone(),
        args: env.args.clone(),
        cni_version: conf.cni_version.clone(),
        network_name: conf.name.clone(),
        config: String::from_utf8_lossy(stdin).into_owned(),
        prev_result,
    };
    let what = match env.command {
        Command::Add => Call::Add,
        Command::Del => Call::Del,
        Command::Check => Call::Check,
        Command::Status => Call::Status,
        Command::Gc => Call::Gc(
            crate::inflight::gc_valid(&conf.raw, &conf.name)?
                .into_iter()
                .map(|(container_id, ifname)| wit::Attachment {
                    container_id,
                    ifname,
                })
                .collect(),
        ),
        Command::Version => return Err(CniError::internal("VERSION reached module dispatch")),
    };
    if rt.cache.is_ephemeral() {
        warm_ephemeral_cache(rt, plugin_type, &conf.raw);
    }
    let call = CallContext {
        kernels: rt.kernels.clone(),
        limits: rt.limits,
        ipam: Arc::new(IpamDelegation(rt.clone())),
        gc_keep: crate::inflight::gc_valid,
        command: env.command,
        invocation,
        config_bytes: stdin.to_vec(),
        env: vars.to_vec(),
        module: plugin_type.to_string(),
        undo: Default::default(),
        deferred: Default::default(),
        deadline: Arc::new(crate::caps::Deadline::new(
            Instant::now() + rt.limits.deadline,
        )),
        issued: Default::default(),
        ipam_ips: Default::default(),
        objects: Default::default(),
    };
    // Seen by a concurrent GC until the result is written (see inflight).
    let _in_flight = (env.command == Command::Add)
        .then(|| crate::inflight::mark(&conf.name, &env.container_id, &env.ifname))
        .flatten();
    let call = Arc::new(call);
    let out = run_module(rt, plugin_type, call.clone(), what)?;
    let rendered = match (env.command, out) {
        (Command::Add, Some(r)) => {
            result::render(&convert::from_wit(r), &conf.cni_version).map(|v| Some(v.to_string()))
        }
        (Command::Add, None) => Err(CniError::internal(
            "plugin module returned no result for ADD",
        )),
        _ => Ok(None),
    };
    if rendered.is_err() {
        // The module succeeded but its result cannot be given: the ADD
        // failed, so what it did is undone like any failed ADD's.
        call.rollback();
    }
    rendered
}

/// A DEL on a private cache (see `runtime_for`) compiles its modules, a
/// second or more each on a loaded node: that is done before the call's
/// deadline starts, which bounds the modules' run, not the host's compiler.
/// The network's IPAM module, which the call may delegate to, is compiled
/// too. Errors are left for the call to meet and report.
fn warm_ephemeral_cache(rt: &Runtime, plugin_type: &str, config: &serde_json::Value) {
    let ipam = config
        .get("ipam")
        .and_then(|i| i.get("type"))
        .and_then(|t| t.as_str())
        .filter(|t| rt.search.find_module(t).is_ok());
    for t in std::iter::once(plugin_type).chain(ipam) {
        if let Err(e) = rt.load(t) {
            tracing::debug!(module = t, error = %e, "not precompiled for this DEL");
        }
    }
}

/// Refuses a `CNI_NETNS` that is this process's own network namespace or
/// the node's (pid 1's): a container interface plugin would otherwise
/// configure, or on DEL delete, the node's own `eth0`. A path that does not
/// exist is left to the module (DEL after the netns is gone).
fn refuse_own_netns(netns: &str) -> Result<(), CniError> {
    use std::os::unix::fs::MetadataExt;
    if netns.is_empty() {
        return Ok(());
    }
    let Ok(target) = std::fs::metadata(netns) else {
        return Ok(());
    };
    for (own, whose) in [
        ("/proc/self/ns/net", "the plugin's own"),
        ("/proc/1/ns/net", "the node's (pid 1)"),
    ] {
        if let Ok(m) = std::fs::metadata(own) {
            if (m.dev(), m.ino()) == (target.dev(), target.ino()) {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("CNI_NETNS {netns} is {whose} network namespace, not a container's"),
                )
                .with_details("pass the container's network namespace in CNI_NETNS"));
            }
        }
    }
    Ok(())
}

/// The process environment as text. A variable that is not UTF-8 (any
/// runtime may pass one through) is taken lossily instead of aborting:
/// a `CNI_*` one then fails its own validation with a clear error, any
/// other is only passed on to a delegated plugin.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// `main` for the CNI entry: real environment, stdin and kernel.
pub fn cni_main(plugin_type: &str) -> i32 {
    let vars = process_env();
    if !vars.iter().any(|(k, _)| k == "CNI_COMMAND") {
        // What the reference skel does without CNI_COMMAND: an about text on stderr.
        eprintln!(
            "CNI {plugin_type} plugin (wasm-cni {})\nCNI protocol versions supported: {}",
            env!("CARGO_PKG_VERSION"),
            version::SUPPORTED.join(", ")
        );
        return 0;
    }
    let stdin = match read_stdin() {
        Ok(b) => b,
        Err(e) => {
            println!("{}", e.to_json("0.1.0"));
            return 1;
        }
    };
    let out = cni_call(plugin_type, &vars, &stdin, Kernels::system());
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.stdout.as_bytes());
    let _ = so.flush();
    out.status
}

/// IPAM delegation, injected into every `CallContext` (`caps::IpamRunner`):
/// a `<type>.wasm` module runs in-process in a sandbox of its own; otherwise
/// the native binary from CNI_PATH is exec'd with the CNI protocol, so dhcp,
/// whereabouts or the reference host-local keep working.
pub struct IpamDelegation(pub Arc<Runtime>);

impl crate::caps::IpamRunner for IpamDelegation {
    fn run(
        &self,
        call: &CallContext,
        command: Command,
        deadline: Arc<crate::caps::Deadline>,
    ) -> Result<Option<wit::CniResult>, wit::CniError> {
        let t = ipam_type(call)?;
        let rt = &self.0;
        let to_wit = |e: crate::protocol::error::CniError| cap_error(e.code, e.msg, e.details);
        if rt.search.find_module(&t).is_ok() {
            let what = module_call(call, command)?;
            let nested = CallContext {
                kernels: call.kernels.clone(),
                limits: call.limits,
                ipam: call.ipam.clone(),
                gc_keep: call.gc_keep,
                command,
                invocation: call.invocation.clone(),
                config_bytes: call.config_bytes.clone(),
                env: call.env.clone(),
                module: t.clone(),
                undo: Default::default(),
                deferred: Default::default(),
                deadline: deadline.clone(),
                issued: Default::default(),
                ipam_ips: Default::default(),
                objects: Default::default(),
            };
            return run_module(rt, &t, Arc::new(nested), what).map_err(to_wit);
        }
        let bin = rt.search.find_binary(&t).map_err(|searched| {
            cap_error(
                code::INVALID_NETWORK_CONFIG,
                format!("IPAM plugin {t:?} not found"),
                format!("no {t}.wasm module and no {t} binary; {searched}"),
            )
        })?;
        let out = match crate::delegate_exec::exec(
            &bin,
            &call.env,
            command,
            &call.config_bytes,
            deadline
                .at()
                .saturating_duration_since(std::time::Instant::now()),
        ) {
            Err(e) if command == Command::Gc && predates_gc(call, &bin) => {
                tracing::warn!(plugin = %bin.display(), error = %e, "the IPAM plugin predates GC (no cniVersion >= 1.1.0 in its VERSION answer): its allocations are not collected");
                return Ok(None);
            }
            r => r.map_err(to_wit)?,
        };
        if command != Command::Add {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            cap_error(
                code::DECODING_FAILURE,
                format!("IPAM plugin {t} printed an invalid result"),
                e.to_string(),
            )
        })?;
        let result =
            crate::protocol::result::parse(&value, &call.invocation.cni_version).map_err(to_wit)?;
        Ok(Some(convert::to_wit(result)))
    }
}

fn ipam_type(call: &CallContext) -> Result<String, wit::CniError> {
    let config: serde_json::Value = serde_json::from_slice(&call.config_bytes).map_err(|e| {
        cap_error(
            code::DECODING_FAILURE,
            "network configuration is not valid JSON",
            e.to_string(),
        )
    })?;
    let ipam = config.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("ipam"))
            .map(|(_, v)| v)
    });
    let t = ipam
        .and_then(|i| i.as_object())
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("type")))
        .and_then(|(_, v)| v.as_str());
    match t {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => Err(cap_error(
            code::INVALID_NETWORK_CONFIG,
            "no IPAM plugin configured",
            "set ipam.type in the network configuration",
        )),
    }
}

/// What an IPAM module is run for: GC carries the runtime's valid list,
/// read from the configuration the IPAM plugin gets (as an exec'd plugin
/// reads it from stdin).
fn module_call(call: &CallContext, command: Command) -> Result<Call, wit::CniError> {
    Ok(match command {
        Command::Add => Call::Add,
        Command::Del => Call::Del,
        Command::Check => Call::Check,
        Command::Gc => {
            let valid = call.gc_valid()?;
            Call::Gc(
                valid
                    .into_iter()
                    .map(|(container_id, ifname)| wit::Attachment {
                        container_id,
                        ifname,
                    })
                    .collect(),
            )
        }
        _ => Call::Status,
    })
}

/// Whether an exec'd IPAM plugin predates GC: its VERSION answer lists no
/// cniVersion from 1.1.0 on (Debian's reference host-local, 1.1.1, answers
/// GC with "unknown CNI_COMMAND"). Such a plugin has no GC to run, so the
/// main plugin's GC goes on without it.
fn predates_gc(call: &CallContext, bin: &std::path::Path) -> bool {
    use crate::protocol::version::Version;
    let stdin = serde_json::json!({"cniVersion": call.invocation.cni_version}).to_string();
    let Ok(out) = crate::delegate_exec::exec(
        bin,
        &call.env,
        Command::Version,
        stdin.as_bytes(),
        call.limits.deadline,
    ) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) else {
        return false;
    };
    let Some(list) = v.get("supportedVersions").and_then(|l| l.as_array()) else {
        return false;
    };
    !list
        .iter()
        .filter_map(|s| s.as_str())
        .filter_map(|s| Version::parse(s).ok())
        .any(|s| s >= Version::V1_1_0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(env: &[(&str, &str)]) -> (Settings, Option<CniError>) {
        Settings::from_lookup(&|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn every_limit_is_settable_from_the_environment_and_the_conflist() {
        let (mut s, problem) = settings(&[
            ("WASM_CNI_TIMEOUT_MS", "1500"),
            ("WASM_CNI_MEMORY_MIB", "32"),
            ("WASM_CNI_MAX_OBJECTS", "100"),
            ("WASM_CNI_STATE_FILES", "8"),
            ("WASM_CNI_STATE_KIB", "16"),
            ("WASM_CNI_LOG_KIB", "64"),
        ]);
        assert!(problem.is_none(), "{problem:?}");
        let l = s.limits;
        assert_eq!(l.deadline, Duration::from_millis(1500));
        assert_eq!(l.memory_bytes, 32 << 20);
        assert_eq!(
            (l.max_objects, l.state_files, l.state_bytes, l.log_bytes),
            (100, 8, 16 << 10, 64 << 10)
        );
        // the conflist wins, key by key
        s.apply_config(&serde_json::json!({"wasmCni": {"maxObjects": 7, "stateKiB": 2}}))
            .unwrap();
        assert_eq!((s.limits.max_objects, s.limits.state_bytes), (7, 2 << 10));
        assert_eq!(s.limits.state_files, 8);
    }

    #[test]
    fn a_bad_limit_names_what_to_fix_and_the_rest_still_apply() {
        let (s, problem) =
            settings(&[("WASM_CNI_MAX_OBJECTS", "0"), ("WASM_CNI_STATE_FILES", "9")]);
        let e = problem.unwrap();
        assert_eq!(e.code, code::INVALID_ENVIRONMENT);
        assert!(e.details.contains("between 1 and 65536"), "{e:?}");
        assert_eq!(s.limits.max_objects, Limits::default().max_objects);
        assert_eq!(s.limits.state_files, 9);
        let mut s = s;
        for bad in [
            serde_json::json!({"wasmCni": {"logKiB": -1}}),
            serde_json::json!({"wasmCni": {"logKiB": "64"}}),
            serde_json::json!({"wasmCni": {"logKiB": 2_000_000}}),
        ] {
            let e = s.apply_config(&bad).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
            assert_eq!(e.msg, "invalid wasmCni.logKiB");
        }
        assert_eq!(s.limits.log_bytes, Limits::default().log_bytes);
    }
}
