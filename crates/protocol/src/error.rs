//! The CNI error result. Every failure the host reports to a runtime goes
//! through [`CniError`], so the code numbers and the JSON shape live here once.

use std::fmt;

use serde::Serialize;

/// Well-known CNI error codes, shared with the guest SDK.
pub use cni_model::code;

/// A CNI error as printed on stdout before a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

/// Wire shape; a struct (not a `Map`) so the key order is the spec's order
/// regardless of serde_json features.
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "cniVersion", skip_serializing_if = "str::is_empty")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

impl CniError {
    /// An error with no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Attach free-form details (what was wrong, what to fix).
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Code 999: for failures that have no better-fitting code.
    pub fn internal(msg: impl Into<String>) -> Self {
        CniError::new(code::INTERNAL, msg)
    }

    /// Code 6: for input that could not be decoded.
    pub fn decoding(msg: impl Into<String>) -> Self {
        CniError::new(code::DECODING_FAILURE, msg)
    }

    /// Code 4: for bad `CNI_*` variables.
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        CniError::new(code::INVALID_ENVIRONMENT, msg)
    }

    /// The stdout error document. `cniVersion` is omitted when `cni_version`
    /// is empty (the reference never prints it, so runtimes tolerate that),
    /// `details` when empty.
    /// `msg` and `details` are bounded (`MAX_TEXT_BYTES` each): an error
    /// that echoes a hostile value (a 4 MB container id, a module's text)
    /// must not become a 4 MB answer.
    pub fn to_json(&self, cni_version: &str) -> String {
        let wire = Wire {
            cni_version: &bounded(cni_version, 64),
            code: self.code,
            msg: &bounded(&self.msg, MAX_TEXT_BYTES),
            details: &bounded(&self.details, MAX_TEXT_BYTES),
        };
        match serde_json::to_string(&wire) {
            Ok(s) => s,
            // Serializing plain strings cannot fail; keep a valid document anyway.
            Err(_) => format!("{{\"code\":{},\"msg\":\"internal error\"}}", self.code),
        }
    }
}

/// The most of `msg` or `details` an error document carries.
pub const MAX_TEXT_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes (at a char boundary), saying how much was
/// cut, so that no echoed value makes an answer or a log line unbounded.
pub fn bounded(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes cut)", &s[..end], s.len() - end))
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}; {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parsed(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn code_values_match_spec() {
        assert_eq!(code::INCOMPATIBLE_VERSION, 1);
        assert_eq!(code::UNSUPPORTED_FIELD, 2);
        assert_eq!(code::UNKNOWN_CONTAINER, 3);
        assert_eq!(code::INVALID_ENVIRONMENT, 4);
        assert_eq!(code::IO_FAILURE, 5);
        assert_eq!(code::DECODING_FAILURE, 6);
        assert_eq!(code::INVALID_NETWORK_CONFIG, 7);
        assert_eq!(code::TRY_AGAIN_LATER, 11);
        assert_eq!(code::NOT_AVAILABLE, 50);
        assert_eq!(code::NOT_AVAILABLE_LIMITED_CONNECTIVITY, 51);
        assert_eq!(code::INTERNAL, 999);
    }

    #[test]
    fn constructors() {
        let e = CniError::new(7, "bad");
        assert_eq!((e.code, e.msg.as_str(), e.details.as_str()), (7, "bad", ""));
        let e = e.with_details("why");
        assert_eq!(e.details, "why");
        assert_eq!(CniError::internal("x").code, 999);
        assert_eq!(CniError::decoding("x").code, 6);
        assert_eq!(CniError::invalid_env("x").code, 4);
    }

    #[test]
    fn json_key_order_and_exact_text() {
        let e = CniError::new(1, "incompatible CNI versions").with_details("d");
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":1,"msg":"incompatible CNI versions","details":"d"}"#
        );
    }

    #[test]
    fn json_omits_empty_version() {
        let e = CniError::new(4, "m");
        assert_eq!(e.to_json(""), r#"{"code":4,"msg":"m"}"#);
    }

    #[test]
    fn json_escapes_hostile_text() {
        let e = CniError::new(6, "bad \"quote\"\n\u{0}").with_details("\\ \u{1f600}");
        let v = parsed(&e.to_json("0.4.0\""));
        assert_eq!(v["msg"], "bad \"quote\"\n\u{0}");
        assert_eq!(v["details"], "\\ \u{1f600}");
        assert_eq!(v["cniVersion"], "0.4.0\"");
    }

    #[test]
    fn json_bounds_echoed_text() {
        let huge = "é".repeat(1 << 20);
        let e = CniError::new(4, huge.clone()).with_details(huge);
        let out = e.to_json(&"1.0.0".repeat(100));
        assert!(out.len() < 3 * MAX_TEXT_BYTES, "{}", out.len());
        let v = parsed(&out);
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("éé") && msg.ends_with("bytes cut)"),
            "{msg}"
        );
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("abcdef", 3), "abc… (3 bytes cut)");
        // never splits a character
        assert_eq!(bounded("aé", 2), "a… (2 bytes cut)");
    }

    #[test]
    fn display() {
        assert_eq!(CniError::new(1, "a").to_string(), "a");
        assert_eq!(CniError::new(1, "a").with_details("b").to_string(), "a; b");
    }
}
