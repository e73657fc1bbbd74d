//! loopback on the real kernel, in throwaway network namespaces. Needs root.

use serde_json::json;
use wasm_cni_tests::*;

fn lo_up(ns: &Netns) -> bool {
    let out = ns.exec("ip -o link show lo");
    // The admin flag list is between '<' and '>'.
    out.split('<')
        .nth(1)
        .and_then(|s| s.split('>').next())
        .is_some_and(|flags| flags.split(',').any(|f| f == "UP"))
}

fn env<'a>(cmd: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "lo-test"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
    ]
}

fn conf(v: &str) -> String {
    json!({"cniVersion": v, "name": "lo-net", "type": "loopback"}).to_string()
}

#[test]
fn add_check_del_for_every_cni_version() {
    let i = Install::new("lo-versions", &[]);
    for v in [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
    ] {
        let ns = Netns::new("lo");
        let path = ns.path();
        assert!(!lo_up(&ns), "a new netns starts with lo down");
        let r = i.plugin("loopback", &env("ADD", &path), &conf(v));
        r.ok();
        assert!(lo_up(&ns), "{v}: lo must be up after ADD");
        let j = r.json();
        assert_eq!(j["cniVersion"], v);
        match v {
            "0.1.0" | "0.2.0" => {
                assert_eq!(j["ip4"]["ip"], "127.0.0.1/8", "{v}: {j}");
                assert_eq!(j["ip6"]["ip"], "::1/128", "{v}: {j}");
                assert!(j.get("interfaces").is_none());
            }
            _ => {
                assert_eq!(j["interfaces"][0]["name"], "lo", "{v}: {j}");
                assert_eq!(j["interfaces"][0]["mac"], "00:00:00:00:00:00", "{v}: {j}");
                assert_eq!(j["interfaces"][0]["sandbox"], path.as_str(), "{v}: {j}");
                assert_eq!(j["ips"][0]["address"], "127.0.0.1/8", "{v}: {j}");
                assert_eq!(j["ips"][0]["interface"], 0, "{v}: {j}");
                assert_eq!(j["ips"][1]["address"], "::1/128", "{v}: {j}");
                let has_version = j["ips"][0].get("version").is_some();
                assert_eq!(
                    has_version,
                    v.starts_with("0."),
                    "{v}: ips[].version only before 1.0.0: {j}"
                );
            }
        }
        if !v.starts_with("0.1") && !v.starts_with("0.2") && !v.starts_with("0.3") {
            i.plugin("loopback", &env("CHECK", &path), &conf(v)).ok();
        }
        i.plugin("loopback", &env("DEL", &path), &conf(v)).ok();
        assert!(!lo_up(&ns), "{v}: lo must be down after DEL");
        i.plugin("loopback", &env("DEL", &path), &conf(v)).ok();
    }
}

#[test]
fn check_fails_when_lo_is_down() {
    let i = Install::new("lo-check", &[]);
    let ns = Netns::new("lochk");
    let path = ns.path();
    i.plugin("loopback", &env("ADD", &path), &conf("1.0.0"))
        .ok();
    ns.exec("ip link set lo down");
    let r = i.plugin("loopback", &env("CHECK", &path), &conf("1.0.0"));
    let e = r.err(999);
    assert!(e["msg"].as_str().unwrap_or("").contains("down"), "{e}");
}

#[test]
fn del_tolerates_a_gone_or_empty_netns() {
    let i = Install::new("lo-gone", &[]);
    let ns = Netns::new("logone");
    let path = ns.path();
    i.plugin("loopback", &env("ADD", &path), &conf("0.4.0"))
        .ok();
    drop(ns);
    i.plugin("loopback", &env("DEL", &path), &conf("0.4.0"))
        .ok();
    i.plugin("loopback", &env("DEL", ""), &conf("0.4.0")).ok();
}

#[test]
fn containerd_loopback_conflist_with_prev_result_passthrough() {
    // containerd always runs {"cniVersion":"0.3.1","name":"cni-loopback","plugins":[{"type":"loopback"}]}.
    let i = Install::new("lo-ctrd", &[]);
    let ns = Netns::new("loctrd");
    let list = i.root.path().join("99-loopback.conflist");
    std::fs::write(
        &list,
        r#"{"cniVersion":"0.3.1","name":"cni-loopback","plugins":[{"type":"loopback"}]}"#,
    )
    .expect("write conflist");
    let cache = i.root.path().join("results");
    let base = [
        "--conflist",
        &list.display().to_string(),
        "--netns",
        &ns.path(),
        "--bin-dir",
        &i.bin_dir().display().to_string(),
        "--cache-dir",
        &cache.display().to_string(),
        "--container-id",
        "ctrd1",
    ]
    .map(String::from);
    let run = |verb: &str| {
        let mut args = vec!["exec".to_string(), verb.to_string()];
        args.extend(base.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        i.wasm_cni(&refs)
    };
    let out = run("add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("result JSON");
    assert_eq!(j["cniVersion"], "0.3.1");
    assert_eq!(j["ips"][0]["version"], "4");
    assert!(lo_up(&ns));
    let out = run("del");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lo_up(&ns));

    // Chained after another plugin, loopback passes prevResult through.
    let ns2 = Netns::new("lochain");
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ns2.path()}], "ips": [{"address": "10.9.0.2/24", "interface": 0}], "dns": {}});
    let c = json!({"cniVersion": "1.0.0", "name": "chain", "type": "loopback", "prevResult": prev})
        .to_string();
    let r = i.plugin("loopback", &env("ADD", &ns2.path()), &c);
    r.ok();
    assert_eq!(
        r.json()["ips"],
        json!([{"address": "10.9.0.2/24", "interface": 0}])
    );
}
