//! The tbf qdisc's netlink encoding (`struct tc_tbf_qopt` in TCA_TBF_PARMS,
//! TCA_TBF_RATE64) and the scheduler clock conversion, done the way the
//! reference plugin's netlink library does it so the kernel ends up with the
//! same values, including the 32-bit wrap-arounds of huge bursts.

use super::{Tbf, TbfState};

pub const TCA_TBF_PARMS: u16 = 1;
pub const TCA_TBF_RATE64: u16 = 4;
/// `sizeof(struct tc_tbf_qopt)`: two 12-byte `tc_ratespec`s and three u32.
pub const QOPT_LEN: usize = 36;
/// Ticks per microsecond on every current kernel (`/proc/net/psched`
/// `000003e8 00000040 000f4240 ...`: 1000 ns per µs / 64 ns per tick).
pub const DEFAULT_TICK_IN_USEC: f64 = 15.625;
const TIME_UNITS_PER_SEC: f64 = 1_000_000.0;

/// Go's `uint32(f)` on amd64: truncate to int64, keep the low 32 bits
/// (NaN, infinities and out-of-range values give 0). The reference's values
/// for huge bursts depend on this wrap, so it is reproduced, not fixed.
pub fn go_u32(f: f64) -> u32 {
    if f.is_finite() && f.abs() < 9.2e18 {
        (f as i64) as u32
    } else {
        0
    }
}

/// Ticks per microsecond from `/proc/net/psched` (four hex words).
pub fn tick_in_usec(psched: &str) -> Option<f64> {
    let mut v = [0f64; 3];
    let mut words = psched.split_whitespace();
    for slot in &mut v {
        *slot = u32::from_str_radix(words.next()?, 16).ok()? as f64;
    }
    let (mut t2us, us2t, clock_res) = (v[0], v[1], v[2]);
    if us2t == 0.0 {
        return None;
    }
    // Old kernels with a 1 GHz clock report the factors this way round.
    if clock_res == 1_000_000_000.0 {
        t2us = us2t;
    }
    Some(t2us / us2t * (clock_res / TIME_UNITS_PER_SEC))
}

/// The buffer for `burst` bytes at `rate` bytes/s: the time to send the
/// burst, in microseconds, then in scheduler ticks.
pub fn buffer_ticks(rate: u64, burst: u32, tick_in_usec: f64) -> u32 {
    let usec = go_u32(f64::from(burst) * TIME_UNITS_PER_SEC / rate as f64);
    go_u32(f64::from(usec) * tick_in_usec)
}

/// TCA_OPTIONS attributes of a tbf: (kind, value) pairs.
pub fn encode(t: &Tbf, buffer: u32) -> Vec<(u16, Vec<u8>)> {
    let mut q = vec![0u8; QOPT_LEN];
    // rate.rate is the last field of the first tc_ratespec; RATE64 carries
    // rates that do not fit.
    let rate32 = u32::try_from(t.rate).unwrap_or(u32::MAX);
    q[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // peakrate (12..24) stays zero: no peak rate.
    q[24..28].copy_from_slice(&t.limit.to_ne_bytes());
    q[28..32].copy_from_slice(&buffer.to_ne_bytes());
    // mtu (32..36) is zero, as the reference sends it.
    let mut out = vec![(TCA_TBF_PARMS, q)];
    if t.rate > u64::from(u32::MAX) {
        out.push((TCA_TBF_RATE64, t.rate.to_ne_bytes().to_vec()));
    }
    out
}

/// Parses the nested TCA_OPTIONS value of a tbf qdisc.
pub fn decode(options: &[u8]) -> Option<TbfState> {
    let mut rate64 = None;
    let mut parms = None;
    let mut rest = options;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        let value = &rest[4..len];
        match kind {
            TCA_TBF_PARMS if value.len() >= QOPT_LEN => parms = Some(value),
            TCA_TBF_RATE64 if value.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&value[..8]);
                rate64 = Some(u64::from_ne_bytes(b));
            }
            _ => {}
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    let p = parms?;
    let word = |o: usize| u32::from_ne_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
    Some(TbfState {
        rate: rate64.unwrap_or(u64::from(word(8))),
        limit: word(24),
        buffer: word(28),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psched_factor() {
        assert_eq!(
            tick_in_usec("000003e8 00000040 000f4240 3b9aca00\n"),
            Some(15.625)
        );
        // Old 1 GHz clock layout.
        assert_eq!(
            tick_in_usec("00000001 00000001 3b9aca00 3b9aca00"),
            Some(1000.0)
        );
        assert_eq!(tick_in_usec("junk"), None);
    }

    /// Values read back from the kernel after the reference plugin ran
    /// (20 Mbit/s with containerd's and CRI-O's bursts).
    #[test]
    fn golden_buffers_wrap_like_the_reference() {
        // CRI-O: 34359738359 bits -> 4294967294 bytes; 1717986917 µs -> wraps.
        assert_eq!(
            buffer_ticks(2_500_000, 4_294_967_294, 15.625),
            1_073_741_802
        );
        // containerd: 4294967295 bits -> 536870911 bytes.
        assert_eq!(
            buffer_ticks(2_500_000, 536_870_911, 15.625),
            go_u32(214_748_364.0 * 15.625)
        );
        // The reference unit test: 8 bits/s with an 8-bit burst.
        assert_eq!(buffer_ticks(1, 1, 15.625), 15_625_000);
        assert_eq!(go_u32(f64::INFINITY), 0);
        assert_eq!(go_u32(4_294_967_296.0 + 5.0), 5);
    }

    #[test]
    fn encode_decode_round_trip() {
        for rate in [1u64, 2_500_000, 5_000_000_000] {
            let t = Tbf {
                rate,
                burst: 1000,
                limit: 62_500,
            };
            let mut bytes = Vec::new();
            for (kind, value) in encode(&t, 777) {
                let len = 4 + value.len();
                bytes.extend_from_slice(&(len as u16).to_ne_bytes());
                bytes.extend_from_slice(&kind.to_ne_bytes());
                bytes.extend_from_slice(&value);
                bytes.resize((bytes.len() + 3) & !3, 0);
            }
            assert_eq!(
                decode(&bytes),
                Some(TbfState {
                    rate,
                    limit: 62_500,
                    buffer: 777
                })
            );
        }
    }
}
