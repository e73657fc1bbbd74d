//! wasm-cni: one native binary for every CNI plugin type. Invoked as
//! `<bin dir>/<type>` (a link to this binary) it speaks the CNI protocol and
//! runs `<type>.wasm` in a sandbox; invoked as `wasm-cni` it is the
//! administration tool (install, inspect, exec).

use std::path::Path;

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("wasm-cni")
        .to_string();
    let status = if name == "wasm-cni" || name == wasm_cni::runtime::COMPILER_BINARY {
        wasm_cni::cli::main()
    } else {
        wasm_cni::dispatch::cni_main(&name)
    };
    std::process::exit(status);
}
