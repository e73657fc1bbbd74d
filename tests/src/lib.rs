//! Shared test support: where the built artefacts are, a scratch install of
//! wasm-cni, running a plugin as a runtime does, and throwaway netns.

pub mod campaign;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The host binary under test (built by tests/run.sh, or WASM_CNI_BIN).
pub fn host_bin() -> PathBuf {
    std::env::var_os("WASM_CNI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm-cni-dist/wasm-cni"))
}

/// The built modules, staged under their type names by tests/build.sh.
pub fn modules_dir() -> PathBuf {
    std::env::var_os("WASM_CNI_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm-cni-modules"))
}

/// The hostile test modules.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("target/wasm-cni-fixtures")
}

/// A bundled module, or a fixture of that name.
pub fn module(name: &str) -> PathBuf {
    let p = modules_dir().join(format!("{name}.wasm"));
    let p = if p.is_file() {
        p
    } else {
        fixtures_dir().join(format!("{name}.wasm"))
    };
    assert!(
        p.is_file(),
        "{} is missing: build the modules first (tests/build.sh does)",
        p.display()
    );
    p
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("wcni-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch installation: bin dir with wasm-cni, modules and links, and a
/// private module cache, log file and IPAM data dir.
pub struct Install {
    pub root: TempDir,
}

impl Install {
    /// Installs the bundled modules plus `extra` module files.
    pub fn new(tag: &str, extra: &[&str]) -> Install {
        Install::from_modules(tag, &modules_dir(), extra)
    }

    /// Installs the modules of `modules` (a directory of `<type>.wasm`)
    /// plus `extra` module files.
    pub fn from_modules(tag: &str, modules: &Path, extra: &[&str]) -> Install {
        let root = TempDir::new(tag);
        let i = Install { root };
        std::fs::create_dir_all(i.bin_dir()).expect("bin dir");
        for name in extra {
            std::fs::copy(module(name), i.bin_dir().join(format!("{name}.wasm")))
                .expect("copy fixture");
        }
        let out = i.wasm_cni(&[
            "install",
            "--bin-dir",
            &i.bin_dir().display().to_string(),
            "--modules-dir",
            &modules.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "install failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        i
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.root.path().join("bin")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.path().join("wasm-cni.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("networks")
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("WASM_CNI_CACHE_DIR", self.cache_dir())
            .env("WASM_CNI_LOG_FILE", self.log_file());
    }

    /// Runs `wasm-cni <args>` (the installed copy).
    pub fn wasm_cni(&self, args: &[&str]) -> Output {
        let installed = self.bin_dir().join("wasm-cni");
        let bin = if installed.is_file() {
            installed
        } else {
            host_bin()
        };
        let mut c = Command::new(bin);
        c.args(args);
        self.env(&mut c);
        c.output().expect("run wasm-cni")
    }

    /// Execs `<bin dir>/<type>` as a runtime does: env + config on stdin.
    pub fn plugin(&self, plugin_type: &str, env: &[(&str, &str)], stdin: &str) -> PluginRun {
        run_plugin(
            &self.bin_dir().join(plugin_type),
            &self.bin_dir(),
            env,
            stdin,
            |c| self.env(c),
        )
    }
}

/// The modules `wasm-cni install` bundles.
pub const BUNDLED: &[&str] = &[
    "loopback",
    "host-local",
    "static",
    "bridge",
    "ptp",
    "portmap",
    "bandwidth",
];

/// What a plugin run printed.
#[derive(Debug)]
pub struct PluginRun {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl PluginRun {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}; stderr {:?}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "plugin failed: stdout {}\nstderr {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts a CNI error with `code` and returns its JSON.
    #[track_caller]
    pub fn err(&self, code: u64) -> serde_json::Value {
        assert_ne!(
            self.code, 0,
            "plugin unexpectedly succeeded: {}",
            self.stdout
        );
        let v = self.json();
        assert_eq!(v["code"], code, "unexpected error: {v}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "error without msg: {v}"
        );
        v
    }
}

pub fn run_plugin(
    path: &Path,
    cni_path: &Path,
    env: &[(&str, &str)],
    stdin: &str,
    extra: impl FnOnce(&mut Command),
) -> PluginRun {
    let mut c = Command::new(path);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_PATH", cni_path);
    for (k, v) in env {
        c.env(k, v);
    }
    extra(&mut c);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    if let Some(mut si) = child.stdin.take() {
        let _ = si.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait plugin");
    PluginRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Runs a shell command, panicking with its output on failure.
#[track_caller]
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh_ok(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A throwaway network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    #[track_caller]
    pub fn new(tag: &str) -> Netns {
        require_root();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("wcni-{tag}-{}-{n}", std::process::id());
        sh(&format!("ip netns add {name}"));
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    pub fn exec(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} {cmd}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Privileged tests need root; they fail (never skip) without it.
#[track_caller]
pub fn require_root() {
    static ROOT: OnceLock<bool> = OnceLock::new();
    let root = *ROOT.get_or_init(|| nix_geteuid() == 0);
    assert!(
        root,
        "this test needs root: it creates network namespaces (run tests/run.sh as root)"
    );
}

fn nix_geteuid() -> u32 {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// The reference plugins from Debian's containernetworking-plugins.
pub fn reference_plugin(name: &str) -> PathBuf {
    let p = Path::new("/usr/lib/cni").join(name);
    assert!(
        p.is_file(),
        "{} is missing: install containernetworking-plugins (tests/run.sh does)",
        p.display()
    );
    p
}
