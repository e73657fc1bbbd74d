//! resolv.conf parsing for `resolvConf`, as the reference reads it:
//! `nameserver` lines accumulate, the last `domain` wins, `search` and
//! `options` take every field after the keyword; comments (`#`, `;`) and
//! blank lines are skipped.

use wasm_cni_guest::prelude::Dns;

pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(key), rest) = (fields.next(), fields) else {
            continue;
        };
        let rest: Vec<String> = rest.map(str::to_string).collect();
        match key {
            "nameserver" => dns.nameservers.extend(rest.into_iter().take(1)),
            "domain" => {
                if let Some(d) = rest.into_iter().next() {
                    dns.domain = d;
                }
            }
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_keys() {
        let d = parse_resolv_conf("# comment\n; also\nnameserver 10.0.0.10\nnameserver fd00::10\ndomain example.com\nsearch a.example b.example\noptions ndots:5 timeout:1\n\nbogus line\n");
        assert_eq!(d.nameservers, ["10.0.0.10", "fd00::10"]);
        assert_eq!(d.domain, "example.com");
        assert_eq!(d.search, ["a.example", "b.example"]);
        assert_eq!(d.options, ["ndots:5", "timeout:1"]);
        assert_eq!(parse_resolv_conf(""), Dns::default());
    }
}
