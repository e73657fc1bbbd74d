//! Component tests: the real `.wasm` modules in the real host, with the
//! recording fake kernel injected. Unprivileged.

use std::sync::{Arc, Once};

use wasm_cni::kernel::Kernels;

use serde_json::json;
use wasm_cni::dispatch::cni_call;
use wasm_cni::kernel::fake::FakeKernel;
use wasm_cni_tests::*;

/// Per-process cache and log; the modules are found through CNI_PATH.
fn setup() -> std::path::PathBuf {
    static ONCE: Once = Once::new();
    let root = std::env::temp_dir().join(format!("wcni-component-{}", std::process::id()));
    ONCE.call_once(|| {
        let _ = std::fs::create_dir_all(&root);
        // Set before any test reads them, once per process.
        std::env::set_var("WASM_CNI_CACHE_DIR", root.join("cache"));
        std::env::set_var("WASM_CNI_LOG_FILE", root.join("log"));
    });
    root
}

fn kernels(k: &FakeKernel) -> Kernels {
    Kernels {
        netns: Arc::new(k.clone()),
        ..Kernels::fake()
    }
}

fn vars(cmd: &str, netns: &str) -> Vec<(String, String)> {
    [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "comp1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("CNI_PATH".to_string(), modules_dir().display().to_string())])
    .collect()
}

#[test]
fn loopback_add_del_against_the_fake_kernel() {
    setup();
    let k = FakeKernel::new();
    k.add_netns("/run/netns/fake1");
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "loopback"}).to_string();
    let out = cni_call(
        "loopback",
        &vars("ADD", "/run/netns/fake1"),
        conf.as_bytes(),
        kernels(&k),
    );
    assert_eq!(out.status, 0, "{}", out.stdout);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(j["interfaces"][0]["sandbox"], "/run/netns/fake1");
    assert_eq!(j["ips"][0]["address"], "127.0.0.1/8");
    assert_eq!(
        k.calls(),
        vec!["ns=/run/netns/fake1 set-link-up lo true".to_string()]
    );

    let out = cni_call(
        "loopback",
        &vars("DEL", "/run/netns/fake1"),
        conf.as_bytes(),
        kernels(&k),
    );
    assert_eq!(out.status, 0, "{}", out.stdout);
    assert!(out.stdout.is_empty());
    assert_eq!(
        k.calls().last().map(String::as_str),
        Some("ns=/run/netns/fake1 set-link-up lo false")
    );
    assert!(!k.link("/run/netns/fake1", "lo").expect("lo").info.up);
}

#[test]
fn loopback_del_succeeds_when_the_netns_is_gone() {
    setup();
    let k = FakeKernel::new();
    let conf = json!({"cniVersion": "0.4.0", "name": "n", "type": "loopback"}).to_string();
    let out = cni_call(
        "loopback",
        &vars("DEL", "/run/netns/never-existed"),
        conf.as_bytes(),
        kernels(&k),
    );
    assert_eq!(out.status, 0, "{}", out.stdout);
    assert!(k.calls().is_empty());
}

#[test]
fn kernel_timeouts_become_try_again_later() {
    setup();
    let k = FakeKernel::new();
    k.add_netns("/run/netns/slow");
    k.fail_next(wasm_cni::kernel::KernelError::Timeout("set link".into()));
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "loopback"}).to_string();
    let out = cni_call(
        "loopback",
        &vars("ADD", "/run/netns/slow"),
        conf.as_bytes(),
        kernels(&k),
    );
    assert_ne!(out.status, 0);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(j["code"], 11, "{j}");
}

#[test]
fn every_cni_version_renders_from_one_module_result() {
    setup();
    for v in [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
    ] {
        let k = FakeKernel::new();
        k.add_netns("/run/netns/v");
        let conf = json!({"cniVersion": v, "name": "n", "type": "loopback"}).to_string();
        let out = cni_call(
            "loopback",
            &vars("ADD", "/run/netns/v"),
            conf.as_bytes(),
            kernels(&k),
        );
        assert_eq!(out.status, 0, "{v}: {}", out.stdout);
        let j: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        assert_eq!(j["cniVersion"], v);
        if v < "0.3.0" {
            assert_eq!(j["ip4"]["ip"], "127.0.0.1/8", "{v}: {j}");
        } else {
            assert_eq!(j["ips"][0]["address"], "127.0.0.1/8", "{v}: {j}");
        }
    }
}
