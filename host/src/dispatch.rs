//! The CNI entry point: the runtime exec'd `<bin dir>/<type>`, a link to
//! this binary. Validate the environment and config, run the type's module
//! in a sandbox, render the result for the requested cniVersion.
//! Stdout carries only the result or error JSON.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::caps::bindings::wit;
use crate::caps::{convert, CallContext};
use crate::kernel::Kernels;
use crate::protocol::config::{self, NetConf};
use crate::protocol::env::{self, CniEnv, Command};
use crate::protocol::error::{code, CniError};
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
    pub limits: Limits,
}

impl Settings {
    pub fn from_env() -> Settings {
        let mut limits = Limits::default();
        if let Some(ms) = std::env::var("WASM_CNI_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            limits.deadline = Duration::from_millis(ms);
        }
        if let Some(mib) = std::env::var("WASM_CNI_MEMORY_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            limits.memory_bytes = mib << 20;
        }
        Settings {
            cache_dir: std::env::var_os("WASM_CNI_CACHE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR)),
            log_file: Some(
                std::env::var_os("WASM_CNI_LOG_FILE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(logging::DEFAULT_LOG_FILE)),
            ),
            limits,
        }
    }

    /// Applies `wasmCni: {logFile, timeoutMs, memoryMiB}` from a plugin config.
    pub fn apply_config(&mut self, raw: &serde_json::Value) -> Result<(), CniError> {
        let Some(w) = raw.get("wasmCni") else {
            return Ok(());
        };
        let bad = |k: &str, want: &str| {
            CniError::new(code::INVALID_NETWORK_CONFIG, format!("invalid wasmCni.{k}"))
                .with_details(format!("expected {want}"))
        };
        if let Some(v) = w.get("logFile") {
            self.log_file = Some(PathBuf::from(
                v.as_str().ok_or_else(|| bad("logFile", "a path string"))?,
            ));
        }
        if let Some(v) = w.get("timeoutMs") {
            let ms = v
                .as_u64()
                .filter(|ms| (1..=600_000).contains(ms))
                .ok_or_else(|| bad("timeoutMs", "milliseconds between 1 and 600000"))?;
            self.limits.deadline = Duration::from_millis(ms);
        }
        if let Some(v) = w.get("memoryMiB") {
            let mib = v
                .as_u64()
                .filter(|m| (1..=4096).contains(m))
                .ok_or_else(|| bad("memoryMiB", "MiB between 1 and 4096"))?;
            self.limits.memory_bytes = (mib as usize) << 20;
        }
        Ok(())
    }
}

pub fn runtime(
    settings: &Settings,
    cni_path: &[PathBuf],
    kernels: Kernels,
) -> Result<Runtime, CniError> {
    let t = Instant::now();
    let engine = engine::engine(false).map_err(|e| {
        CniError::internal("cannot create the wasm engine").with_details(format!("{e:#}"))
    })?;
    let engine_key = engine::compatibility_key(&engine);
    let cache = Cache::open(&settings.cache_dir)
        .map_err(|e| CniError::new(code::IO_FAILURE, "unusable module cache").with_details(e))?;
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
    call: CallContext,
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
    let state = if loaded.meta.kind == wit::PluginKind::Ipam {
        let config: serde_json::Value =
            serde_json::from_slice(&call.config_bytes).map_err(|e| {
                CniError::decoding("network configuration is not valid JSON")
                    .with_details(e.to_string())
            })?;
        Some(statedir::open(&config, &call.invocation.network_name)?)
    } else {
        None
    };
    let call = Arc::new(call);
    let out = sandbox::invoke(
        &rt.engine,
        &loaded,
        &rt.limits,
        call.clone(),
        state.as_ref().map(|s| s.path.as_path()),
        what,
    );
    // Background teardown steps end before the result is written; the
    // module's own error, if any, is the one reported.
    let deferred = call.finish_deferred();
    let out = out?;
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
    let mut settings = Settings::from_env();
    let r = (|| -> Result<Option<String>, CniError> {
        let env = env::from_lookup(lookup)?;
        command_name = env.command.as_str().to_string();
        if env.command == Command::Version {
            return version::version_answer(stdin).map(Some);
        }
        let conf = config::parse(stdin, env.command)?;
        cni_version = conf.cni_version.clone();
        settings.apply_config(&conf.raw)?;
        logging::init(settings.log_file.as_deref());
        let rt = Arc::new(runtime(&settings, &env.path, kernels)?);
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
            logging::init(settings.log_file.as_deref());
            tracing::error!(container_id = %cid, command = %command_name, module = %plugin_type, duration_ms = (elapsed_ms * 100.0).round() / 100.0, code = e.code, "{}", e);
            // Failures are also told on stderr, for humans and for runtimes that show it.
            eprintln!("wasm-cni {plugin_type}: {e}");
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
    let prev_result = match &conf.prev_result {
        Some(v) if !v.is_null() => Some(convert::to_wit(result::parse(v, &conf.cni_version)?)),
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
            config::valid_attachments(&conf.raw)?
                .into_iter()
                .map(|(container_id, ifname)| wit::Attachment {
                    container_id,
                    ifname,
                })
                .collect(),
        ),
        Command::Version => return Err(CniError::internal("VERSION reached module dispatch")),
    };
    let call = CallContext {
        runtime: rt.clone(),
        command: env.command,
        invocation,
        config_bytes: stdin.to_vec(),
        env: vars.to_vec(),
        module: plugin_type.to_string(),
        undo: Default::default(),
        deferred: Default::default(),
    };
    let out = run_module(rt, plugin_type, call, what)?;
    match (env.command, out) {
        (Command::Add, Some(r)) => {
            let v = result::render(&convert::from_wit(r), &conf.cni_version)?;
            Ok(Some(v.to_string()))
        }
        (Command::Add, None) => Err(CniError::internal(
            "plugin module returned no result for ADD",
        )),
        _ => Ok(None),
    }
}

/// `main` for the CNI entry: real environment, stdin and kernel.
pub fn cni_main(plugin_type: &str) -> i32 {
    let vars: Vec<(String, String)> = std::env::vars().collect();
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
