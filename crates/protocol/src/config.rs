//! The network configuration a plugin receives on stdin: the few fields the
//! host itself must understand, checked in the reference skel's order so
//! the first error reported is the same one the Go plugins report. Plugin
//! specific keys stay in `raw` for the module.

use serde_json::{Map, Value};

use super::env::{is_valid_identifier, Command};
use super::error::{code, CniError};
use super::version::{
    allows_check, allows_gc_status, incompatible_details, is_supported, json_kind,
};

/// Key libcni uses for the GC keep-list since 1.1.0 (post-tag rename).
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// Original 1.1.0 key; libcni still sends both, older runtimes only this.
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// The host-relevant view of one plugin's request configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// As given, or "0.1.0" when absent/empty (the pre-field default).
    pub cni_version: String,
    pub name: String,
    /// `type`: which plugin to run; "" when absent.
    pub plugin_type: String,
    /// Present on chained ADD, and on DEL/CHECK from 0.4.0 on.
    pub prev_result: Option<Value>,
    /// `ipam.type` when non-empty: the delegate to exec.
    pub ipam_type: Option<String>,
    /// The whole document, for the plugin and for delegation (delegates get
    /// the complete config, not just `ipam`).
    pub raw: Value,
}

fn decode_err(details: String) -> CniError {
    CniError::new(
        code::DECODING_FAILURE,
        "failed to decode network configuration",
    )
    .with_details(details)
}

/// An optional string member; `null` counts as absent.
fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, CniError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(decode_err(format!(
            "{key} must be a string, got {}",
            json_kind(v)
        ))),
    }
}

/// Decode and check stdin for `command`. VERSION requests are answered by
/// `version::version_answer` instead; passed here, VERSION skips only the
/// network-name requirement (the reference ignores VERSION's stdin).
pub fn parse(stdin: &[u8], command: Command) -> Result<NetConf, CniError> {
    let raw: Value = serde_json::from_slice(stdin).map_err(|e| decode_err(e.to_string()))?;
    let obj = raw
        .as_object()
        .ok_or_else(|| decode_err(format!("expected a JSON object, got {}", json_kind(&raw))))?;

    let name = opt_str(obj, "name")?.unwrap_or_default().to_string();
    if command != Command::Version {
        if name.is_empty() {
            return Err(
                CniError::new(code::INVALID_NETWORK_CONFIG, "missing network name")
                    .with_details("set \"name\" in the network configuration"),
            );
        }
        if !is_valid_identifier(&name) {
            return Err(
                CniError::new(code::INVALID_NETWORK_CONFIG, "invalid network name").with_details(
                    format!("name {name:?} must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"),
                ),
            );
        }
    }

    let cni_version = match opt_str(obj, "cniVersion")? {
        None | Some("") => "0.1.0".to_string(),
        Some(v) => v.to_string(),
    };
    if !is_supported(&cni_version) {
        return Err(
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
                .with_details(incompatible_details(&cni_version)),
        );
    }
    let gate = match command {
        Command::Check if !allows_check(&cni_version) => Some("0.4.0"),
        Command::Gc | Command::Status if !allows_gc_status(&cni_version) => Some("1.1.0"),
        _ => None,
    };
    if let Some(min) = gate {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("config version does not allow {command}"),
        )
        .with_details(format!(
            "cniVersion is {cni_version:?}; {command} needs {min} or later"
        )));
    }

    let plugin_type = opt_str(obj, "type")?.unwrap_or_default().to_string();

    let ipam_type = match obj.get("ipam") {
        None | Some(Value::Null) => None,
        Some(Value::Object(ipam)) => match ipam.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t.is_empty() => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(v) => {
                return Err(decode_err(format!(
                    "ipam.type must be a string, got {}",
                    json_kind(v)
                )))
            }
        },
        Some(v) => {
            return Err(decode_err(format!(
                "ipam must be an object, got {}",
                json_kind(v)
            )))
        }
    };

    let prev_result = match obj.get("prevResult") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(v) => {
            return Err(decode_err(format!(
                "prevResult must be an object, got {}",
                json_kind(v)
            )))
        }
    };

    Ok(NetConf {
        cni_version,
        name,
        plugin_type,
        prev_result,
        ipam_type,
        raw,
    })
}

/// GC keep-list as `(containerID, ifname)` pairs. Prefers the current key
/// and falls back to the legacy one. Absent means an empty list, which is
/// what the reference does (GC then treats every attachment as stale).
/// JSON type errors are code 6; missing/empty members are code 7.
pub fn valid_attachments(raw: &Value) -> Result<Vec<(String, String)>, CniError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| decode_err(format!("expected a JSON object, got {}", json_kind(raw))))?;
    let (key, list) = match [VALID_ATTACHMENTS_KEY, LEGACY_ATTACHMENTS_KEY]
        .into_iter()
        .find_map(|k| obj.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
    {
        None => return Ok(Vec::new()),
        Some((k, Value::Array(a))) => (k, a),
        Some((k, v)) => {
            return Err(decode_err(format!(
                "{k} must be an array, got {}",
                json_kind(v)
            )))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let m = entry.as_object().ok_or_else(|| {
            decode_err(format!(
                "{key}[{i}] must be an object, got {}",
                json_kind(entry)
            ))
        })?;
        let member = |field: &str| -> Result<String, CniError> {
            match m.get(field) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                None | Some(Value::Null) | Some(Value::String(_)) => Err(CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    "invalid GC attachment",
                )
                .with_details(format!("{key}[{i}].{field} is missing or empty"))),
                Some(v) => Err(decode_err(format!(
                    "{key}[{i}].{field} must be a string, got {}",
                    json_kind(v)
                ))),
            }
        };
        out.push((member("containerID")?, member("ifname")?));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::super::version::SUPPORTED;
    use super::*;
    use serde_json::json;

    fn conf(v: Value, cmd: Command) -> Result<NetConf, CniError> {
        parse(v.to_string().as_bytes(), cmd)
    }

    #[test]
    fn containerd_loopback() {
        let c = parse(
            br#"{"cniVersion":"0.3.1","name":"cni-loopback","type":"loopback"}"#,
            Command::Add,
        )
        .unwrap();
        assert_eq!(c.cni_version, "0.3.1");
        assert_eq!(c.name, "cni-loopback");
        assert_eq!(c.plugin_type, "loopback");
        assert_eq!(c.ipam_type, None);
        assert_eq!(c.prev_result, None);
        assert_eq!(c.raw["type"], "loopback");
    }

    #[test]
    fn bridge_with_host_local_and_prev_result() {
        let doc = json!({
            "cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "bridge": "cni0",
            "isGateway": true, "ipMasq": true, "capabilities": {"portMappings": true},
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.22.0.0/16"}]]},
            "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.22.0.2/16"}]},
            "runtimeConfig": {"portMappings": [{"HostPort": 80, "ContainerPort": 8080}]}
        });
        let c = conf(doc.clone(), Command::Add).unwrap();
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        assert_eq!(c.prev_result, Some(doc["prevResult"].clone()));
        assert_eq!(c.raw, doc);
    }

    #[test]
    fn every_version_every_command() {
        for v in SUPPORTED {
            let doc = json!({"cniVersion": v, "name": "net1", "type": "ptp"});
            for cmd in Command::ALL {
                let r = conf(doc.clone(), cmd);
                let allowed = match cmd {
                    Command::Check => allows_check(v),
                    Command::Gc | Command::Status => allows_gc_status(v),
                    _ => true,
                };
                match r {
                    Ok(c) => {
                        assert!(allowed, "{v} {cmd} should be refused");
                        assert_eq!(c.cni_version, v);
                    }
                    Err(e) => {
                        assert!(!allowed, "{v} {cmd}: {e:?}");
                        assert_eq!(e.code, 1);
                        assert_eq!(e.msg, format!("config version does not allow {cmd}"));
                    }
                }
            }
        }
    }

    #[test]
    fn check_gate_boundaries() {
        let ck = |v: &str| conf(json!({"cniVersion": v, "name": "n"}), Command::Check);
        assert_eq!(
            ck("0.3.1").unwrap_err().details,
            "cniVersion is \"0.3.1\"; CHECK needs 0.4.0 or later"
        );
        assert!(ck("0.4.0").is_ok());
        let gc = |v: &str| conf(json!({"cniVersion": v, "name": "n"}), Command::Gc);
        assert_eq!(
            gc("1.0.0").unwrap_err().msg,
            "config version does not allow GC"
        );
        assert!(gc("1.1.0").is_ok());
        let st = conf(json!({"cniVersion": "0.4.0", "name": "n"}), Command::Status).unwrap_err();
        assert_eq!(st.msg, "config version does not allow STATUS");
        // No cniVersion = 0.1.0, which predates CHECK.
        assert_eq!(
            conf(json!({"name": "n"}), Command::Check).unwrap_err().code,
            1
        );
    }

    #[test]
    fn version_default_and_exact_match() {
        for doc in [
            json!({"name": "n"}),
            json!({"name": "n", "cniVersion": ""}),
            json!({"name": "n", "cniVersion": null}),
        ] {
            assert_eq!(conf(doc, Command::Add).unwrap().cni_version, "0.1.0");
        }
        for bad in ["1.0", "1.2.0", "0.3.2", "v1.0.0", "1.0.0 ", "garbage"] {
            let e = conf(json!({"name": "n", "cniVersion": bad}), Command::Add).unwrap_err();
            assert_eq!(e.code, 1, "{bad}");
            assert_eq!(e.msg, "incompatible CNI versions");
            assert_eq!(e.details, incompatible_details(bad));
            assert!(e
                .details
                .starts_with(&format!("config is {bad:?}, plugin supports [\"0.1.0\" ")));
        }
        let e = conf(json!({"name": "n", "cniVersion": 1.0}), Command::Add).unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.details.contains("cniVersion"));
    }

    #[test]
    fn decode_failures() {
        for stdin in ["", "{", "[]", "\"x\"", "null", "1", "{\"name\":\"n\"} x"] {
            let e = parse(stdin.as_bytes(), Command::Add).unwrap_err();
            assert_eq!(e.code, 6, "{stdin:?}");
            assert_eq!(e.msg, "failed to decode network configuration");
            assert!(!e.details.is_empty());
        }
        assert_eq!(parse(&[0xff], Command::Del).unwrap_err().code, 6);
        // Even VERSION needs well-formed JSON when routed here.
        assert_eq!(parse(b"", Command::Version).unwrap_err().code, 6);
    }

    #[test]
    fn name_rules() {
        let e = conf(json!({"cniVersion": "1.0.0"}), Command::Add).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "missing network name"));
        let e = conf(json!({"cniVersion": "1.0.0", "name": ""}), Command::Del).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "missing network name"));
        for bad in ["-x", "a b", "../etc", "a/b", "ünïcode"] {
            let e = conf(json!({"cniVersion": "1.0.0", "name": bad}), Command::Gc).unwrap_err();
            assert_eq!(
                (e.code, e.msg.as_str()),
                (7, "invalid network name"),
                "{bad}"
            );
            assert!(e.details.contains(&format!("{bad:?}")));
        }
        let e = conf(json!({"name": 5}), Command::Add).unwrap_err();
        assert_eq!(e.code, 6);
        // Name is checked before the version, like the reference.
        let e = conf(json!({"cniVersion": "9.9.9"}), Command::Add).unwrap_err();
        assert_eq!(e.code, 7);
        // VERSION does not need a name.
        assert!(conf(json!({"cniVersion": "1.1.0"}), Command::Version).is_ok());
    }

    #[test]
    fn type_and_ipam_shapes() {
        let c = conf(json!({"name": "n"}), Command::Add).unwrap();
        assert_eq!(c.plugin_type, "");
        assert_eq!(
            conf(json!({"name": "n", "type": 1}), Command::Add)
                .unwrap_err()
                .code,
            6
        );
        let ipam = |v: Value| conf(json!({"name": "n", "ipam": v}), Command::Add);
        assert_eq!(ipam(json!({})).unwrap().ipam_type, None);
        assert_eq!(ipam(json!({"type": ""})).unwrap().ipam_type, None);
        assert_eq!(ipam(Value::Null).unwrap().ipam_type, None);
        assert_eq!(
            ipam(json!({"type": "dhcp"})).unwrap().ipam_type.as_deref(),
            Some("dhcp")
        );
        assert_eq!(ipam(json!("host-local")).unwrap_err().code, 6);
        assert_eq!(ipam(json!({"type": ["x"]})).unwrap_err().code, 6);
    }

    #[test]
    fn prev_result_shapes() {
        let pr = |v: Value| {
            conf(
                json!({"cniVersion": "0.4.0", "name": "n", "prevResult": v}),
                Command::Del,
            )
        };
        assert_eq!(pr(Value::Null).unwrap().prev_result, None);
        assert_eq!(pr(json!({})).unwrap().prev_result, Some(json!({})));
        assert_eq!(pr(json!([])).unwrap_err().code, 6);
    }

    #[test]
    fn gc_attachments_both_keys() {
        let list = json!([{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}]);
        let expect = vec![
            ("c1".to_string(), "eth0".to_string()),
            ("c2".to_string(), "net1".to_string()),
        ];
        // libcni sends both.
        let both = json!({"cniVersion": "1.1.0", "name": "n",
                          "cni.dev/valid-attachments": list, "cni.dev/attachments": list});
        assert_eq!(valid_attachments(&both).unwrap(), expect);
        // New key wins over legacy.
        let mixed = json!({"cni.dev/valid-attachments": [], "cni.dev/attachments": list});
        assert_eq!(valid_attachments(&mixed).unwrap(), vec![]);
        // Legacy only, and legacy after a null new key.
        assert_eq!(
            valid_attachments(&json!({"cni.dev/attachments": list})).unwrap(),
            expect
        );
        assert_eq!(
            valid_attachments(
                &json!({"cni.dev/valid-attachments": null, "cni.dev/attachments": list})
            )
            .unwrap(),
            expect
        );
        // Absent: empty.
        assert_eq!(valid_attachments(&json!({"name": "n"})).unwrap(), vec![]);
        // Through parse(): raw keeps the list.
        let c = conf(both, Command::Gc).unwrap();
        assert_eq!(valid_attachments(&c.raw).unwrap().len(), 2);
    }

    #[test]
    fn gc_attachments_bad_shapes() {
        let k = VALID_ATTACHMENTS_KEY;
        let cases = [
            (json!([]), 6, "expected a JSON object"),
            (json!({k: {}}), 6, "must be an array"),
            (json!({k: [1]}), 6, "[0] must be an object"),
            (
                json!({k: [{"containerID": 1, "ifname": "e"}]}),
                6,
                "[0].containerID must be a string",
            ),
            (
                json!({k: [{"containerID": "c", "ifname": false}]}),
                6,
                "[0].ifname must be a string",
            ),
            (
                json!({k: [{"ifname": "e"}]}),
                7,
                "[0].containerID is missing",
            ),
            (
                json!({k: [{"containerID": "c", "ifname": "e"}, {"containerID": "c"}]}),
                7,
                "[1].ifname is missing",
            ),
            (
                json!({k: [{"containerID": "", "ifname": "e"}]}),
                7,
                "containerID is missing or empty",
            ),
            (
                json!({LEGACY_ATTACHMENTS_KEY: "x"}),
                6,
                "cni.dev/attachments must be an array",
            ),
        ];
        for (doc, code, what) in cases {
            let e = valid_attachments(&doc).unwrap_err();
            assert_eq!(e.code, code, "{doc}");
            assert!(e.details.contains(what), "{doc}: {}", e.details);
        }
    }
}
