//! Black-box protocol tests of the binary: environment and stdin in, JSON on
//! stdout, exit status. Unprivileged.

use wasm_cni_tests::*;

fn env<'a>(cmd: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
    ]
}

const LO_CONF: &str = r#"{"cniVersion":"1.0.0","name":"lo-net","type":"loopback"}"#;

#[test]
fn version_answers_with_input_version_and_supported_list() {
    let i = Install::new("version", &[]);
    for v in ["0.1.0", "0.3.1", "1.1.0"] {
        let r = i.plugin(
            "loopback",
            &[("CNI_COMMAND", "VERSION")],
            &format!(r#"{{"cniVersion":"{v}"}}"#),
        );
        r.ok();
        let j = r.json();
        assert_eq!(j["cniVersion"], v);
        assert_eq!(
            j["supportedVersions"],
            serde_json::json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }
}

#[test]
fn without_cni_command_prints_about_on_stderr_only() {
    let i = Install::new("about", &[]);
    let r = i.plugin("loopback", &[], "");
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.is_empty(),
        "stdout must stay empty: {:?}",
        r.stdout
    );
    assert!(
        r.stderr.contains("CNI protocol versions supported: 0.1.0"),
        "{}",
        r.stderr
    );
}

#[test]
fn environment_errors_have_code_4_and_name_the_variable() {
    let i = Install::new("env", &[]);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("CNI_COMMAND", "FROB")], "FROB"),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "bad id!"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_CONTAINERID",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_NETNS",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "averyveryverylongname"),
            ],
            "CNI_IFNAME",
        ),
        (
            vec![
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/x"),
            ],
            "CNI_IFNAME",
        ),
    ];
    for (env, needle) in cases {
        let r = i.plugin("loopback", &env, LO_CONF);
        let e = r.err(4);
        let text = format!("{} {}", e["msg"], e["details"]);
        assert!(
            text.contains(needle),
            "error for {env:?} should name {needle}: {e}"
        );
    }
}

#[test]
fn config_errors_have_the_specs_codes() {
    let i = Install::new("conf", &[]);
    let e = env("ADD", "/var/run/netns/none");
    i.plugin("loopback", &e, "not json").err(6);
    i.plugin(
        "loopback",
        &e,
        r#"{"cniVersion":"1.0.0","type":"loopback"}"#,
    )
    .err(7);
    let v = i
        .plugin(
            "loopback",
            &e,
            r#"{"cniVersion":"9.9.9","name":"n","type":"loopback"}"#,
        )
        .err(1);
    assert!(v["details"].as_str().unwrap_or("").contains("9.9.9"), "{v}");
    i.plugin(
        "loopback",
        &env("CHECK", "/var/run/netns/none"),
        r#"{"cniVersion":"0.3.1","name":"n","type":"loopback"}"#,
    )
    .err(1);
    i.plugin(
        "loopback",
        &[("CNI_COMMAND", "STATUS")],
        r#"{"cniVersion":"1.0.0","name":"n","type":"loopback"}"#,
    )
    .err(1);
}

#[test]
fn missing_module_names_the_places_searched() {
    let i = Install::new("missing", &[]);
    std::os::unix::fs::symlink("wasm-cni", i.bin_dir().join("nosuch")).expect("link");
    let r = i.plugin(
        "nosuch",
        &env("ADD", "/var/run/netns/none"),
        r#"{"cniVersion":"1.0.0","name":"n","type":"nosuch"}"#,
    );
    let e = r.err(7);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains(&i.bin_dir().join("nosuch.wasm").display().to_string()),
        "{e}"
    );
    // Errors are also told on stderr, and stdout holds exactly one JSON document.
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
}

#[test]
fn add_with_a_missing_netns_is_a_clean_error() {
    let i = Install::new("nonetns", &[]);
    let r = i.plugin(
        "loopback",
        &env("ADD", "/var/run/netns/wcni-does-not-exist"),
        LO_CONF,
    );
    let e = r.err(3);
    assert!(e["msg"].as_str().unwrap_or("").contains("namespace"), "{e}");
}

#[test]
fn status_and_gc_succeed_silently_for_loopback() {
    let i = Install::new("statusgc", &[]);
    let conf =
        r#"{"cniVersion":"1.1.0","name":"n","type":"loopback","cni.dev/valid-attachments":[]}"#;
    let r = i.plugin("loopback", &[("CNI_COMMAND", "STATUS")], conf);
    r.ok();
    assert!(r.stdout.is_empty());
    let r = i.plugin("loopback", &[("CNI_COMMAND", "GC")], conf);
    r.ok();
    assert!(r.stdout.is_empty());
}

#[test]
fn log_lines_carry_container_command_module_and_duration() {
    let i = Install::new("log", &[]);
    i.plugin(
        "loopback",
        &env("ADD", "/var/run/netns/wcni-does-not-exist"),
        LO_CONF,
    )
    .err(3);
    let log = std::fs::read_to_string(i.log_file()).expect("log file written");
    let line = log
        .lines()
        .find(|l| l.contains("container_id=ctr1"))
        .unwrap_or_else(|| panic!("no line for ctr1 in {log}"));
    for field in ["command=ADD", "module=loopback", "duration_ms="] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

/// The CNI-path build carries no administration commands: `wasm-cni
/// <command>` becomes wasm-cni-compile (next to it) with the same arguments,
/// output and exit status, and says what to install when that is missing.
#[test]
fn the_cni_path_build_hands_administration_to_the_compiler_build() {
    let dir = std::env::temp_dir().join(format!("wcni-forward-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let runtime = host_bin();
    let compiler = runtime.with_file_name("wasm-cni-compile");
    let bin = dir.join("wasm-cni");
    std::fs::copy(&runtime, &bin).expect("copy the CNI-path build");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .output()
            .expect("run wasm-cni");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Alone, it names what is missing.
    let (code, stdout, stderr) = run(&["--version"]);
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "{stderr}");
    assert!(stderr.contains("wasm-cni-compile"), "{stderr}");

    // Another CNI-path build under the compiler's name is refused, not
    // exec'd in a loop.
    std::fs::copy(&runtime, dir.join("wasm-cni-compile")).expect("copy");
    let (code, _, stderr) = run(&["--version"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("CNI-path build"), "{stderr}");

    // With the compiler build next to it, the commands answer as `wasm-cni`.
    std::fs::copy(&compiler, dir.join("wasm-cni-compile")).expect("copy");
    let (code, stdout, stderr) = run(&["--version"]);
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), "wasm-cni 0.1.0"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&["no-such-command"]);
    assert_eq!((code, stdout.as_str()), (Some(2), ""));
    assert!(stderr.contains("Usage: wasm-cni <COMMAND>"), "{stderr}");
    let (code, stdout, stderr) = run(&["inspect", "--bin-dir", &dir.display().to_string()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("no module (*.wasm) in"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
