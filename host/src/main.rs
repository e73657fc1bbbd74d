//! wasm-cni: one native binary for every CNI plugin type. Invoked as
//! `<bin dir>/<type>` (a link to this binary) it speaks the CNI protocol and
//! runs `<type>.wasm` in a sandbox; invoked as `wasm-cni` it is the
//! administration tool (install, inspect, exec).

use std::path::Path;

use wasm_cni::runtime::COMPILER_BINARY;

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("wasm-cni")
        .to_string();
    let status = if name == "wasm-cni" || name == COMPILER_BINARY {
        administration(&name)
    } else {
        wasm_cni::dispatch::cni_main(&name)
    };
    std::process::exit(status);
}

#[cfg(feature = "compiler")]
fn administration(_: &str) -> i32 {
    wasm_cni::cli::main()
}

/// The CNI-path build carries no administration commands: they are run by
/// hand, and `install` precompiles, which needs the compiler anyway. They
/// live in `wasm-cni-compile`, installed next to this binary, which this
/// process becomes (same arguments, same stdout and exit status).
#[cfg(not(feature = "compiler"))]
fn administration(name: &str) -> i32 {
    use std::os::unix::process::CommandExt;
    let here = wasm_cni::runtime::resolve::self_dir();
    let Some(compiler) = here.map(|d| d.join(COMPILER_BINARY)) else {
        eprintln!("wasm-cni: cannot locate the running binary to find {COMPILER_BINARY}");
        return 1;
    };
    if name == COMPILER_BINARY {
        // This build under the compiler's name: forwarding would exec itself.
        eprintln!(
            "wasm-cni: {} is the CNI-path build (no compiler); install the compiler build as {COMPILER_BINARY}",
            compiler.display()
        );
        return 1;
    }
    let e = std::process::Command::new(&compiler)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "wasm-cni: the administration commands are in {}, which cannot be run ({e}); `wasm-cni install` puts it next to wasm-cni",
        compiler.display()
    );
    1
}
