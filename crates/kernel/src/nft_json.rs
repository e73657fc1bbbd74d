//! The parts of `nft -j list …` output the host reads, as typed structs:
//! chains, rules (their expressions left as JSON, matched where they are
//! read) and sets/maps with their elements. Anything else in the listing
//! (metainfo, tables, counters) is skipped.

use serde::Deserialize;
use serde_json::Value;

use super::{KResult, KernelError};

#[derive(Debug, Deserialize)]
struct Listing {
    #[serde(default)]
    nftables: Vec<Item>,
}

/// One entry of the listing: an object with a single key naming its kind.
#[derive(Debug, Default, Deserialize)]
pub struct Item {
    pub chain: Option<Chain>,
    pub rule: Option<Rule>,
    pub set: Option<Set>,
    pub map: Option<Set>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Chain {
    pub table: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub expr: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Set {
    pub name: String,
    /// Bare keys, `{"elem": {"val": …, "comment": …}}`, or for a map
    /// `[key, value]` pairs.
    #[serde(default)]
    pub elem: Vec<Value>,
}

/// The entries of an `nft -j list` answer.
pub fn parse(json: &str) -> KResult<Vec<Item>> {
    serde_json::from_str::<Listing>(json)
        .map(|l| l.nftables)
        .map_err(|e| KernelError::Failed(format!("nft -j output is not what nft writes: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chains_rules_and_sets_and_skips_the_rest() {
        let items = parse(
            r#"{"nftables": [
                {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                {"table": {"family": "ip", "name": "t", "handle": 1}},
                {"chain": {"family": "ip", "table": "t", "name": "c", "handle": 2}},
                {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 5,
                          "comment": "x", "expr": [{"accept": null}]}},
                {"map": {"family": "ip", "table": "t", "name": "m", "type": "ipv4_addr",
                         "map": "verdict", "elem": [["10.0.0.1", {"accept": null}]]}}
            ]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(items.len(), 5);
        assert_eq!(
            items[2].chain,
            Some(Chain {
                table: "t".into(),
                name: "c".into()
            })
        );
        let r = items[3]
            .rule
            .as_ref()
            .map(|r| (r.handle, r.comment.clone(), r.expr.len()));
        assert_eq!(r, Some((5, Some("x".into()), 1)));
        assert_eq!(items[4].map.as_ref().map(|m| m.elem.len()), Some(1));
        assert!(parse("{\"nftables\": [{\"rule\": {\"chain\": \"c\"}}]}").is_err());
        assert!(parse("not json").is_err());
    }
}
