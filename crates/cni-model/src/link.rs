//! Which link names a module may ask for.

/// What a refused name is told, as the fix.
pub const NAME_RULE: &str = "a link name is 1-15 bytes without whitespace, control or format characters, or any of / : % * ? \\ \" '";

/// A link name the kernel takes as given and that reads as itself: 1-15
/// bytes, not `.` or `..`, without whitespace, control or format characters
/// (zero-width, bidi), `%` (the kernel would expand `hs%d` into `hs0`, and
/// an undo looking for `hs%d` would find nothing) or `/ : * ? \ " '`.
pub fn valid_name(name: &str) -> bool {
    let sneaky = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '/' | ':' | '%' | '*' | '?' | '\\' | '"' | '\'')
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
    };
    !(name.is_empty() || name.len() > 15 || name.chars().any(sneaky) || name == "." || name == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["eth0", "veth1234abcd", "cni0", "br-x_1.2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "hs%d",
            "a/b",
            "a b",
            "a\u{202e}b",
            "sixteen-bytes-xx",
            "x*",
            "a\nb",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
