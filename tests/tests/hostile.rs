//! Hostile and broken modules: each must end in a CNI error JSON with a
//! useful message, within bounds, and leave nothing behind.

use std::time::{Duration, Instant};

use serde_json::json;
use wasm_cni_tests::*;

fn link(i: &Install, t: &str) {
    let _ = std::os::unix::fs::symlink("wasm-cni", i.bin_dir().join(t));
}

fn add_env(netns: &str) -> Vec<(&str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "hostile1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
    ]
}

fn hostile_conf(mode: &str, extra: serde_json::Value) -> String {
    let mut c =
        json!({"cniVersion": "1.0.0", "name": "hostile-net", "type": "hostile", "hostile": mode});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    c.to_string()
}

fn with_hostile(tag: &str) -> Install {
    let i = Install::new(tag, &[]);
    std::fs::copy(module("hostile"), i.bin_dir().join("hostile.wasm")).expect("copy");
    link(&i, "hostile");
    i
}

#[test]
fn endless_loop_is_stopped_by_the_deadline() {
    let i = with_hostile("loop");
    let t = Instant::now();
    let r = i.plugin(
        "hostile",
        &add_env("/var/run/netns/x"),
        &hostile_conf("loop", json!({"wasmCni": {"timeoutMs": 300}})),
    );
    let e = r.err(999);
    assert!(e["msg"].as_str().unwrap_or("").contains("deadline"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn memory_bomb_is_stopped_by_the_cap() {
    let i = with_hostile("oom");
    let r = i.plugin(
        "hostile",
        &add_env("/var/run/netns/x"),
        &hostile_conf("oom", json!({"wasmCni": {"memoryMiB": 16}})),
    );
    let e = r.err(999);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("memory limit"),
        "{e}"
    );
}

#[test]
fn a_panic_message_reaches_the_error_details() {
    let i = with_hostile("panic");
    let e = i
        .plugin(
            "hostile",
            &add_env("/var/run/netns/x"),
            &hostile_conf("panic", json!({})),
        )
        .err(999);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("panicked on purpose"),
        "{e}"
    );
}

#[test]
fn module_stdout_never_reaches_the_runtime() {
    let i = with_hostile("stdout");
    let r = i.plugin(
        "hostile",
        &add_env("/var/run/netns/x"),
        &hostile_conf("stdout", json!({})),
    );
    r.err(999);
    assert!(
        !r.stdout.contains("hijacked"),
        "guest stdout leaked: {}",
        r.stdout
    );
    let log = std::fs::read_to_string(i.log_file()).expect("log");
    assert!(
        log.contains("hijacked"),
        "guest stdout should be logged: {log}"
    );
}

/// Installs test module `lib` as plugin type `ty`: its ADD must end in a
/// code 7 error before the module runs, and `wasm-cni install` must refuse
/// it. Returns the error's details and install's stderr, which must say why.
fn refused_at_load(lib: &str, ty: &str) -> (String, String) {
    let i = Install::new(ty, &[]);
    std::fs::copy(module(lib), i.bin_dir().join(format!("{ty}.wasm"))).expect("copy");
    link(&i, ty);
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": ty}).to_string();
    let e = i.plugin(ty, &add_env("/var/run/netns/x"), &conf).err(7);
    let bin = i.bin_dir().display().to_string();
    let out = i.wasm_cni(&["install", "--bin-dir", &bin, "--modules-dir", &bin]);
    assert!(!out.status.success(), "install must refuse {ty}");
    (
        e["details"].as_str().unwrap_or("").to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_capability_outside_the_modules_kind_is_refused_at_load() {
    let (details, install) = refused_at_load("overreach", "overreach");
    assert!(
        details.contains("cni:plugin/netns") && details.contains("ipam"),
        "{details}"
    );
    assert!(install.contains("not granted"), "{install}");
}

#[test]
fn a_module_that_opens_sockets_is_refused_at_load() {
    let (details, install) = refused_at_load("net_escape", "net-escape");
    // Refused before it ran: not the module's own "connect failed" error.
    assert!(
        details.contains("wasi:sockets/") && details.contains("no network sockets"),
        "{details}"
    );
    assert!(install.contains("no network sockets"), "{install}");
}

#[test]
fn a_core_module_and_garbage_are_refused() {
    let i = Install::new("core", &[]);
    // The smallest valid core module: magic and version 1.
    std::fs::write(i.bin_dir().join("core.wasm"), b"\0asm\x01\0\0\0").expect("core");
    std::fs::write(i.bin_dir().join("junk.wasm"), b"#!/bin/sh\necho hi\n").expect("junk");
    link(&i, "core");
    link(&i, "junk");
    let e = i
        .plugin(
            "core",
            &add_env("/var/run/netns/x"),
            r#"{"cniVersion":"1.0.0","name":"n","type":"core"}"#,
        )
        .err(7);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("core wasm module"),
        "{e}"
    );
    let e = i
        .plugin(
            "junk",
            &add_env("/var/run/netns/x"),
            r#"{"cniVersion":"1.0.0","name":"n","type":"junk"}"#,
        )
        .err(7);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("not a WebAssembly file"),
        "{e}"
    );
}

#[test]
fn an_unknown_wit_major_version_is_refused() {
    let i = Install::new("witv2", &[]);
    std::fs::copy(module("wit_v2"), i.bin_dir().join("v2.wasm")).expect("copy");
    link(&i, "v2");
    let e = i
        .plugin(
            "v2",
            &add_env("/var/run/netns/x"),
            r#"{"cniVersion":"1.0.0","name":"n","type":"v2"}"#,
        )
        .err(7);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("cni:plugin@2.0.0"),
        "{e}"
    );
}

/// A module built against a later 0.1.x WIT that calls a function this
/// host lacks: its version and interfaces pass, only the function is
/// missing. Install refuses it, naming the function, and links no type to
/// it, nor replaces a file of that name with --force; an ADD says the same.
#[test]
fn a_module_needing_a_newer_host_is_refused_at_install_with_no_link() {
    let (details, install) = refused_at_load("wit_newer_minor", "newer");
    for text in [&details, &install] {
        assert!(
            text.contains("does not provide") && text.contains("flush"),
            "{text}"
        );
    }

    let i = Install::new("newer-nolink", &[]);
    let bin = i.bin_dir();
    std::fs::copy(module("wit_newer_minor"), bin.join("newer.wasm")).expect("copy");
    std::fs::write(bin.join("kept"), "a foreign plugin").expect("write");
    std::fs::copy(module("wit_newer_minor"), bin.join("kept.wasm")).expect("copy");
    std::fs::remove_file(bin.join("loopback")).expect("unlink loopback");
    let dir = bin.display().to_string();
    let out = i.wasm_cni(&[
        "install",
        "--force",
        "--bin-dir",
        &dir,
        "--modules-dir",
        &dir,
    ]);
    assert!(!out.status.success());
    assert!(
        std::fs::symlink_metadata(bin.join("newer")).is_err(),
        "a refused module got a link"
    );
    assert_eq!(
        std::fs::read_to_string(bin.join("kept")).expect("kept"),
        "a foreign plugin"
    );
    // the modules beside them that load are linked (again)
    assert_eq!(
        std::fs::read_link(bin.join("loopback")).expect("loopback link"),
        std::path::Path::new("wasm-cni")
    );
}

#[test]
fn a_corrupted_cache_entry_is_recompiled() {
    let i = Install::new("corrupt", &[]);
    let entries: Vec<_> = std::fs::read_dir(i.cache_dir())
        .expect("cache")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!entries.is_empty(), "install must precompile");
    for p in &entries {
        let mut b = std::fs::read(p).expect("read");
        let n = b.len();
        b[n / 2] ^= 0x5a;
        b[n - 1] ^= 0x5a;
        std::fs::write(p, b).expect("corrupt");
    }
    let r = i.plugin(
        "loopback",
        &[("CNI_COMMAND", "STATUS")],
        r#"{"cniVersion":"1.1.0","name":"n","type":"loopback"}"#,
    );
    r.ok();
    let inspect = i.wasm_cni(&[
        "inspect",
        "loopback",
        "--bin-dir",
        &i.bin_dir().display().to_string(),
    ]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("cache:        precompiled"),
        "the entry must have been rewritten: {text}"
    );
}

#[test]
fn a_cache_dir_others_can_write_is_refused() {
    let i = Install::new("cacheperm", &[]);
    std::fs::set_permissions(
        i.cache_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let e = i
        .plugin(
            "loopback",
            &[("CNI_COMMAND", "STATUS")],
            r#"{"cniVersion":"1.1.0","name":"n","type":"loopback"}"#,
        )
        .err(5);
    assert!(
        e["details"].as_str().unwrap_or("").contains("chmod 700"),
        "{e}"
    );
}

#[test]
fn a_cwasm_in_the_bin_dir_is_never_loaded() {
    let i = Install::new("cwasm", &[]);
    std::fs::write(i.bin_dir().join("evil.cwasm"), b"\x7fELF not really").expect("cwasm");
    link(&i, "evil");
    let e = i
        .plugin(
            "evil",
            &add_env("/var/run/netns/x"),
            r#"{"cniVersion":"1.0.0","name":"n","type":"evil"}"#,
        )
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("no wasm-cni module"),
        "{e}"
    );
}

#[test]
fn a_failed_add_undoes_what_the_module_did() {
    let i = with_hostile("undo");
    let ns = Netns::new("undo");
    let e = i
        .plugin(
            "hostile",
            &add_env(&ns.path()),
            &hostile_conf("lo-then-fail", json!({})),
        )
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("after touching lo"),
        "{e}"
    );
    let flags = ns.exec("ip -o link show lo");
    assert!(
        !flags.contains(",UP") && !flags.contains("<UP"),
        "lo must be back down: {flags}"
    );
}

/// A module that sleeps (a WASI monotonic-clock wait) neither aborts the
/// host nor outlasts its deadline: a short sleep works, a long one ends in
/// a deadline error within about the deadline, and what the module did
/// before is undone.
#[test]
fn a_sleeping_module_is_bounded_by_its_deadline() {
    let i = with_hostile("sleep");
    let ns = Netns::new("sleep");
    let e = i
        .plugin(
            "hostile",
            &add_env(&ns.path()),
            &hostile_conf("sleep-short", json!({})),
        )
        .err(100);
    assert!(e["msg"].as_str().unwrap_or("").contains("slept"), "{e}");
    let t = Instant::now();
    let r = i.plugin(
        "hostile",
        &add_env(&ns.path()),
        &hostile_conf("sleep-long", json!({"wasmCni": {"timeoutMs": 500}})),
    );
    let e = r.err(999);
    assert!(e["msg"].as_str().unwrap_or("").contains("deadline"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let flags = ns.exec("ip -o link show lo");
    assert!(
        !flags.contains(",UP") && !flags.contains("<UP"),
        "lo must be back down: {flags}"
    );
}

/// A module called for one attachment (net1) cannot change the pod's other
/// interface (eth0): the container side of a call is CNI_IFNAME and lo.
#[test]
fn a_module_cannot_touch_another_attachments_interface() {
    let i = with_hostile("other-iface");
    let ns = Netns::new("otheriface");
    ns.exec("ip link add eth0 type veth peer name peer0");
    ns.exec("ip link set eth0 up");
    let path = ns.path();
    let mut env = add_env(&path);
    env.retain(|(k, _)| *k != "CNI_IFNAME");
    env.push(("CNI_IFNAME", "net1"));
    let e = i
        .plugin("hostile", &env, &hostile_conf("other-iface", json!({})))
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or("")
            .contains("not this attachment's"),
        "{e}"
    );
    let flags = ns.exec("ip -o link show eth0");
    assert!(flags.contains("UP"), "eth0 must stay up: {flags}");
}

/// A result reaches the runtime (and the next plugin, which acts on it)
/// only if it claims what the call did: no other netns, no address this
/// call's IPAM did not issue, no control characters.
#[test]
fn a_module_cannot_claim_what_its_call_did_not_do() {
    let i = with_hostile("claims");
    let ns = Netns::new("claims");
    for (mode, says) in [
        ("claim-netns", "sandbox"),
        ("claim-ip", "10.99.0.7"),
        ("claim-dns", "control character"),
    ] {
        let r = i.plugin(
            "hostile",
            &add_env(&ns.path()),
            &hostile_conf(mode, json!({})),
        );
        let e = r.err(999);
        assert!(
            e["msg"].as_str().unwrap_or("").contains(says),
            "{mode}: {e}"
        );
        // an error, and only that: no result reached the runtime
        assert!(
            e.get("interfaces").is_none() && e.get("dns").is_none(),
            "{e}"
        );
    }
}

/// `/state` holds regular files only (#22 item 3): a module's symlink (one
/// pointing out of the directory), hard link or subdirectory is refused at
/// the call, with the module told `not permitted`, so nothing is planted
/// for the next call or for the reference host-local sharing the
/// directory; and a call adding more files than its quota (settable as
/// `wasmCni.stateFiles`) fails with what it wrote removed.
#[test]
fn state_takes_regular_files_only_and_at_most_the_quota() {
    let i = Install::new("state-abuse", &[]);
    std::fs::copy(module("state_abuse"), i.bin_dir().join("state-abuse.wasm")).expect("copy");
    link(&i, "state-abuse");
    let data = i.data_dir();
    let dir = data.join("sa-net");
    let conf = |abuse: &str, extra: serde_json::Value| {
        let mut c = json!({"cniVersion": "1.0.0", "name": "sa-net", "type": "state-abuse",
            "abuse": abuse, "ipam": {"type": "state-abuse", "dataDir": data}});
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        c.to_string()
    };
    let entries = || {
        let mut v: Vec<(String, bool)> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let regular = e.file_type().map(|t| t.is_file()).unwrap_or(false);
                        (e.file_name().to_string_lossy().into_owned(), regular)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for (abuse, what) in [
        ("symlink", "symlink"),
        ("hardlink", "hard link"),
        ("mkdir", "mkdir"),
    ] {
        let e = i
            .plugin(
                "state-abuse",
                &add_env("/var/run/netns/x"),
                &conf(abuse, json!({})),
            )
            .err(999);
        let msg = e["msg"].as_str().unwrap_or("");
        assert!(
            msg.starts_with(&format!("{what}: ")) && msg.contains("not permitted"),
            "{abuse}: {e}"
        );
        // the legitimate file it wrote first stays; nothing else exists
        assert_eq!(
            entries(),
            vec![("10.0.0.9".to_string(), true), ("lock".to_string(), true)],
            "{abuse}"
        );
    }
    assert!(!data.join("escaped").exists() && !data.parent().unwrap().join("escaped").exists());
    std::fs::remove_file(dir.join("10.0.0.9")).unwrap();

    let e = i
        .plugin(
            "state-abuse",
            &add_env("/var/run/netns/x"),
            &conf("files", json!({"files": 9, "wasmCni": {"stateFiles": 5}})),
        )
        .err(7);
    assert!(
        e["msg"].as_str().unwrap_or("").contains("wrote 10 files"),
        "{e}"
    );
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("at most 5 new files"),
        "{e}"
    );
    assert_eq!(entries(), vec![("lock".to_string(), true)]);
    // within the quota the same call succeeds
    i.plugin(
        "state-abuse",
        &add_env("/var/run/netns/x"),
        &conf("files", json!({"files": 4, "wasmCni": {"stateFiles": 5}})),
    )
    .ok();
    assert_eq!(entries().len(), 6);
}
