//! `wasm-cni install`: the binary, the modules and one link per type into
//! the bin dir, then precompile every module into the cache. Idempotent: run
//! it again after dropping a new `.wasm` into the bin dir.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::dispatch::{self, Settings};
use crate::runtime::{kind_name, resolve};

/// Copies via a temporary file and rename, so a running runtime never execs
/// a half-written binary.
fn copy_atomic(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    let tmp = dst.with_extension(format!("tmp-{}", std::process::id()));
    fs::copy(src, &tmp)
        .with_context(|| format!("copying {} to {}", src.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, dst).with_context(|| format!("renaming into {}", dst.display()))?;
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

pub fn run(bin_dir: &Path, modules_dir: Option<&Path>, force: bool) -> Result<i32> {
    fs::create_dir_all(bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    let me = std::env::current_exe().context("locating the running binary")?;
    // The CNI-path build is `wasm-cni` next to this binary (which is the
    // compiler build when `wasm-cni` forwarded here); the running binary
    // itself when there is none (a build with the compiler in one binary).
    let runtime = me
        .parent()
        .map(|d| d.join("wasm-cni"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| me.clone());
    let host = bin_dir.join("wasm-cni");
    if !same_file(&runtime, &host) {
        copy_atomic(&runtime, &host, 0o755)?;
    }
    // The compiler build travels with the runtime build when it sits next to it.
    if let Some(compiler) = me
        .parent()
        .map(|d| d.join(crate::runtime::COMPILER_BINARY))
        .filter(|p| p.is_file())
    {
        let dst = bin_dir.join(crate::runtime::COMPILER_BINARY);
        if !same_file(&compiler, &dst) {
            copy_atomic(&compiler, &dst, 0o755)?;
        }
    }
    let modules_dir = match modules_dir {
        Some(d) => d.to_path_buf(),
        None => resolve::self_dir().context("locating the modules next to the binary")?,
    };
    // Bundled modules first, then whatever else is already in the bin dir.
    for entry in
        fs::read_dir(&modules_dir).with_context(|| format!("reading {}", modules_dir.display()))?
    {
        let p = entry?.path();
        if p.extension().and_then(|e| e.to_str()) == Some("wasm") {
            if let Some(name) = p.file_name() {
                let dst = bin_dir.join(name);
                if !same_file(&p, &dst) {
                    copy_atomic(&p, &dst, 0o644)?;
                }
            }
        }
    }
    let mut types: Vec<String> = fs::read_dir(bin_dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".wasm"))
                .map(str::to_string)
        })
        .collect();
    types.sort();
    if types.is_empty() {
        bail!(
            "no .wasm modules found in {} or {}",
            modules_dir.display(),
            bin_dir.display()
        );
    }

    let settings = Settings::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = dispatch::runtime(
        &settings,
        &[bin_dir.to_path_buf()],
        crate::kernel::Kernels::system(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut failed = 0;
    for t in &types {
        if let Err(e) = resolve::check_type_name(t) {
            eprintln!("skipping {t}.wasm: {e}");
            continue;
        }
        let link = bin_dir.join(t);
        let linked = fs::read_link(&link).is_ok_and(|l| l == Path::new("wasm-cni"));
        let taken = !linked && fs::symlink_metadata(&link).is_ok();
        if taken && !force {
            eprintln!("{t}: {} exists and is not a link to wasm-cni; left alone (use --force to replace it)", link.display());
            failed += 1;
            continue;
        }
        // The module first: a type whose module is refused gets no link, and
        // a file it would replace (--force) stays.
        let started = std::time::Instant::now();
        let m = match rt.load(t) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("{t}: {e}");
                failed += 1;
                continue;
            }
        };
        if !linked {
            let tmp = bin_dir.join(format!(".{t}.link-{}", std::process::id()));
            std::os::unix::fs::symlink("wasm-cni", &tmp)?;
            // rename replaces a foreign file atomically (--force)
            fs::rename(&tmp, &link).with_context(|| format!("linking {}", link.display()))?;
        }
        println!(
            "{t}: {} module {} linked, {} ({:.0} ms)",
            kind_name(m.meta.kind),
            m.meta.version,
            if m.compiled {
                "precompiled"
            } else {
                "already precompiled"
            },
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(if failed == 0 { 0 } else { 1 })
}
