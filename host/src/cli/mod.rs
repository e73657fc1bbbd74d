//! `wasm-cni <command>`: administration commands.

mod exec;
mod inspect;
mod install;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wasm-cni",
    // also when `wasm-cni` forwarded to wasm-cni-compile (see main.rs)
    bin_name = "wasm-cni",
    version,
    about = "CNI plugins as sandboxed WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Copy wasm-cni and its modules into a CNI bin dir, link every type, precompile.
    Install {
        /// The CNI bin dir (the runtime's plugin directory).
        #[arg(long, default_value = "/opt/cni/bin")]
        bin_dir: PathBuf,
        /// Where the bundled `.wasm` modules are (default: next to this binary).
        #[arg(long)]
        modules_dir: Option<PathBuf>,
        /// Replace an existing file of a type's name (e.g. a reference plugin binary).
        #[arg(long)]
        force: bool,
    },
    /// Show each module's WIT version, kind, capabilities, sha256 and cache state.
    Inspect {
        /// Only this plugin type.
        plugin_type: Option<String>,
        #[arg(long, default_value = "/opt/cni/bin")]
        bin_dir: PathBuf,
    },
    /// Run a conflist against a netns as a runtime does (a built-in cnitool).
    Exec(exec::ExecArgs),
    /// Compile one module into the cache (run by the CNI path on a cache miss).
    #[command(hide = true)]
    Compile { module: PathBuf },
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let r = match cli.command {
        Cmd::Install {
            bin_dir,
            modules_dir,
            force,
        } => install::run(&bin_dir, modules_dir.as_deref(), force),
        Cmd::Inspect {
            plugin_type,
            bin_dir,
        } => inspect::run(&bin_dir, plugin_type.as_deref()),
        Cmd::Exec(args) => exec::run(args),
        Cmd::Compile { module } => Ok(compile(&module)),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wasm-cni: {e:#}");
            1
        }
    }
}

/// Loads (so compiles on a miss) one module; a failure is printed as CNI
/// error JSON for the caller to pass on.
fn compile(module: &std::path::Path) -> i32 {
    // Run by a CNI call on a cache miss, with that call's environment: a
    // bad limit there is that call's to report (or, for DEL, to ignore).
    let (settings, _) = crate::dispatch::Settings::from_lookup(&|k| {
        std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
    });
    let name = module
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("module")
        .to_string();
    let r = crate::dispatch::runtime(&settings, &[], crate::kernel::Kernels::system())
        .and_then(|rt| rt.load_path(&name, module));
    match r {
        Ok(_) => 0,
        Err(e) => {
            println!("{}", e.to_json(""));
            1
        }
    }
}
