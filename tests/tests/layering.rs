//! The crate graph as ARCHITECTURE.md draws it, checked by Cargo's own
//! resolution: kernel access never links the WebAssembly runtime or the
//! host, the capabilities never the host, the protocol neither, and the CNI
//! model shared with modules depends on nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The normal (non-dev) dependencies of `package`, one name per line.
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn kernel_depends_on_neither_wasmtime_nor_the_host() {
    let deps = dependencies("wasm-cni-kernel");
    assert!(deps.iter().any(|d| d == "nix"), "sanity: {deps:?}");
    for forbidden in ["wasmtime", "wasmtime-wasi", "wasm-cni", "cap-std", "tokio"] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "wasm-cni-kernel depends on {forbidden}: {deps:?}"
        );
    }
}

#[test]
fn the_cni_model_depends_on_nothing() {
    let deps = dependencies("cni-model");
    assert_eq!(
        deps,
        ["cni-model"],
        "cni-model builds for wasm32-wasip2 with std alone"
    );
}

#[test]
fn the_protocol_knows_neither_the_runtime_nor_the_kernel() {
    let deps = dependencies("wasm-cni-protocol");
    assert!(deps.iter().any(|d| d == "serde_json"), "sanity: {deps:?}");
    for forbidden in [
        "wasmtime",
        "wasm-cni-kernel",
        "wasm-cni-caps",
        "wasm-cni",
        "nix",
    ] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "wasm-cni-protocol depends on {forbidden}: {deps:?}"
        );
    }
}

/// The capabilities see the kernel and the component model, not the host
/// (runtime, dispatch: IPAM delegation and the GC's keep list are
/// injected) nor WASI, which is the sandbox's.
#[test]
fn the_capabilities_depend_on_the_kernel_not_the_host() {
    let deps = dependencies("wasm-cni-caps");
    for needed in [
        "wasm-cni-kernel",
        "wasm-cni-protocol",
        "cni-model",
        "wasmtime",
    ] {
        assert!(deps.iter().any(|d| d == needed), "{needed}: {deps:?}");
    }
    for forbidden in ["wasm-cni", "wasmtime-wasi", "tokio"] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "wasm-cni-caps depends on {forbidden}: {deps:?}"
        );
    }
}

#[test]
fn the_host_reaches_the_layers_below_only_through_their_crates() {
    let deps = dependencies("wasm-cni");
    for layer in ["wasm-cni-kernel", "wasm-cni-caps", "wasm-cni-protocol"] {
        assert!(deps.iter().any(|d| d == layer), "{layer}: {deps:?}");
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src");
    for moved in ["kernel", "process.rs", "caps", "protocol"] {
        assert!(!src.join(moved).exists(), "host/src/{moved} is back");
    }
}

/// The top-level modules of the crate whose sources are under `src`, each
/// with the top-level modules it names (`crate::x`, or `super::x` from a
/// file directly under `src`). Comments are skipped.
fn module_graph(src: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src").flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    files(src, &mut all);
    let top = |p: &std::path::Path| -> String {
        let rel = p.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let name = first.as_os_str().to_string_lossy();
        name.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = all
        .iter()
        .map(|p| top(p))
        .filter(|m| !["lib", "main", "mod"].contains(&m.as_str()))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &all {
        let from = top(p);
        if !modules.contains(&from) {
            continue;
        }
        let at_top = p.parent() == Some(src);
        let text = std::fs::read_to_string(p).expect("read source");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (prefix, ok) in [("crate::", true), ("super::", at_top)] {
                if !ok {
                    continue;
                }
                for (i, _) in code.match_indices(prefix) {
                    let rest = &code[i + prefix.len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name != from && modules.contains(&name) {
                        graph.entry(from.clone()).or_default().insert(name);
                    }
                }
            }
        }
        graph.entry(from).or_default();
    }
    graph
}

/// A cycle in `graph`, if any, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|m| m == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_use_cycles_between_the_modules_of_a_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in [
        "host/src",
        "crates/caps/src",
        "crates/protocol/src",
        "crates/kernel/src",
        "crates/cni-model/src",
        "guest-sdk/src",
    ] {
        let g = module_graph(&root.join(krate));
        assert!(g.len() > 1 || krate.contains("cni-model"), "{krate}: {g:?}");
        assert_eq!(cycle(&g), None, "{krate}: modules that import each other");
    }
    // The graph is read (a crate whose imports were missed would pass).
    let host = module_graph(&root.join("host/src"));
    assert!(
        host["dispatch"].contains("runtime") && host["cli"].contains("dispatch"),
        "{host:?}"
    );
}

/// The check itself finds a cycle where there is one.
#[test]
fn the_cycle_check_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycle(&g).map(|c| c.len()), Some(4));
}
