//! Finding a module: `<type>.wasm` in the directories of CNI_PATH, then next
//! to the `wasm-cni` binary itself.

use std::path::{Path, PathBuf};

/// Where modules are looked up, in order.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    pub dirs: Vec<PathBuf>,
}

impl SearchPath {
    pub fn new(cni_path: &[PathBuf], self_dir: Option<PathBuf>) -> Self {
        let mut dirs: Vec<PathBuf> = cni_path.to_vec();
        if let Some(d) = self_dir {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        SearchPath { dirs }
    }

    /// The module file for a plugin type, or the list of places searched.
    pub fn find_module(&self, plugin_type: &str) -> Result<PathBuf, String> {
        check_type_name(plugin_type)?;
        let file = format!("{plugin_type}.wasm");
        self.dirs
            .iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("searched {}", self.describe(&file)))
    }

    /// A native plugin binary of that name (for IPAM types without a module).
    pub fn find_binary(&self, plugin_type: &str) -> Result<PathBuf, String> {
        check_type_name(plugin_type)?;
        self.dirs
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("searched {}", self.describe(plugin_type)))
    }

    fn describe(&self, file: &str) -> String {
        if self.dirs.is_empty() {
            return "nowhere: CNI_PATH is empty".into();
        }
        self.dirs
            .iter()
            .map(|d| d.join(file).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A type is a file name, never a path (the runtime rejects '/' too).
pub fn check_type_name(t: &str) -> Result<(), String> {
    if t.is_empty() || t.contains('/') || t == "." || t == ".." || t.contains('\0') {
        return Err(format!(
            "invalid plugin type {t:?}: it must be a plain file name"
        ));
    }
    Ok(())
}

/// The directory of the running binary, symlinks resolved.
pub fn self_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_in_order_and_names_what_it_searched() {
        let base = std::env::temp_dir().join(format!("wcni-resolve-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        std::fs::write(b.join("x.wasm"), b"").expect("x");
        let s = SearchPath::new(&[a.clone(), b.clone()], None);
        assert_eq!(s.find_module("x").expect("found"), b.join("x.wasm"));
        std::fs::write(a.join("x.wasm"), b"").expect("x");
        assert_eq!(s.find_module("x").expect("found"), a.join("x.wasm"));
        let e = s.find_module("y").expect_err("missing");
        assert!(
            e.contains(&a.join("y.wasm").display().to_string())
                && e.contains(&b.join("y.wasm").display().to_string()),
            "{e}"
        );
        assert!(s.find_module("../x").is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
