//! Loading and running plugin modules.

pub mod cache;
pub mod clocks;
pub mod engine;
pub mod phases;
pub mod resolve;
pub mod sandbox;
pub mod state_fs;
pub mod timer;

use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::caps::bindings::wit::PluginKind;
use crate::kernel::Kernels;
use crate::protocol::error::{code, CniError};
use cache::{Cache, Miss, ModuleMeta};
use resolve::SearchPath;

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "cni:plugin";
pub const WIT_VERSION: &str = "0.1.0";

/// Per-invocation bounds: defined with the capabilities that enforce most
/// of them (see `CallContext`).
pub use crate::caps::Limits;

/// Everything needed to load and run modules in this process.
pub struct Runtime {
    pub engine: Engine,
    pub engine_key: String,
    pub cache: Cache,
    pub search: SearchPath,
    pub limits: Limits,
    pub kernels: Kernels,
}

/// A module ready to instantiate.
pub struct Loaded {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub meta: ModuleMeta,
    pub component: Component,
    /// Whether this load had to compile (a cache miss).
    pub compiled: bool,
}

/// How a module file's bytes start.
pub fn classify(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err("it is a core wasm module, not a component; build it for the wasm32-wasip2 target with the wasm-cni guest SDK".into()),
        _ => Err("it is not a WebAssembly file".into()),
    }
}

/// A plugin kind as the WIT and the CLI name it.
pub fn kind_name(k: PluginKind) -> &'static str {
    match k {
        PluginKind::Ipam => "ipam",
        PluginKind::Interface => "interface",
        PluginKind::Portmap => "portmap",
        PluginKind::Bandwidth => "bandwidth",
    }
}

/// The `cni:plugin` interfaces each kind may import.
pub fn granted_interfaces(kind: PluginKind) -> &'static [&'static str] {
    match kind {
        PluginKind::Ipam => &["types", "log", "resolv", "state"],
        PluginKind::Interface => &["types", "log", "netns", "ipam", "host-net"],
        PluginKind::Portmap => &["types", "log", "nat"],
        PluginKind::Bandwidth => &["types", "log", "tc"],
    }
}

/// Splits `cni:plugin/netns@0.1.0` into ("netns", "0.1.0").
fn cni_interface(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("cni:plugin/")?;
    rest.split_once('@')
}

/// Same semver-compatible range as this host: 0.1.x.
fn wit_version_supported(v: &str) -> bool {
    let mut parts = v.split('.');
    matches!((parts.next(), parts.next()), (Some("0"), Some("1")))
}

/// Static checks on a component's interface before anything runs.
pub fn check_interfaces(component: &Component, engine: &Engine) -> Result<(), String> {
    let ty = component.component_type();
    let mut exports_plugin = false;
    for (name, _) in ty.exports(engine) {
        if let Some(("plugin", v)) = cni_interface(name) {
            if !wit_version_supported(v) {
                return Err(format!("it was built against WIT {WIT_PACKAGE}@{v}, this host speaks {WIT_PACKAGE}@0.1.x; rebuild it with a matching guest SDK"));
            }
            exports_plugin = true;
        }
    }
    if !exports_plugin {
        return Err(format!(
            "it exports no {WIT_PACKAGE}/plugin interface, so it is not a wasm-cni plugin module"
        ));
    }
    for (name, _) in ty.imports(engine) {
        if name.starts_with("wasi:sockets/") {
            return Err(format!(
                "it imports {name}, but plugin modules get no network sockets (the host does all networking through the {WIT_PACKAGE} interfaces); remove the socket use"
            ));
        }
        if name.starts_with("wasi:") {
            continue;
        }
        match cni_interface(name) {
            Some((_, v)) if !wit_version_supported(v) => {
                return Err(format!("it imports {name}, but this host speaks {WIT_PACKAGE}@0.1.x; rebuild it with a matching guest SDK"));
            }
            Some(_) => {}
            _ => {
                return Err(format!(
                    "it imports {name}, which wasm-cni does not provide"
                ))
            }
        }
    }
    Ok(())
}

/// Whether a module can use a state directory at all: it imports the WASI
/// preopens (how `/state` is found) or the `state` capability. A module
/// that imports neither (static IPAM) gets none, so the host creates and
/// locks nothing on its behalf.
pub fn uses_state_dir(component: &Component, engine: &Engine) -> bool {
    component.component_type().imports(engine).any(|(name, _)| {
        name.starts_with("wasi:filesystem/preopens")
            || cni_interface(name).is_some_and(|(iface, _)| iface == "state")
    })
}

/// Imports beyond what `kind` is granted, if any.
pub fn excess_imports(component: &Component, engine: &Engine, kind: PluginKind) -> Vec<String> {
    let granted = granted_interfaces(kind);
    component
        .component_type()
        .imports(engine)
        .filter_map(|(name, _)| cni_interface(name).map(|(iface, _)| (name, iface)))
        .filter(|(_, iface)| !granted.contains(iface))
        .map(|(name, _)| name.to_string())
        .collect()
}

fn module_error(path: &Path, what: String) -> CniError {
    CniError::new(
        code::INVALID_NETWORK_CONFIG,
        format!("cannot load plugin module {}", path.display()),
    )
    .with_details(what)
}

impl Runtime {
    /// Loads a plugin type's module: resolve, then the cache (compiling on a
    /// miss or a corrupt entry).
    pub fn load(&self, plugin_type: &str) -> Result<Loaded, CniError> {
        let path = self.search.find_module(plugin_type).map_err(|searched| {
            CniError::new(code::INVALID_NETWORK_CONFIG, format!("no wasm-cni module for plugin type {plugin_type:?}"))
                .with_details(format!("{searched}; install one with `wasm-cni install` or drop {plugin_type}.wasm into the CNI bin dir"))
        })?;
        self.load_path(plugin_type, &path)
    }

    pub fn load_path(&self, name: &str, path: &Path) -> Result<Loaded, CniError> {
        let sha256 = self
            .cache
            .module_digest(path)
            .map_err(|e| module_error(path, e.to_string()))?;
        let entry_path = self.cache.path_for(&sha256, &self.engine_key);
        let cached = match self.cache.read(&entry_path) {
            Ok(entry) => {
                // SAFETY: the entry comes from our root-owned 0700 cache, was
                // written by this engine configuration (the file name carries
                // its compatibility key) and is unchanged since it was written
                // or passed its checksum.
                match unsafe { Component::deserialize_file(&self.engine, &entry.code_path) } {
                    Ok(component) => Some((entry.meta, component)),
                    Err(e) => {
                        tracing::warn!(module = name, error = %e, "cached module rejected by the engine; recompiling");
                        None
                    }
                }
            }
            Err(Miss::Absent) => None,
            Err(Miss::Corrupt(why)) => {
                tracing::warn!(module = name, entry = %entry_path.display(), why, "corrupt cache entry; recompiling");
                None
            }
        };
        let (meta, component, compiled) = match cached {
            Some((meta, component)) => (meta, component, false),
            None => {
                self.compile_into_cache(path, &entry_path)?;
                let entry = self.cache.read(&entry_path).map_err(|m| {
                    CniError::new(
                        code::IO_FAILURE,
                        format!(
                            "module {} was compiled but its cache entry is unusable",
                            path.display()
                        ),
                    )
                    .with_details(format!("{m:?}"))
                })?;
                // SAFETY: as above; the entry was written just now by a
                // compiler with this engine configuration.
                let component =
                    unsafe { Component::deserialize_file(&self.engine, &entry.code_path) }
                        .map_err(|e| module_error(path, format!("{e:#}")))?;
                (entry.meta, component, true)
            }
        };
        Ok(Loaded {
            name: name.to_string(),
            path: path.to_path_buf(),
            sha256,
            meta,
            component,
            compiled,
        })
    }
}

impl Runtime {
    /// Compiles a module into the cache, in-process when this build has the
    /// compiler.
    #[cfg(feature = "compiler")]
    fn compile_into_cache(&self, path: &Path, entry_path: &Path) -> Result<(), CniError> {
        let bytes = std::fs::read(path).map_err(|e| module_error(path, e.to_string()))?;
        classify(&bytes).map_err(|e| module_error(path, e))?;
        let (meta, code) = compile(&bytes, path, &self.limits)?;
        self.cache.write(entry_path, &meta, &code).map_err(|e| {
            CniError::new(code::IO_FAILURE, "cannot store the compiled module").with_details(e)
        })
    }

    /// The CNI-path build has no compiler: run `wasm-cni-compile` (installed
    /// next to this binary) once, which fills the cache.
    #[cfg(not(feature = "compiler"))]
    fn compile_into_cache(&self, path: &Path, _entry_path: &Path) -> Result<(), CniError> {
        let compiler = resolve::self_dir()
            .map(|d| d.join(COMPILER_BINARY))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                CniError::new(
                    code::IO_FAILURE,
                    format!(
                        "module {} is not precompiled and {COMPILER_BINARY} is not installed",
                        path.display()
                    ),
                )
                .with_details("run `wasm-cni install` to precompile the modules")
            })?;
        let mut cmd = std::process::Command::new(&compiler);
        cmd.arg("compile")
            .arg(path)
            .env("WASM_CNI_CACHE_DIR", self.cache.dir());
        // Compiling a module takes well under a second; the bound only guards a hang.
        let out = crate::process::run_bounded(cmd, b"", std::time::Duration::from_secs(120))
            .map_err(|e| {
                CniError::new(
                    code::IO_FAILURE,
                    format!("running {} failed", compiler.display()),
                )
                .with_details(format!("{e:?}"))
            })?;
        if out.status.success() {
            return Ok(());
        }
        // The compiler reports the module's problem as a CNI error JSON.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let code = v
            .get("code")
            .and_then(|c| c.as_u64())
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(code::INTERNAL);
        let msg = v
            .get("msg")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("compiling {} failed", path.display()));
        let details = v
            .get("details")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned());
        Err(CniError::new(code, msg).with_details(details))
    }
}

/// The compiler build of wasm-cni, installed next to the runtime build.
pub const COMPILER_BINARY: &str = "wasm-cni-compile";

/// Compiles a module and learns its kind: static interface checks, then a
/// describe() call in a sandbox with no capabilities, then the grant check.
#[cfg(feature = "compiler")]
pub fn compile(
    bytes: &[u8],
    path: &Path,
    limits: &Limits,
) -> Result<(ModuleMeta, Vec<u8>), CniError> {
    let engine = engine::engine(true).map_err(|e| {
        CniError::new(code::INTERNAL, "cannot create the wasm compiler")
            .with_details(format!("{e:#}"))
    })?;
    let code = engine
        .precompile_component(bytes)
        .map_err(|e| module_error(path, format!("compilation failed: {e:#}")))?;
    // SAFETY: produced just above by this engine.
    let component = unsafe { Component::deserialize(&engine, &code) }
        .map_err(|e| module_error(path, format!("{e:#}")))?;
    check_interfaces(&component, &engine).map_err(|e| module_error(path, e))?;
    let desc = sandbox::describe(&engine, &component, limits).map_err(|e| module_error(path, e))?;
    let excess = excess_imports(&component, &engine, desc.kind);
    if !excess.is_empty() {
        let kind = kind_name(desc.kind);
        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        return Err(module_error(
            path,
            format!(
                "it declares itself {article} {kind} module but imports {}, which {kind} modules are not granted",
                excess.join(", "),
            ),
        ));
    }
    // What load would find at the first call: an import this host lacks (a
    // function of a newer WIT minor, say) is refused here, at install.
    sandbox::check_links(&engine, &component, desc.kind).map_err(|e| {
        module_error(
            path,
            format!("it imports what this host does not provide: {e}; this host implements {WIT_PACKAGE}@{WIT_VERSION}: upgrade wasm-cni, or build the module against {WIT_VERSION}"),
        )
    })?;
    Ok((
        ModuleMeta {
            kind: desc.kind,
            version: desc.version,
        },
        code,
    ))
}
