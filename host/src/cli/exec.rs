//! `wasm-cni exec`: a built-in cnitool. Runs a conflist as a runtime does:
//! capability args filtered by what each plugin declares, prevResult chained
//! on ADD, DEL in reverse order, and a result cache for CHECK and DEL.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use crate::delegate_exec;
use crate::protocol::env::Command;

#[derive(Clone, Copy, ValueEnum)]
pub enum Verb {
    Add,
    Check,
    Del,
    Gc,
    Status,
}

#[derive(Args)]
pub struct ExecArgs {
    verb: Verb,
    /// The network configuration list (.conflist, or a single-plugin .conf).
    #[arg(long)]
    conflist: PathBuf,
    /// The container's netns path (not needed for GC and STATUS).
    #[arg(long, default_value = "")]
    netns: String,
    #[arg(long, default_value = "wasm-cni-exec")]
    container_id: String,
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Capability arguments as JSON, e.g. '{"portMappings":[...]}'.
    #[arg(long, default_value = "{}")]
    capability_args: String,
    /// CNI_ARGS, e.g. 'IgnoreUnknown=1;K8S_POD_NAME=x'.
    #[arg(long, default_value = "")]
    args: String,
    #[arg(long, default_value = "/opt/cni/bin")]
    bin_dir: PathBuf,
    /// Where ADD results are cached for CHECK and DEL.
    #[arg(long, default_value = "/var/lib/wasm-cni/results")]
    cache_dir: PathBuf,
    /// Seconds allowed per plugin call.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn load_list(path: &Path) -> Result<Value> {
    let v: Value = serde_json::from_slice(
        &fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    if v.get("plugins").is_some() {
        return Ok(v);
    }
    // A single-plugin .conf becomes a one-element list, as libcni does.
    let mut plugin = v
        .as_object()
        .cloned()
        .ok_or_else(|| anyhow!("{} is not a JSON object", path.display()))?;
    let version = plugin.remove("cniVersion").unwrap_or(json!("0.1.0"));
    let name = plugin.remove("name").unwrap_or(Value::Null);
    Ok(json!({"cniVersion": version, "name": name, "plugins": [plugin]}))
}

/// The request config for one plugin of the list.
fn plugin_config(
    list: &Value,
    plugin: &Value,
    caps: &Map<String, Value>,
    prev: Option<&Value>,
) -> Result<Value> {
    let mut c = plugin
        .as_object()
        .cloned()
        .ok_or_else(|| anyhow!("a plugin entry is not an object"))?;
    c.insert("cniVersion".into(), list["cniVersion"].clone());
    c.insert("name".into(), list["name"].clone());
    let declared = plugin.get("capabilities").and_then(|v| v.as_object());
    let rc: Map<String, Value> = caps
        .iter()
        .filter(|(k, _)| {
            declared
                .and_then(|d| d.get(*k))
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rc.is_empty() {
        c.insert("runtimeConfig".into(), Value::Object(rc));
    }
    if let Some(p) = prev {
        c.insert("prevResult".into(), p.clone());
    }
    Ok(Value::Object(c))
}

pub fn run(a: ExecArgs) -> Result<i32> {
    let list = load_list(&a.conflist)?;
    let net = list["name"]
        .as_str()
        .ok_or_else(|| anyhow!("the conflist has no name"))?
        .to_string();
    let plugins = list["plugins"]
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow!("plugins must be a list"))?;
    let caps: Map<String, Value> = serde_json::from_str(&a.capability_args)
        .context("--capability-args must be a JSON object")?;
    let cache_file = a
        .cache_dir
        .join(format!("{net}-{}-{}", a.container_id, a.ifname));
    let cached: Option<Value> = fs::read(&cache_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // As libcni does: this process's environment (PATH for the plugins'
    // tools) plus the CNI variables.
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("CNI_"))
        .collect();
    env.extend([
        ("CNI_CONTAINERID".to_string(), a.container_id.clone()),
        ("CNI_NETNS".to_string(), a.netns.clone()),
        ("CNI_IFNAME".to_string(), a.ifname.clone()),
        ("CNI_ARGS".to_string(), a.args.clone()),
        ("CNI_PATH".to_string(), a.bin_dir.display().to_string()),
    ]);
    let timeout = Duration::from_secs(a.timeout);
    let call = |cmd: Command,
                plugin: &Value,
                prev: Option<&Value>,
                extra: Option<(&str, Value)>|
     -> Result<Vec<u8>> {
        let t = plugin["type"]
            .as_str()
            .ok_or_else(|| anyhow!("a plugin has no type"))?;
        // On CHECK and DEL the runtime replays the capability args of ADD.
        let caps = match (
            cmd,
            cached
                .as_ref()
                .and_then(|c| c.get("capabilityArgs"))
                .and_then(|c| c.as_object()),
        ) {
            (Command::Check | Command::Del, Some(c)) if caps.is_empty() => c.clone(),
            _ => caps.clone(),
        };
        let mut conf = plugin_config(&list, plugin, &caps, prev)?;
        if let (Some((k, v)), Some(o)) = (extra, conf.as_object_mut()) {
            o.insert(k.to_string(), v);
        }
        let stdin = serde_json::to_vec(&conf)?;
        delegate_exec::exec(&a.bin_dir.join(t), &env, cmd, &stdin, timeout)
            .map_err(|e| anyhow!("{t}: {e}"))
    };
    match a.verb {
        Verb::Add => {
            let mut prev: Option<Value> = None;
            for p in &plugins {
                let out = call(Command::Add, p, prev.as_ref(), None)?;
                prev = Some(
                    serde_json::from_slice(&out)
                        .with_context(|| format!("{} printed an invalid result", p["type"]))?,
                );
            }
            let result = prev.unwrap_or(Value::Null);
            fs::create_dir_all(&a.cache_dir)?;
            fs::write(
                &cache_file,
                serde_json::to_vec(&json!({"result": result, "capabilityArgs": caps}))?,
            )?;
            println!("{}", serde_json::to_string_pretty(&result)?);
        }
        Verb::Check => {
            let prev = cached
                .as_ref()
                .map(|c| c["result"].clone())
                .ok_or_else(|| anyhow!("no cached ADD result in {}", cache_file.display()))?;
            if list
                .get("disableCheck")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
            {
                return Ok(0);
            }
            for p in &plugins {
                call(Command::Check, p, Some(&prev), None)?;
            }
        }
        Verb::Del => {
            let prev = cached.as_ref().map(|c| c["result"].clone());
            let mut errors = Vec::new();
            for p in plugins.iter().rev() {
                if let Err(e) = call(Command::Del, p, prev.as_ref(), None) {
                    errors.push(e.to_string());
                }
            }
            if !errors.is_empty() {
                bail!("DEL failed: {}", errors.join("; "));
            }
            let _ = fs::remove_file(&cache_file);
        }
        Verb::Gc => {
            // Valid attachments: every cached result of this network.
            let prefix = format!("{net}-");
            let mut valid = Vec::new();
            for e in fs::read_dir(&a.cache_dir).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = n.strip_prefix(&prefix) {
                    if let Some((cid, ifname)) = rest.rsplit_once('-') {
                        valid.push(json!({"containerID": cid, "ifname": ifname}));
                    }
                }
            }
            for p in &plugins {
                call(
                    Command::Gc,
                    p,
                    None,
                    Some(("cni.dev/valid-attachments", Value::Array(valid.clone()))),
                )?;
            }
        }
        Verb::Status => {
            for p in &plugins {
                call(Command::Status, p, None, None)?;
            }
        }
    }
    Ok(0)
}
