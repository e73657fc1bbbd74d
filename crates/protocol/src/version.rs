//! CNI spec versions: what we speak, how versions compare, and the VERSION
//! verb's answer.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use super::error::{code, CniError};

/// Every spec version the host answers in. Config versions are matched
/// against this list by exact string, like the reference.
pub const SUPPORTED: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A parsed `major.minor.patch`, ordered numerically (so "0.10.0" > "0.4.0").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const V0_3_0: Version = Version::new(0, 3, 0);
    pub const V0_4_0: Version = Version::new(0, 4, 0);
    pub const V1_0_0: Version = Version::new(1, 0, 0);
    pub const V1_1_0: Version = Version::new(1, 1, 0);

    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Like the reference `ParseVersion`: one to three dot-separated decimal
    /// parts, missing ones are 0. Anything else is code 6 (the version
    /// string could not be decoded); whether it is *supported* is a
    /// separate, code-1 question.
    pub fn parse(s: &str) -> Result<Version, CniError> {
        let bad = |why: &str| {
            CniError::new(code::DECODING_FAILURE, format!("invalid version {s:?}"))
                .with_details(format!("{why}; expected MAJOR.MINOR.PATCH, e.g. \"1.0.0\""))
        };
        if s.is_empty() {
            return Err(bad("the version is empty"));
        }
        let mut nums = [0u32; 3];
        for (count, part) in s.split('.').enumerate() {
            let slot = match nums.get_mut(count) {
                Some(slot) => slot,
                None => return Err(bad("too many parts")),
            };
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("each part must be a decimal number"));
            }
            *slot = part.parse().map_err(|_| bad("a part is out of range"))?;
        }
        let [major, minor, patch] = nums;
        Ok(Version::new(major, minor, patch))
    }
}

impl FromStr for Version {
    type Err = CniError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Exact-string membership in [`SUPPORTED`] ("1.0" is not "1.0.0").
pub fn is_supported(v: &str) -> bool {
    SUPPORTED.contains(&v)
}

/// Whether a config of version `v` may be sent CHECK (added in 0.4.0).
/// Unparseable versions never allow it.
pub fn allows_check(v: &str) -> bool {
    Version::parse(v).is_ok_and(|v| v >= Version::V0_4_0)
}

/// Whether a config of version `v` may be sent GC or STATUS (added in 1.1.0).
pub fn allows_gc_status(v: &str) -> bool {
    Version::parse(v).is_ok_and(|v| v >= Version::V1_1_0)
}

/// The reference's `config is "X", plugin supports ["a" "b"]` text, kept
/// byte-compatible because runtimes and people grep for it.
pub fn incompatible_details(config_version: &str) -> String {
    let list: Vec<String> = SUPPORTED.iter().map(|v| format!("{v:?}")).collect();
    format!(
        "config is {config_version:?}, plugin supports [{}]",
        list.join(" ")
    )
}

#[derive(Serialize)]
struct Answer<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(rename = "supportedVersions")]
    supported_versions: &'a [&'a str],
}

/// The VERSION verb's stdout. Echoes the request's `cniVersion` as the spec
/// asks (absent, null or empty stdin → "0.1.0", the version that predates
/// the field). Any parseable version is echoed, even one newer than ours:
/// the runtime needs the list to negotiate down.
///
/// A request that does not decode (not JSON, not an object, no version
/// string) is answered as an empty one, as the reference plugins answer
/// VERSION whatever their stdin holds: a runtime probing a plugin must
/// learn what it speaks, not fail on the probe.
pub fn version_answer(stdin: &[u8]) -> Result<String, CniError> {
    let requested = requested_version(stdin).unwrap_or_else(|_| "0.1.0".to_string());
    let answer = Answer {
        cni_version: &requested,
        supported_versions: &SUPPORTED,
    };
    serde_json::to_string(&answer).map_err(|e| {
        CniError::internal("failed to encode VERSION answer").with_details(e.to_string())
    })
}

fn requested_version(stdin: &[u8]) -> Result<String, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Ok("0.1.0".to_string());
    }
    let doc: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(code::DECODING_FAILURE, "failed to decode VERSION request")
            .with_details(e.to_string())
    })?;
    let obj = match doc {
        Value::Object(o) => o,
        Value::Null => return Ok("0.1.0".to_string()),
        other => {
            return Err(
                CniError::new(code::DECODING_FAILURE, "failed to decode VERSION request")
                    .with_details(format!("expected a JSON object, got {}", json_kind(&other))),
            )
        }
    };
    match obj.get("cniVersion") {
        None | Some(Value::Null) => Ok("0.1.0".to_string()),
        Some(Value::String(s)) if s.is_empty() => Ok("0.1.0".to_string()),
        Some(Value::String(s)) => {
            Version::parse(s)?;
            Ok(s.clone())
        }
        Some(other) => Err(CniError::new(
            code::DECODING_FAILURE,
            "failed to decode VERSION request",
        )
        .with_details(format!(
            "cniVersion must be a string, got {}",
            json_kind(other)
        ))),
    }
}

/// Short JSON type name for error details.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(stdin: &str) -> Value {
        serde_json::from_str(&version_answer(stdin.as_bytes()).unwrap()).unwrap()
    }

    fn answer_of(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_error_renders_alike_in_every_supported_version() {
        for v in SUPPORTED {
            let e = crate::error::CniError::new(code::TRY_AGAIN_LATER, "busy")
                .with_details("lock held");
            assert_eq!(
                answer_of(&e.to_json(v)),
                json!({"cniVersion": v, "code": 11, "msg": "busy", "details": "lock held"})
            );
            let e = crate::error::CniError::new(code::INTERNAL, "boom");
            assert_eq!(
                answer_of(&e.to_json(v)),
                json!({"cniVersion": v, "code": 999, "msg": "boom"})
            );
        }
    }

    #[test]
    fn supported_all_parse_and_ascend() {
        let parsed: Vec<Version> = SUPPORTED
            .iter()
            .map(|s| Version::parse(s).unwrap())
            .collect();
        for w in parsed.windows(2) {
            assert!(w[0] < w[1]);
        }
        for s in SUPPORTED {
            assert_eq!(Version::parse(s).unwrap().to_string(), s);
            assert!(is_supported(s));
        }
        assert!(!is_supported("1.0"));
        assert!(!is_supported("1.2.0"));
        assert!(!is_supported(" 1.0.0"));
    }

    #[test]
    fn parse_forms() {
        assert_eq!(Version::parse("1").unwrap(), Version::new(1, 0, 0));
        assert_eq!(Version::parse("0.4").unwrap(), Version::new(0, 4, 0));
        assert_eq!(
            Version::parse("10.20.30").unwrap(),
            Version::new(10, 20, 30)
        );
        assert_eq!("007.0.1".parse::<Version>().unwrap(), Version::new(7, 0, 1));
    }

    #[test]
    fn parse_garbage_is_code_6() {
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1..0",
            "1.0.0.0",
            "a.b.c",
            "1.0.0-rc1",
            "v1.0.0",
            "+1.0.0",
            "-1.0.0",
            " 1.0.0",
            "1.0.0 ",
            "99999999999.0.0",
            "1,0,0",
        ] {
            let e = Version::parse(bad).unwrap_err();
            assert_eq!(e.code, 6, "{bad:?}");
            assert!(e.details.contains("MAJOR.MINOR.PATCH"));
        }
    }

    #[test]
    fn ordering_is_numeric() {
        assert!(Version::parse("0.10.0").unwrap() > Version::parse("0.4.0").unwrap());
        assert!(Version::parse("1.0.0").unwrap() > Version::parse("0.99.99").unwrap());
        assert!(Version::V0_4_0 < Version::V1_0_0);
    }

    #[test]
    fn check_and_gc_gates() {
        let expect = [
            ("0.1.0", false, false),
            ("0.2.0", false, false),
            ("0.3.0", false, false),
            ("0.3.1", false, false),
            ("0.4.0", true, false),
            ("1.0.0", true, false),
            ("1.1.0", true, true),
            ("1.2.0", true, true),
            ("garbage", false, false),
            ("", false, false),
        ];
        for (v, check, gc) in expect {
            assert_eq!(allows_check(v), check, "{v}");
            assert_eq!(allows_gc_status(v), gc, "{v}");
        }
    }

    #[test]
    fn answer_golden_every_version() {
        for v in SUPPORTED {
            let got = answer(&format!(r#"{{"cniVersion":"{v}"}}"#));
            assert_eq!(
                got,
                json!({"cniVersion": v, "supportedVersions":
                    ["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
            );
        }
    }

    #[test]
    fn answer_exact_text() {
        assert_eq!(
            version_answer(br#"{"cniVersion":"1.1.0"}"#).unwrap(),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
    }

    #[test]
    fn answer_defaults() {
        for stdin in [
            "",
            "  \n",
            "{}",
            "null",
            r#"{"cniVersion":null}"#,
            r#"{"cniVersion":""}"#,
        ] {
            assert_eq!(answer(stdin)["cniVersion"], "0.1.0", "{stdin:?}");
        }
    }

    #[test]
    fn answer_echoes_newer_version() {
        assert_eq!(
            answer(r#"{"cniVersion":"1.2.0","name":"x"}"#)["cniVersion"],
            "1.2.0"
        );
    }

    #[test]
    fn answer_tolerates_garbage_like_the_reference() {
        for stdin in [
            "{",
            "[1]",
            "42",
            r#""1.0.0""#,
            r#"{"cniVersion":1}"#,
            r#"{"cniVersion":"x"}"#,
            "\u{ff}",
        ] {
            assert_eq!(answer(stdin)["cniVersion"], "0.1.0", "{stdin:?}");
            assert_eq!(requested_version(stdin.as_bytes()).unwrap_err().code, 6);
        }
        let v: Value = serde_json::from_str(&version_answer(&[0xff, 0xfe]).unwrap()).unwrap();
        assert_eq!(
            v["supportedVersions"].as_array().unwrap().len(),
            SUPPORTED.len()
        );
    }

    #[test]
    fn incompatible_details_format() {
        assert_eq!(
            incompatible_details("9.9.9"),
            r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
        );
    }
}
