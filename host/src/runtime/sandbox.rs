//! A fresh sandbox per invocation: a Store with a memory cap and an epoch
//! deadline, an empty WASI context (plus the state directory for IPAM
//! modules), and only the capability interfaces the module's kind is granted.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::phases::{self, Phase};
use super::Limits;
use crate::caps::bindings::{cni::plugin as wit_ifaces, wit, AnyModulePre};
use crate::caps::{CallContext, CapsView, Deadline, HasCaps};
use crate::protocol::error::{code, CniError};

/// Guest stdout/stderr are captured, never inherited: stdout belongs to the
/// CNI result alone.
const PIPE_CAPACITY: usize = 64 << 10;

/// The most resources (capability handles, WASI streams and files, clock
/// waits) one sandbox holds at once; a plugin needs a handful.
const MAX_RESOURCES: usize = 4096;

/// The data of one Store.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    /// The invocation (while describing a module at install, a context
    /// that is none, with no capability linked).
    call: Arc<CallContext>,
    /// The network's state directory preopened as `/state` (IPAM calls).
    state_dir: Option<crate::caps::state::Directory>,
    /// This sandbox's deadline (its call's): the guest traps at its first
    /// epoch check after it, and no clock wait outlasts it.
    pub deadline: Arc<Deadline>,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl StoreData {
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// What a capability call sees (see `CapsView`).
    fn caps(&mut self) -> CapsView<'_> {
        CapsView {
            call: self.call.clone(),
            table: &mut self.table,
            state_dir: self.state_dir.as_ref(),
        }
    }
}

struct Pipes {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

fn new_store(
    engine: &Engine,
    limits: &Limits,
    call: Arc<CallContext>,
    state_dir: Option<&crate::caps::state::Directory>,
) -> Result<(Store<StoreData>, Pipes), String> {
    let deadline = call.deadline.clone();
    let pipes = Pipes {
        stdout: MemoryOutputPipe::new(PIPE_CAPACITY),
        stderr: MemoryOutputPipe::new(PIPE_CAPACITY),
    };
    let mut b = WasiCtxBuilder::new();
    b.stdout(pipes.stdout.clone())
        .stderr(pipes.stderr.clone())
        .allow_blocking_current_thread(true);
    if let Some(dir) = state_dir {
        // wasmtime-wasi preopens by path (it has no form taking an open
        // directory); the path is the one the host just opened and locked.
        b.preopened_dir(dir.path(), "/state", wasmtime_wasi::FsPerms::ReadWrite)
            .map_err(|e| {
                format!(
                    "cannot open state directory {}: {e:#}",
                    dir.path().display()
                )
            })?;
    }
    let data = StoreData {
        wasi: b.build(),
        table: {
            // Handles, streams, files and clock waits a module holds at
            // once live in host memory, outside its memory cap: wasmtime's
            // default allows a million.
            let mut t = ResourceTable::new();
            t.set_max_capacity(MAX_RESOURCES);
            t
        },
        limits: Limiter {
            memory_bytes: limits.memory_bytes,
        },
        call,
        state_dir: state_dir.cloned(),
        deadline: deadline.clone(),
    };
    let mut store = Store::new(engine, data);
    store.limiter(|d| &mut d.limits);
    store.set_epoch_deadline(1);
    // The epoch is the engine's, shared by every sandbox of the process (a
    // nested IPAM call, the undo of a failed ADD), so a tick only makes
    // this store look at its own deadline: a timer of another sandbox never
    // cuts this one short.
    let until = deadline.clone();
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= until.at() {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    // At its deadline the process's timer bumps the epoch, which makes the
    // guest check at its next epoch point (see `timer`).
    super::timer::watch(&deadline, engine)?;
    Ok((store, pipes))
}

/// A guest's growth past its memory cap, as the trap's error: told apart
/// from other traps by its type.
#[derive(Debug)]
struct MemoryCapExceeded {
    desired: usize,
}

impl std::fmt::Display for MemoryCapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "growing memory to {} bytes is past the cap",
            self.desired
        )
    }
}

impl std::error::Error for MemoryCapExceeded {}

/// A sandbox's resource limits: its memory cap, and a few instances,
/// tables and memories (a Rust component has ~5 instances). Growth past a
/// limit traps rather than failing quietly, so a module cannot go on
/// after a refused allocation.
struct Limiter {
    memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes || maximum.is_some_and(|m| desired > m) {
            return Err(MemoryCapExceeded { desired }.into());
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("growing memory failed"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            wasmtime::bail!("growing a table to {desired} elements is past its maximum");
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("growing a table failed"))
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// `HasData` for interfaces whose host state is the resource table (wasi:io).
struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// The interfaces a component imports, named without their version. Only
/// those are linked: building the whole linker (every WASI interface and
/// capability a kind may have) cost ~150 µs a call, and a module imports a
/// part of it. An import beyond what its kind is granted is still refused
/// by `instantiate_pre`, named, as before.
struct Imports(Vec<String>);

impl Imports {
    fn of(component: &Component, engine: &Engine) -> Imports {
        Imports(
            component
                .component_type()
                .imports(engine)
                .map(|(name, _)| name.split('@').next().unwrap_or(name).to_string())
                .collect(),
        )
    }

    fn has(&self, interface: &str) -> bool {
        self.0.iter().any(|n| n == interface)
    }
}

/// The WASI interfaces a module may import: clocks, random, cli (stdio,
/// exit, environment, terminal queries), filesystem (only an IPAM call's
/// state directory is ever preopened) and io. Not sockets: a module has no
/// network authority, so one that imports them fails to link, with the
/// import named, instead of finding functions that deny everything.
fn add_wasi(l: &mut Linker<StoreData>, imports: &Imports) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

    type Add = fn(&mut Linker<StoreData>) -> wasmtime::Result<()>;
    let interfaces: [(&str, Add); 21] = [
        ("wasi:clocks/wall-clock", |l| {
            clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, StoreData::clocks)
        }),
        ("wasi:clocks/monotonic-clock", super::clocks::add_to_linker),
        ("wasi:random/random", |l| {
            random::random::add_to_linker::<_, WasiRandom>(l, StoreData::random)
        }),
        ("wasi:random/insecure", |l| {
            random::insecure::add_to_linker::<_, WasiRandom>(l, StoreData::random)
        }),
        ("wasi:random/insecure-seed", |l| {
            random::insecure_seed::add_to_linker::<_, WasiRandom>(l, StoreData::random)
        }),
        ("wasi:cli/exit", |l| {
            cli::exit::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/environment", |l| {
            cli::environment::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/stdin", |l| {
            cli::stdin::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/stdout", |l| {
            cli::stdout::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/stderr", |l| {
            cli::stderr::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/terminal-input", |l| {
            cli::terminal_input::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/terminal-output", |l| {
            cli::terminal_output::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/terminal-stdin", |l| {
            cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/terminal-stdout", |l| {
            cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:cli/terminal-stderr", |l| {
            cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, StoreData::cli)
        }),
        ("wasi:filesystem/preopens", |l| {
            filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, StoreData::filesystem)
        }),
        ("wasi:filesystem/types", |l| {
            sync::filesystem::types::add_to_linker::<_, WasiFilesystem>(l, StoreData::filesystem)
        }),
        // `/state`'s refusals, over wasmtime-wasi's filesystem types
        ("wasi:filesystem/types", super::state_fs::add_to_linker),
        ("wasi:io/error", |l| {
            sync::io::error::add_to_linker::<_, HasTable>(l, |d| &mut d.table)
        }),
        ("wasi:io/poll", |l| {
            sync::io::poll::add_to_linker::<_, HasTable>(l, |d| &mut d.table)
        }),
        ("wasi:io/streams", |l| {
            sync::io::streams::add_to_linker::<_, HasTable>(l, |d| &mut d.table)
        }),
    ];
    for (interface, add) in interfaces {
        if imports.has(interface) {
            add(l)?;
        }
    }
    Ok(())
}

fn linker(
    engine: &Engine,
    kind: Option<wit::PluginKind>,
    imports: &Imports,
) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    add_wasi(&mut linker, imports)?;
    let Some(kind) = kind else {
        return Ok(linker);
    };
    type Add = fn(&mut Linker<StoreData>) -> wasmtime::Result<()>;
    let capabilities: [(&str, Add); 8] = [
        ("log", |l| {
            wit_ifaces::log::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
        ("netns", |l| {
            wit_ifaces::netns::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
        ("ipam", |l| {
            wit_ifaces::ipam::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
        ("host-net", |l| {
            wit_ifaces::host_net::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
        ("nat", |l| {
            wit_ifaces::nat::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
        ("resolv", |l| {
            wit_ifaces::resolv::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
        ("state", |l| {
            wit_ifaces::state::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
        ("tc", |l| {
            wit_ifaces::tc::add_to_linker::<_, HasCaps>(l, StoreData::caps)
        }),
    ];
    let granted = super::granted_interfaces(kind);
    for (name, add) in capabilities {
        if granted.contains(&name) && imports.has(&format!("cni:plugin/{name}")) {
            add(&mut linker)?;
        }
    }
    Ok(linker)
}

/// Whether every import of `component` resolves against what a `kind`
/// module is linked with, as `invoke` will link it.
pub fn check_links(
    engine: &Engine,
    component: &Component,
    kind: wit::PluginKind,
) -> Result<(), String> {
    let imports = Imports::of(component, engine);
    let linker = linker(engine, Some(kind), &imports).map_err(|e| format!("{e:#}"))?;
    linker
        .instantiate_pre(component)
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// Text of a failed guest call for an error's details: the trap, then what
/// the guest wrote to stderr (a Rust panic message lands there).
fn trap_details(e: &wasmtime::Error, pipes: &Pipes, limits: &Limits) -> (String, String) {
    let stderr = String::from_utf8_lossy(&pipes.stderr.contents())
        .trim()
        .to_string();
    let msg = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "plugin module exceeded its deadline of {} ms",
            limits.deadline.as_millis()
        ),
        Some(Trap::UnreachableCodeReached) if !stderr.is_empty() => {
            "plugin module panicked".to_string()
        }
        _ if e.downcast_ref::<MemoryCapExceeded>().is_some() => format!(
            "plugin module exceeded its memory limit of {} MiB",
            limits.memory_bytes >> 20
        ),
        _ => "plugin module trapped".to_string(),
    };
    let mut details = format!("{e:#}");
    if !stderr.is_empty() {
        details.push_str("; module stderr: ");
        details.push_str(&stderr);
    }
    (msg, details)
}

fn log_guest_output(pipes: &Pipes, module: &str) {
    for (stream, pipe) in [("stdout", &pipes.stdout), ("stderr", &pipes.stderr)] {
        let bytes = pipe.contents();
        if !bytes.is_empty() {
            tracing::info!(module, stream, output = %String::from_utf8_lossy(&bytes).trim_end(), "module output");
        }
    }
}

thread_local! {
    /// wasmtime-wasi's sync bindings run each WASI call on the ambient tokio
    /// runtime, or else build a global multi-threaded one (a worker thread
    /// per CPU, ~0.5 ms per process). WASI calls here never wait (files are
    /// used with blocking allowed, stdio goes to memory), so a current-thread
    /// runtime entered around guest calls is all they need.
    static TOKIO: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread().build().ok();
}

/// Runs `f` with this thread's current-thread runtime entered.
fn with_runtime<R>(f: impl FnOnce() -> R) -> R {
    TOKIO.with(|rt| match rt {
        Some(rt) => {
            let _guard = rt.enter();
            f()
        }
        None => f(),
    })
}

/// Calls `describe` with no capabilities linked: unknown imports trap.
pub fn describe(
    engine: &Engine,
    component: &Component,
    limits: &Limits,
) -> Result<wit::Descriptor, String> {
    let describing = Arc::new(CallContext::describing(*limits));
    let (mut store, pipes) = new_store(engine, limits, describing, None)?;
    let imports = Imports::of(component, engine);
    let mut linker = linker(engine, None, &imports).map_err(|e| format!("{e:#}"))?;
    linker
        .define_unknown_imports_as_traps(component)
        .map_err(|e| format!("{e:#}"))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("{e:#}"))?;
    let pre = AnyModulePre::new(pre).map_err(|e| format!("{e:#}"))?;
    let bindings = with_runtime(|| pre.instantiate(&mut store))
        .map_err(|e| trap_details(&e, &pipes, limits).1)?;
    with_runtime(|| bindings.cni_plugin_plugin().call_describe(&mut store)).map_err(|e| {
        let (msg, details) = trap_details(&e, &pipes, limits);
        format!("describe() failed: {msg}: {details}")
    })
}

/// One exported call.
pub enum Call {
    Add,
    Del,
    Check,
    Gc(Vec<wit::Attachment>),
    Status,
}

/// Runs one call of a loaded module in a fresh sandbox.
pub fn invoke(
    engine: &Engine,
    loaded: &super::Loaded,
    limits: &Limits,
    call: Arc<CallContext>,
    state_dir: Option<&crate::caps::state::Directory>,
    what: Call,
) -> Result<Option<wit::CniResult>, CniError> {
    let internal = |m: String| {
        CniError::new(code::INTERNAL, "cannot set up the plugin sandbox").with_details(m)
    };
    let t_link = std::time::Instant::now();
    let (mut store, pipes) =
        new_store(engine, limits, call.clone(), state_dir).map_err(internal)?;
    let imports = Imports::of(&loaded.component, engine);
    let linker =
        linker(engine, Some(loaded.meta.kind), &imports).map_err(|e| internal(format!("{e:#}")))?;
    let pre = linker.instantiate_pre(&loaded.component).map_err(|e| {
        CniError::new(
            code::INVALID_NETWORK_CONFIG,
            format!(
                "plugin module {} asks for capabilities its kind is not granted",
                loaded.name
            ),
        )
        .with_details(format!("{e:#}"))
    })?;
    let pre = AnyModulePre::new(pre).map_err(|e| internal(format!("{e:#}")))?;
    phases::record(Phase::Link, t_link);
    let fail = |e: wasmtime::Error| {
        let (msg, details) = trap_details(&e, &pipes, limits);
        CniError::new(code::INTERNAL, msg).with_details(details)
    };
    let outcome = with_runtime(|| {
        let t = std::time::Instant::now();
        let bindings = pre.instantiate(&mut store).map_err(fail)?;
        phases::record(Phase::Instantiate, t);
        let t = std::time::Instant::now();
        let plugin = bindings.cni_plugin_plugin();
        let inv = call.invocation.clone();
        let r = match what {
            Call::Add => plugin.call_add(&mut store, &inv).map_err(fail)?.map(Some),
            Call::Del => plugin
                .call_del(&mut store, &inv)
                .map_err(fail)?
                .map(|_| None),
            Call::Check => plugin
                .call_check(&mut store, &inv)
                .map_err(fail)?
                .map(|_| None),
            Call::Gc(valid) => plugin
                .call_gc(&mut store, &inv, &valid)
                .map_err(fail)?
                .map(|_| None),
            Call::Status => plugin
                .call_status(&mut store, &inv)
                .map_err(fail)?
                .map(|_| None),
        };
        phases::record(Phase::Call, t);
        Ok(r.map_err(|e| CniError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }))
    });
    log_guest_output(&pipes, &loaded.name);
    let outcome = outcome.and_then(|r| r);
    if outcome.is_err() {
        call.rollback();
    }
    outcome
}
