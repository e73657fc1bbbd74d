//! Range math. Addresses are handled as `u128` plus a family, so IPv4 and
//! IPv6 share one implementation; nothing here touches the disk.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wasm_cni_guest::IpNet;

/// Makes an address canonical the way the reference does (Go's `To4`):
/// an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Width of the address family in bits.
pub fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of family `v4` with numeric value `n` (truncated for IPv4).
pub fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// The address as a file name: the text Go's `net.IP.String()` prints.
/// Rust's `Display` follows RFC 5952 like Go (lower case, longest zero run
/// compressed, first run on ties, single zero groups kept) for every address
/// a range can hold; IPv4-mapped IPv6 addresses are canonicalised to IPv4
/// before they get here.
pub fn file_name(ip: IpAddr) -> String {
    canonical(ip).to_string()
}

/// One `Range` of a range set, canonicalised: every field filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet as configured (host bits are rejected, so this is the network).
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

/// Unvalidated range fields as they appear in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSpec {
    pub subnet: Option<IpNet>,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

impl Range {
    /// Validates a range and fills in the defaults, with the reference's
    /// rules and messages: no host bits, at least a /30 (/126), start and end
    /// inside the subnet, gateway defaulting to network+1, end defaulting to
    /// broadcast-1 (IPv4) or the last address of the prefix (IPv6).
    pub fn canonicalize(spec: &RangeSpec) -> Result<Range, String> {
        let subnet = spec.subnet.ok_or("subnet is required")?;
        if let IpAddr::V6(v6) = subnet.addr {
            if v6.to_ipv4_mapped().is_some() {
                return Err(format!(
                    "IPv4-mapped IPv6 subnet {subnet} is not supported; write the IPv4 subnet"
                ));
            }
        }
        let width = bits(subnet.addr);
        if subnet.prefix > width - 2 {
            return Err(format!("Network {subnet} too small to allocate from"));
        }
        let network = subnet.network();
        if network != subnet.addr {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {} the network address is {network}",
                subnet.prefix
            ));
        }
        let v4 = subnet.is_ipv4();
        let net_n = to_u128(network);
        let last_n = last_address(subnet);
        let first_host = from_u128(v4, net_n + 1);

        let gateway = spec.gateway.map(canonical).unwrap_or(first_host);
        let start = match spec.range_start.map(canonical) {
            Some(s) => {
                if !subnet.contains(s) {
                    return Err(format!("RangeStart {s} not in network {subnet}"));
                }
                s
            }
            None => first_host,
        };
        let end = match spec.range_end.map(canonical) {
            Some(e) => {
                if !subnet.contains(e) {
                    return Err(format!("RangeEnd {e} not in network {subnet}"));
                }
                e
            }
            // IPv4: the broadcast address is never handed out.
            None => from_u128(v4, if v4 { last_n - 1 } else { last_n }),
        };
        if to_u128(start) > to_u128(end) {
            return Err(format!("RangeStart {start} is after RangeEnd {end}"));
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    pub fn is_ipv4(&self) -> bool {
        self.subnet.is_ipv4()
    }

    /// Inside the subnet and between start and end, inclusive.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.is_ipv4()
            && self.subnet.contains(ip)
            && to_u128(ip) >= to_u128(self.start)
            && to_u128(ip) <= to_u128(self.end)
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }

    /// Addresses inside the range that are never handed out: the gateway,
    /// the network address and (IPv4) the broadcast address. The defaults
    /// never include the last two, but an explicit rangeStart/rangeEnd can.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip == self.gateway {
            return true;
        }
        let n = to_u128(ip);
        n == to_u128(self.subnet.network()) || (self.is_ipv4() && n == last_address(self.subnet))
    }

    /// How many addresses this range can hand out.
    pub fn capacity(&self) -> u128 {
        let size = (to_u128(self.end) - to_u128(self.start)).saturating_add(1);
        let reserved = self.reserved_in_range();
        size.saturating_sub(reserved)
    }

    fn reserved_in_range(&self) -> u128 {
        let v4 = self.is_ipv4();
        let net = to_u128(self.subnet.network());
        let mut candidates = vec![canonical(self.gateway), from_u128(v4, net)];
        if v4 {
            candidates.push(from_u128(v4, last_address(self.subnet)));
        }
        candidates.sort();
        candidates.dedup();
        candidates
            .into_iter()
            .filter(|ip| self.contains(*ip))
            .count() as u128
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The numerically last address of a subnet (the IPv4 broadcast address).
pub fn last_address(subnet: IpNet) -> u128 {
    let width = bits(subnet.addr);
    let host_bits = u32::from(width - subnet.prefix);
    let host_mask = if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    };
    to_u128(subnet.network()) | host_mask
}

/// A canonicalised range set: one or more ranges of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Validates every range, then the set: one family, no overlaps.
    pub fn canonicalize(specs: &[RangeSpec]) -> Result<RangeSet, String> {
        if specs.is_empty() {
            return Err("empty range set".into());
        }
        let ranges = specs
            .iter()
            .map(Range::canonicalize)
            .collect::<Result<Vec<_>, _>>()?;
        if ranges.iter().any(|r| r.is_ipv4() != ranges[0].is_ipv4()) {
            return Err("mixed address families".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!("subnets {a} and {b} overlap"));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn is_ipv4(&self) -> bool {
        self.0.first().is_some_and(Range::is_ipv4)
    }

    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// Whether `ip` may be handed out from this set.
    pub fn allocatable(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some_and(|r| !r.is_reserved(ip))
    }

    pub fn capacity(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.capacity()))
    }

    /// Every address of the set in round-robin order: starting right after
    /// `last` when the set contains it (so `last` itself comes last),
    /// otherwise from the first range's start. Reserved addresses are
    /// included; the caller skips them.
    pub fn round_robin(&self, last: Option<IpAddr>) -> RoundRobin<'_> {
        let start = last.and_then(|l| {
            self.0
                .iter()
                .position(|r| r.contains(l))
                .map(|i| (i, to_u128(canonical(l))))
        });
        let (range_idx, cur, pending_first) = match start {
            Some((i, l)) => (i, l, false),
            None => (
                0,
                self.0.first().map(|r| to_u128(r.start)).unwrap_or(0),
                true,
            ),
        };
        let total = self.0.iter().fold(0u128, |acc, r| {
            acc.saturating_add((to_u128(r.end) - to_u128(r.start)).saturating_add(1))
        });
        RoundRobin {
            set: self,
            range_idx,
            cur,
            pending_first,
            remaining: total,
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Iterator of [`RangeSet::round_robin`]: visits each address of the set once.
pub struct RoundRobin<'a> {
    set: &'a RangeSet,
    range_idx: usize,
    cur: u128,
    /// `cur` itself is the next address (fresh start at range 0's start).
    pending_first: bool,
    remaining: u128,
}

impl Iterator for RoundRobin<'_> {
    type Item = IpAddr;

    fn next(&mut self) -> Option<IpAddr> {
        if self.remaining == 0 || self.set.0.is_empty() {
            return None;
        }
        self.remaining -= 1;
        let v4 = self.set.is_ipv4();
        if self.pending_first {
            self.pending_first = false;
            return Some(from_u128(v4, self.cur));
        }
        let r = &self.set.0[self.range_idx];
        if self.cur >= to_u128(r.end) {
            self.range_idx = (self.range_idx + 1) % self.set.0.len();
            self.cur = to_u128(self.set.0[self.range_idx].start);
        } else {
            self.cur += 1;
        }
        Some(from_u128(v4, self.cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: Some(subnet.parse().expect("net")),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_ipv4() {
        let r = Range::canonicalize(&spec("10.1.2.0/24")).expect("valid");
        assert_eq!(r.start, ip("10.1.2.1"));
        assert_eq!(r.end, ip("10.1.2.254"));
        assert_eq!(r.gateway, ip("10.1.2.1"));
        assert_eq!(r.to_string(), "10.1.2.1-10.1.2.254");
        assert_eq!(r.capacity(), 253);
    }

    #[test]
    fn defaults_ipv6_end_is_last_address() {
        let r = Range::canonicalize(&spec("2001:db8:1::/120")).expect("valid");
        assert_eq!(r.start, ip("2001:db8:1::1"));
        assert_eq!(r.end, ip("2001:db8:1::ff"));
        assert_eq!(r.capacity(), 254);
        let big = Range::canonicalize(&spec("fd00::/64")).expect("valid");
        assert_eq!(big.end, ip("fd00::ffff:ffff:ffff:ffff"));
        let all = Range::canonicalize(&spec("::/0")).expect("valid");
        assert_eq!(all.end, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(all.capacity(), u128::MAX - 1);
    }

    #[test]
    fn validation_messages() {
        let e = |s: RangeSpec| Range::canonicalize(&s).expect_err("invalid");
        assert_eq!(
            e(spec("10.0.0.0/31")),
            "Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            e(spec("10.0.0.0/32")),
            "Network 10.0.0.0/32 too small to allocate from"
        );
        assert_eq!(
            e(spec("fd00::/127")),
            "Network fd00::/127 too small to allocate from"
        );
        assert_eq!(
            e(spec("fd00::/128")),
            "Network fd00::/128 too small to allocate from"
        );
        assert!(Range::canonicalize(&spec("10.0.0.0/30")).is_ok());
        assert_eq!(
            e(spec("10.1.2.3/24")),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0"
        );
        let mut s = spec("10.1.2.0/24");
        s.range_start = Some(ip("10.1.3.1"));
        assert_eq!(e(s), "RangeStart 10.1.3.1 not in network 10.1.2.0/24");
        let mut s = spec("10.1.2.0/24");
        s.range_end = Some(ip("10.1.3.1"));
        assert_eq!(e(s), "RangeEnd 10.1.3.1 not in network 10.1.2.0/24");
        let mut s = spec("10.1.2.0/24");
        s.range_start = Some(ip("10.1.2.100"));
        s.range_end = Some(ip("10.1.2.50"));
        assert!(e(s).contains("after RangeEnd"));
        assert_eq!(e(RangeSpec::default()), "subnet is required");
    }

    #[test]
    fn sets_reject_mixed_and_overlapping() {
        assert_eq!(
            RangeSet::canonicalize(&[]).expect_err("empty"),
            "empty range set"
        );
        assert_eq!(
            RangeSet::canonicalize(&[spec("10.0.0.0/24"), spec("fd00::/64")]).expect_err("mixed"),
            "mixed address families"
        );
        let e = RangeSet::canonicalize(&[spec("10.0.0.0/16"), spec("10.0.1.0/24")])
            .expect_err("overlap");
        assert_eq!(
            e,
            "subnets 10.0.0.1-10.0.255.254 and 10.0.1.1-10.0.1.254 overlap"
        );
        let ok =
            RangeSet::canonicalize(&[spec("10.0.0.0/24"), spec("10.0.1.0/24")]).expect("disjoint");
        assert_eq!(ok.to_string(), "10.0.0.1-10.0.0.254,10.0.1.1-10.0.1.254");
    }

    #[test]
    fn explicit_bounds_may_cover_network_and_broadcast_but_they_stay_reserved() {
        let mut s = spec("10.0.0.0/29");
        s.range_start = Some(ip("10.0.0.0"));
        s.range_end = Some(ip("10.0.0.7"));
        s.gateway = Some(ip("10.0.0.6"));
        let r = Range::canonicalize(&s).expect("valid");
        assert!(
            r.is_reserved(ip("10.0.0.0"))
                && r.is_reserved(ip("10.0.0.7"))
                && r.is_reserved(ip("10.0.0.6"))
        );
        assert!(!r.is_reserved(ip("10.0.0.1")));
        assert_eq!(r.capacity(), 5);
    }

    #[test]
    fn round_robin_visits_everything_once_starting_after_last() {
        let set = RangeSet::canonicalize(&[spec("10.0.0.0/29"), spec("10.0.1.0/29")]).expect("set");
        let fresh: Vec<String> = set.round_robin(None).map(|a| a.to_string()).collect();
        assert_eq!(fresh.first().map(String::as_str), Some("10.0.0.1"));
        assert_eq!(fresh.len(), 12);
        let after: Vec<String> = set
            .round_robin(Some(ip("10.0.0.6")))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(after[0], "10.0.1.1");
        assert_eq!(after.last().map(String::as_str), Some("10.0.0.6"));
        let mut sorted = after.clone();
        sorted.sort();
        let mut fresh_sorted = fresh.clone();
        fresh_sorted.sort();
        assert_eq!(sorted, fresh_sorted);
        // A last address outside the set means a fresh start.
        let other: Vec<IpAddr> = set.round_robin(Some(ip("192.168.0.1"))).take(1).collect();
        assert_eq!(other, vec![ip("10.0.0.1")]);
        // Wraps from the end of the last range to the first.
        let wrap: Vec<String> = set
            .round_robin(Some(ip("10.0.1.6")))
            .take(1)
            .map(|a| a.to_string())
            .collect();
        assert_eq!(wrap, ["10.0.0.1"]);
    }

    #[test]
    fn file_names_match_go_formatting() {
        assert_eq!(file_name(ip("10.1.2.2")), "10.1.2.2");
        assert_eq!(file_name(ip("2001:db8:1::2")), "2001:db8:1::2");
        assert_eq!(file_name(ip("2001:0DB8:0:0:1:0:0:1")), "2001:db8::1:0:0:1");
        assert_eq!(
            file_name(ip("2001:db8:0:1:1:1:1:1")),
            "2001:db8:0:1:1:1:1:1"
        );
        assert_eq!(file_name(ip("fd00::")), "fd00::");
        assert_eq!(file_name(ip("::ffff:10.0.0.1")), "10.0.0.1");
    }
}
