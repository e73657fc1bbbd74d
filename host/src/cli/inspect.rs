//! `wasm-cni inspect`: what each module is and asks for.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::dispatch::{self, Settings};
use crate::runtime::{cache, kind_name};

pub fn run(bin_dir: &Path, only: Option<&str>) -> Result<i32> {
    let settings = Settings::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = dispatch::runtime(
        &settings,
        &[bin_dir.to_path_buf()],
        crate::kernel::Kernels::system(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut types: Vec<String> = fs::read_dir(bin_dir)
        .with_context(|| format!("reading {}", bin_dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".wasm"))
                .map(str::to_string)
        })
        .filter(|t| only.is_none_or(|o| o == t))
        .collect();
    types.sort();
    if types.is_empty() {
        anyhow::bail!(
            "no module {} in {}",
            only.map(|t| format!("{t}.wasm"))
                .unwrap_or_else(|| "(*.wasm)".into()),
            bin_dir.display()
        );
    }
    let mut status = 0;
    for t in types {
        let path = bin_dir.join(format!("{t}.wasm"));
        let sha = rt.cache.module_digest(&path)?;
        let entry = rt.cache.path_for(&sha, &rt.engine_key);
        let cache_state = match rt.cache.read(&entry) {
            Ok(_) => "precompiled".to_string(),
            Err(cache::Miss::Absent) => "not precompiled (run wasm-cni install)".to_string(),
            Err(cache::Miss::Corrupt(w)) => format!("corrupt entry ({w}), will be recompiled"),
        };
        println!("{t}");
        println!("  file:         {}", path.display());
        println!("  sha256:       {sha}");
        println!("  cache:        {cache_state}");
        match rt.load(&t) {
            Ok(m) => {
                let ty = m.component.component_type();
                let exports: Vec<String> =
                    ty.exports(&rt.engine).map(|(n, _)| n.to_string()).collect();
                let imports: Vec<String> =
                    ty.imports(&rt.engine).map(|(n, _)| n.to_string()).collect();
                let wit = exports
                    .iter()
                    .find_map(|e| e.strip_prefix("cni:plugin/plugin@"))
                    .unwrap_or("?");
                println!("  wit:          cni:plugin@{wit}");
                println!(
                    "  kind:         {} (module version {})",
                    kind_name(m.meta.kind),
                    m.meta.version
                );
                println!(
                    "  capabilities: {}",
                    imports
                        .iter()
                        .filter(|i| i.starts_with("cni:"))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                println!(
                    "  wasi:         {}",
                    imports.iter().filter(|i| i.starts_with("wasi:")).count()
                );
            }
            Err(e) => {
                println!("  error:        {e}");
                status = 1;
            }
        }
    }
    Ok(status)
}
