//! bandwidth: shapes a pod's traffic with tbf, as the reference plugin.
//!
//! * ingress (into the pod): a root tbf on the pod's host-side veth;
//! * egress (out of the pod): an ifb (named by the host, `bwp…`), an ingress
//!   qdisc on the host veth redirecting everything to it, a root tbf on it.
//!
//! Rates are bits/s and bursts bits, from top-level `ingressRate`,
//! `ingressBurst`, `egressRate`, `egressBurst` or from runtimeConfig
//! `bandwidth` (keys matched case-insensitively: containerd sends PascalCase).
//! The tbf parameters are the reference's: rate/8 bytes/s, burst/8 bytes,
//! latency 25 ms, limit = rate × latency + burst (32-bit, wrapping as the
//! reference does for the huge bursts Kubernetes runtimes send).

use serde_json::Value;
use wasm_cni_guest::prelude::*;
use wasm_cni_guest::tc::{Target, Tbf, TcAttachment};

pub struct Bandwidth;

const KEYS: [&str; 4] = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"];
/// The reference's fixed tbf latency.
const LATENCY_USEC: f64 = 25_000.0;

/// Rates and bursts of one attachment, in bits/s and bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

impl Limits {
    fn is_zero(&self) -> bool {
        *self == Limits::default()
    }

    fn ingress(&self) -> Option<Tbf> {
        (self.ingress_rate > 0 && self.ingress_burst > 0)
            .then(|| tbf(self.ingress_rate, self.ingress_burst))
    }

    fn egress(&self) -> Option<Tbf> {
        (self.egress_rate > 0 && self.egress_burst > 0)
            .then(|| tbf(self.egress_rate, self.egress_burst))
    }
}

/// Go's `uint32(f)` on amd64 (truncate to int64, keep the low 32 bits), which
/// the reference's limit arithmetic goes through.
fn go_u32(f: f64) -> u32 {
    if f.is_finite() && f.abs() < 9.2e18 {
        (f as i64) as u32
    } else {
        0
    }
}

/// The reference's tbf for a rate in bits/s and a burst in bits.
pub fn tbf(rate_bits: u64, burst_bits: u64) -> Tbf {
    let rate = rate_bits / 8;
    // Validated below 2^32 - 1 bytes.
    let burst = u32::try_from(burst_bits / 8).unwrap_or(u32::MAX);
    let limit = go_u32(rate as f64 * LATENCY_USEC / 1_000_000.0).wrapping_add(burst);
    Tbf { rate, burst, limit }
}

fn number(section: &str, key: &str, v: &Value) -> CniResultOf<u64> {
    let bad = || {
        CniError::config(format!("invalid {section}{key}")).with_details(format!(
            "{v} is not a whole number ≥ 0 (rates are bits per second, bursts bits)"
        ))
    };
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(u),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Ok(f as u64),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn read_limits(section: &str, obj: &Value) -> CniResultOf<Limits> {
    let get = |key: &str| {
        get_ci(obj, key)
            .map(|v| number(section, key, v))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Limits {
        ingress_rate: get(KEYS[0])?,
        ingress_burst: get(KEYS[1])?,
        egress_rate: get(KEYS[2])?,
        egress_burst: get(KEYS[3])?,
    })
}

fn validate(dir: &str, rate: u64, burst: u64) -> CniResultOf<()> {
    if rate != 0 && burst == 0 {
        return Err(
            CniError::config(format!("{dir}Rate is set but {dir}Burst is not")).with_details(
                format!("if rate is set, burst must also be set: add {dir}Burst (bits)"),
            ),
        );
    }
    if rate == 0 && burst != 0 {
        return Err(
            CniError::config(format!("{dir}Burst is set but {dir}Rate is not")).with_details(
                format!("if burst is set, rate must also be set: add {dir}Rate (bits per second)"),
            ),
        );
    }
    if burst / 8 >= u64::from(u32::MAX) {
        return Err(CniError::config(format!("{dir}Burst {burst} is too large"))
            .with_details("burst cannot be more than 4GB: it must be below 34359738360 bits"));
    }
    if rate != 0 && rate < 8 {
        return Err(
            CniError::config(format!("{dir}Rate {rate} is too small")).with_details(
                "the kernel shapes in bytes per second: the rate must be at least 8 bits/s",
            ),
        );
    }
    Ok(())
}

/// The limits of this invocation: top-level keys if any is present (as the
/// reference, which then ignores runtimeConfig), else runtimeConfig.bandwidth.
pub fn limits(config: &Value) -> CniResultOf<Limits> {
    let l = if KEYS.iter().any(|k| get_ci(config, k).is_some()) {
        read_limits("", config)?
    } else {
        match runtime_config(config, "bandwidth") {
            Some(bw) if bw.is_object() => read_limits("runtimeConfig.bandwidth.", bw)?,
            Some(Value::Null) | None => Limits::default(),
            Some(other) => return Err(CniError::config("invalid runtimeConfig.bandwidth").with_details(format!("expected an object with ingressRate, ingressBurst, egressRate, egressBurst; got {other}"))),
        }
    };
    validate("ingress", l.ingress_rate, l.ingress_burst)?;
    validate("egress", l.egress_rate, l.egress_burst)?;
    Ok(l)
}

fn prev(inv: &Invocation) -> CniResultOf<&CniResult> {
    inv.prev_result.as_ref().ok_or_else(|| {
        CniError::config("bandwidth must be called as a chained plugin").with_details("there is no prevResult: put bandwidth after an interface plugin (bridge, ptp) in a conflist")
    })
}

/// Opens the attachment through the prevResult interface without a sandbox
/// that the host accepts as CNI_IFNAME's veth peer.
fn open<H: BandwidthHost>(
    host: &mut H,
    inv: &Invocation,
    prev: &CniResult,
) -> CniResultOf<H::Attachment> {
    let candidates: Vec<&str> = prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.is_empty() && !i.name.is_empty())
        .map(|i| i.name.as_str())
        .collect();
    if candidates.is_empty() {
        return Err(CniError::config("prevResult has no host-side interface").with_details(format!(
            "bandwidth shapes the host end of {}'s veth, which the main plugin must report in prevResult.interfaces with no sandbox (bridge and ptp do; macvlan/ipvlan have none)",
            inv.ifname
        )));
    }
    let mut refusals = Vec::new();
    for name in &candidates {
        match host.tc_open(name) {
            Ok(a) => return Ok(a),
            // Not this one (a bridge, say): try the next.
            Err(e) if e.code == code::INVALID_NETWORK_CONFIG => {
                refusals.push(format!("{}: {}", e.msg, e.details))
            }
            Err(e) => return Err(e),
        }
    }
    Err(CniError::config(format!(
        "no veth peer of {} found among the host interfaces of prevResult",
        inv.ifname
    ))
    .with_details(refusals.join("; ")))
}

fn check_tbf(
    a: &impl TcAttachment,
    host: &impl BandwidthHost,
    target: Target,
    want: Tbf,
    what: &str,
    link: &str,
) -> CniResultOf<()> {
    let changed = |d: String| {
        CniError::internal(format!("{what} shaping on {link} was changed or removed"))
            .with_details(d)
    };
    let Some(got) = a.tbf(target)? else {
        return Err(changed(
            "there is no root tbf qdisc; run DEL and ADD again".into(),
        ));
    };
    let ticks = host.buffer_ticks(want.rate, want.burst);
    if got.rate != want.rate {
        return Err(changed(format!(
            "tbf rate is {} bytes/s, want {}",
            got.rate, want.rate
        )));
    }
    if got.limit != want.limit {
        return Err(changed(format!(
            "tbf limit is {} bytes, want {}",
            got.limit, want.limit
        )));
    }
    if got.buffer_ticks != ticks {
        return Err(changed(format!(
            "tbf burst buffer is {} ticks, want {ticks} ({} bytes)",
            got.buffer_ticks, want.burst
        )));
    }
    Ok(())
}

/// The versions upstream's bandwidth supports (`VersionsStartingFrom("0.3.0")`):
/// it is a chained plugin, and chaining (prevResult) came with 0.3.0.
const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// ADD and CHECK of a 0.1.0/0.2.0 configuration fail as upstream's skel
/// fails them (code 1, its text). DEL goes on: it removes by name only.
fn supported_version(inv: &Invocation) -> CniResultOf<()> {
    if matches!(inv.cni_version.as_str(), "0.1.0" | "0.2.0") {
        let list: Vec<String> = SUPPORTED_VERSIONS
            .iter()
            .map(|v| format!("{v:?}"))
            .collect();
        return Err(
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(
                format!(
                    "config is {:?}, plugin supports [{}]",
                    inv.cni_version,
                    list.join(" ")
                ),
            ),
        );
    }
    Ok(())
}

impl<H: BandwidthHost> Plugin<H> for Bandwidth {
    const KIND: PluginKind = PluginKind::Bandwidth;

    fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
        supported_version(inv)?;
        let l = limits(&inv.config)?;
        if l.is_zero() {
            return Ok(inv.prev_result.clone().unwrap_or_default());
        }
        let prev = prev(inv)?;
        let a = open(host, inv, prev)?;
        let mut result = prev.clone();
        if let Some(t) = l.ingress() {
            a.add_tbf(Target::HostLink, t)?;
        }
        if let Some(t) = l.egress() {
            let ifb = a.add_ifb()?;
            result.interfaces.push(Interface {
                name: ifb.name,
                mac: ifb.mac,
                ..Default::default()
            });
            a.add_redirect()?;
            a.add_tbf(Target::Ifb, t)?;
        }
        Ok(result)
    }

    fn del(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        limits(&inv.config)?;
        // The ifb carries the egress tbf; it is found by name, netns or not.
        host.del_ifb()?;
        // The host veth's qdiscs go with the veth; clear them now when it is
        // still there so a DEL leaves nothing of ours behind.
        let (Some(prev), false) = (inv.prev_result.as_ref(), inv.netns.is_empty()) else {
            return Ok(());
        };
        if !prev.interfaces.iter().any(|i| i.sandbox.is_empty()) {
            return Ok(());
        }
        match open(host, inv, prev) {
            Ok(a) => a.clear(),
            Err(e)
                if e.code == code::UNKNOWN_CONTAINER || e.code == code::INVALID_NETWORK_CONFIG =>
            {
                host.log(Level::Debug, &format!("host link not cleared: {e}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn check(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        supported_version(inv)?;
        let l = limits(&inv.config)?;
        let prev = prev(inv)?;
        let a = open(host, inv, prev)?;
        let link = a.host_link().name;
        if let Some(t) = l.ingress() {
            check_tbf(&a, host, Target::HostLink, t, "ingress", &link)?;
        }
        if let Some(t) = l.egress() {
            let ifb = host.ifb_name(&inv.container_id);
            if a.ifb()?.is_none() {
                return Err(
                    CniError::internal(format!("egress shaping: ifb {ifb} is missing"))
                        .with_details("run DEL and ADD again"),
                );
            }
            check_tbf(&a, host, Target::Ifb, t, "egress", &ifb)?;
            if !a.redirect()? {
                return Err(CniError::internal(format!("egress shaping: {link} no longer redirects to {ifb}")).with_details("the ingress qdisc or its mirred filter was changed or removed; run DEL and ADD again"));
            }
        }
        Ok(())
    }

    fn gc(host: &mut H, _inv: &Invocation, valid: &[Attachment]) -> CniResultOf<()> {
        let keep: Vec<String> = valid
            .iter()
            .map(|a| host.ifb_name(&a.container_id))
            .collect();
        let mut first_error = None;
        for name in host.ifbs()? {
            if keep.contains(&name) {
                continue;
            }
            if let Err(e) = host.gc_ifb(&name) {
                host.log(Level::Warn, &format!("GC could not delete {name}: {e}"));
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

wasm_cni_guest::export_plugin!(Bandwidth);

#[cfg(test)]
mod tests;
