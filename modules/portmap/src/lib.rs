//! portmap: hostPort forwarding for a chained attachment. This module owns
//! the schema (runtimeConfig `portMappings` with case-insensitive keys,
//! `snat`, `masqAll`, `markMasqBit`, `externalSetMarkChain`, `conditionsV4`,
//! `conditionsV6`, `backend`) and decides what to map; the host's `nat`
//! capability names, renders and applies the rules in one batch.

use std::net::IpAddr;

use serde_json::Value;
use wasm_cni_guest::nat::{FamilyMappings, NatBackend, NatOptions, NatSpec, PortMapping, Protocol};
use wasm_cni_guest::prelude::*;

/// Kubernetes uses bits 14 and 15, Calico 20-31: the reference picked 13.
const DEFAULT_MARK_BIT: u8 = 13;

pub struct Portmap;

/// The parsed configuration of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Conf {
    pub options: NatOptions,
    pub mappings: Vec<PortMapping>,
    pub conditions_v4: Vec<String>,
    pub conditions_v6: Vec<String>,
    /// `backend` unset and no nftables-syntax conditions: the backend is
    /// chosen on the node ([`settle_backend`]); `options.backend` holds
    /// iptables until then.
    pub auto_backend: bool,
    /// externalSetMarkChain or iptables-syntax conditions are set.
    pub iptables_only: bool,
}

fn cfg_err(msg: impl Into<String>, fix: impl Into<String>) -> CniError {
    CniError::config(msg).with_details(fix)
}

fn opt_bool(config: &Value, key: &str, default: bool) -> CniResultOf<bool> {
    match get_ci(config, key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(cfg_err(
            format!("{key} must be true or false, not {v}"),
            format!("set \"{key}\": true or false"),
        )),
    }
}

fn conditions(config: &Value, key: &str) -> CniResultOf<Vec<String>> {
    match get_ci(config, key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str().map(str::to_string).ok_or_else(|| {
                    cfg_err(
                        format!("{key} must be a list of strings"),
                        format!("e.g. \"{key}\": [\"!\", \"-s\", \"10.0.0.0/8\"]"),
                    )
                })
            })
            .collect(),
        Some(_) => Err(cfg_err(
            format!("{key} must be a list of strings"),
            format!("e.g. \"{key}\": [\"!\", \"-s\", \"10.0.0.0/8\"]"),
        )),
    }
}

/// iptables syntax starts with an option or a negation; anything else is nft.
fn is_iptables_syntax(c: &[String]) -> bool {
    c.first()
        .is_some_and(|t| t.starts_with('-') || t.starts_with('!'))
}

fn port(entry: &Value, key: &str, i: usize) -> CniResultOf<u16> {
    let v = get_ci(entry, key).ok_or_else(|| {
        cfg_err(
            format!("portMappings[{i}] has no {key}"),
            format!("set {key} (1-65535)"),
        )
    })?;
    v.as_u64()
        .filter(|p| (1..=65535).contains(p))
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            cfg_err(
                format!(
                    "Invalid {} number: {v} in portMappings[{i}]",
                    if key == "hostPort" {
                        "host port"
                    } else {
                        "container port"
                    }
                ),
                format!("{key} must be 1-65535"),
            )
        })
}

fn mappings(config: &Value) -> CniResultOf<Vec<PortMapping>> {
    let Some(list) = runtime_config(config, "portMappings") else {
        return Ok(Vec::new());
    };
    let Some(list) = list.as_array() else {
        if list.is_null() {
            return Ok(Vec::new());
        }
        return Err(cfg_err(
            "runtimeConfig.portMappings must be a list",
            "pass [{\"hostPort\": 8080, \"containerPort\": 80, \"protocol\": \"tcp\"}]",
        ));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        if !e.is_object() {
            return Err(cfg_err(
                format!("portMappings[{i}] is not an object"),
                "each mapping is {\"hostPort\": .., \"containerPort\": .., \"protocol\": ..}",
            ));
        }
        let protocol = match get_ci(e, "protocol")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some("sctp") => Protocol::Sctp,
            Some(p) => {
                return Err(cfg_err(
                    format!("unknown protocol {p:?} in portMappings[{i}]"),
                    "protocol must be tcp, udp or sctp",
                ))
            }
        };
        let host_ip = match get_ci(e, "hostIP").and_then(Value::as_str) {
            None | Some("") => None,
            Some(h) => Some(h.parse::<IpAddr>().map_err(|_| {
                cfg_err(
                    format!("invalid hostIP {h:?} in portMappings[{i}]"),
                    "hostIP must be an IP address or empty",
                )
            })?),
        };
        out.push(PortMapping {
            host_port: port(e, "hostPort", i)?,
            container_port: port(e, "containerPort", i)?,
            protocol,
            host_ip,
        });
    }
    Ok(out)
}

/// Parses and cross-checks the configuration as the reference does.
pub fn parse(config: &Value) -> CniResultOf<Conf> {
    let snat = opt_bool(config, "snat", true)?;
    let masq_all = opt_bool(config, "masqAll", false)?;
    let mark = match get_ci(config, "markMasqBit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|b| *b <= 31)
                .and_then(|b| u8::try_from(b).ok())
                .ok_or_else(|| {
                    cfg_err(
                        format!("MasqMarkBit must be between 0 and 31, not {v}"),
                        "set markMasqBit to 0-31 (default 13)",
                    )
                })?,
        ),
    };
    let external = match get_ci(config, "externalSetMarkChain") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(cfg_err(
                format!("externalSetMarkChain must be a chain name, not {v}"),
                "e.g. \"externalSetMarkChain\": \"KUBE-MARK-MASQ\"",
            ))
        }
    };
    if mark.is_some() && external.is_some() {
        return Err(cfg_err(
            "Cannot specify externalSetMarkChain and markMasqBit",
            "set only one of them",
        ));
    }
    let conditions_v4 = conditions(config, "conditionsV4")?;
    let conditions_v6 = conditions(config, "conditionsV6")?;
    let nft_only = [&conditions_v4, &conditions_v6]
        .iter()
        .any(|c| !c.is_empty() && !is_iptables_syntax(c));
    // markMasqBit is not iptables-only: upstream accepts and ignores it
    // with the nftables backend.
    let ipt_only = external.is_some()
        || [&conditions_v4, &conditions_v6]
            .iter()
            .any(|c| is_iptables_syntax(c));
    let mut auto_backend = false;
    let backend = match get_ci(config, "backend").and_then(Value::as_str) {
        None | Some("") => {
            if nft_only {
                NatBackend::Nftables
            } else {
                auto_backend = true;
                NatBackend::Iptables
            }
        }
        Some("iptables") => NatBackend::Iptables,
        Some("nftables") => NatBackend::Nftables,
        Some(b) => {
            return Err(cfg_err(
                format!("unknown backend {b:?}"),
                "backend must be \"iptables\" or \"nftables\"",
            ))
        }
    };
    match backend {
        NatBackend::Iptables if nft_only => {
            return Err(cfg_err(
                "conditionsV4/conditionsV6 are in nftables syntax but the backend is iptables",
                "write them as iptables matches or set \"backend\": \"nftables\"",
            ))
        }
        NatBackend::Nftables if ipt_only => return Err(nft_conflict()),
        _ => {}
    }
    Ok(Conf {
        auto_backend,
        iptables_only: ipt_only,
        options: NatOptions {
            backend,
            snat,
            masq_all,
            mark_masq_bit: mark.unwrap_or(DEFAULT_MARK_BIT),
            external_set_mark_chain: external,
        },
        mappings: mappings(config)?,
        conditions_v4,
        conditions_v6,
    })
}

fn nft_conflict() -> CniError {
    cfg_err(
        "externalSetMarkChain and iptables-syntax conditions need the iptables backend",
        "drop them or set \"backend\": \"iptables\"",
    )
}

/// Picks the backend of a configuration that leaves it unset, as upstream's
/// `ensureBackend`: iptables, unless it is unusable on this node and
/// nftables works (the host answers the probes; the choice is made here).
/// iptables-only options then refuse nftables, as upstream.
pub fn settle_backend<H: NatCaps>(host: &mut H, conf: &mut Conf) -> CniResultOf<()> {
    if conf.auto_backend {
        conf.options.backend = host.nat_default_backend();
        conf.auto_backend = false;
        if conf.options.backend == NatBackend::Nftables && conf.iptables_only {
            return Err(nft_conflict());
        }
    }
    Ok(())
}

/// The first IPv4 and IPv6 address of this attachment, as the reference
/// picks them: skip addresses on interfaces that are not CNI_IFNAME inside
/// the sandbox; addresses without an interface count.
pub fn container_ips(prev: &CniResult, ifname: &str) -> (Option<IpNet>, Option<IpNet>) {
    let (mut v4, mut v6) = (None, None);
    for ip in &prev.ips {
        if let Some(i) = ip.interface {
            if let Some(iface) = prev.interfaces.get(i as usize) {
                if iface.name != ifname || iface.sandbox.is_empty() {
                    continue;
                }
            }
        }
        let slot = if ip.address.is_ipv4() {
            &mut v4
        } else {
            &mut v6
        };
        if slot.is_none() {
            *slot = Some(ip.address);
        }
    }
    (v4, v6)
}

pub fn spec(conf: &Conf, prev: &CniResult, ifname: &str) -> NatSpec {
    let (v4, v6) = container_ips(prev, ifname);
    let families = [(v4, &conf.conditions_v4), (v6, &conf.conditions_v6)]
        .into_iter()
        .filter_map(|(ip, c)| {
            ip.map(|container| FamilyMappings {
                container,
                mappings: conf.mappings.clone(),
                conditions: c.clone(),
            })
        })
        .collect();
    NatSpec {
        options: conf.options.clone(),
        families,
    }
}

fn flush_udp<H: PortmapHost>(host: &mut H, conf: &Conf, spec: &NatSpec) {
    for f in &spec.families {
        for m in conf.mappings.iter().filter(|m| m.protocol == Protocol::Udp) {
            // Informative only, as in the reference: the rules are what matters.
            if let Err(e) = host.flush_udp_conntrack(m.host_port, !f.container.is_ipv4()) {
                host.log(
                    Level::Warn,
                    &format!(
                        "could not flush stale UDP conntrack entries for port {}: {e}",
                        m.host_port
                    ),
                );
            }
        }
    }
}

impl<H: PortmapHost> Plugin<H> for Portmap {
    const KIND: PluginKind = PluginKind::Portmap;

    fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
        let mut conf = parse(&inv.config)?;
        let prev = inv.prev_result.clone().ok_or_else(|| {
            cfg_err(
                "must be called as chained plugin",
                "portmap needs a prevResult: list it after an interface plugin in a conflist",
            )
        })?;
        if conf.mappings.is_empty() {
            return Ok(prev);
        }
        let spec = spec(&conf, &prev, &inv.ifname);
        if spec.families.is_empty() {
            host.log(
                Level::Warn,
                "prevResult has no container address on this interface; no port mapped",
            );
            return Ok(prev);
        }
        settle_backend(host, &mut conf)?;
        let spec = NatSpec {
            options: conf.options.clone(),
            ..spec
        };
        host.nat_apply(&spec)?;
        flush_udp(host, &conf, &spec);
        if conf.options.snat {
            if let Some(v4) = spec.families.iter().find(|f| f.container.is_ipv4()) {
                // Without it 127.0.0.1:hostPort cannot be DNATed to the pod.
                if let Err(e) = host.enable_route_localnet(v4.container.addr) {
                    host.log(
                        Level::Warn,
                        &format!("localhost hostPorts will not work: {e}"),
                    );
                }
            }
        }
        Ok(prev)
    }

    /// Removes by attachment, not by mapping: works with an empty
    /// runtimeConfig and a gone netns, and twice.
    ///
    /// A configuration ADD would refuse (a hostPort of 65536, a bad hostIP
    /// or protocol) does not stop DEL: the rules are found by attachment,
    /// in both backends when the configured one cannot be told.
    fn del(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let mut conf = match parse(&inv.config) {
            Ok(conf) => conf,
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!("invalid configuration ({}); removing this attachment's rules from both backends", e.msg),
                );
                // A node may have only one of the two: one failing is
                // expected, both failing is an error.
                let ipt = host.nat_remove(NatBackend::Iptables);
                let nft = host.nat_remove(NatBackend::Nftables);
                return match (ipt, nft) {
                    (Err(e), Err(_)) => Err(e),
                    (Err(e), Ok(())) | (Ok(()), Err(e)) => {
                        host.log(Level::Warn, &format!("removing port mappings: {}", e.msg));
                        Ok(())
                    }
                    (Ok(()), Ok(())) => Ok(()),
                };
            }
        };
        settle_backend(host, &mut conf)?;
        host.nat_remove(conf.options.backend)?;
        if let Some(prev) = &inv.prev_result {
            let spec = spec(&conf, prev, &inv.ifname);
            flush_udp(host, &conf, &spec);
        }
        Ok(())
    }

    fn check(host: &mut H, inv: &Invocation) -> CniResultOf<()> {
        let mut conf = parse(&inv.config)?;
        let prev = inv.prev_result.as_ref().ok_or_else(|| {
            cfg_err(
                "Required prevResult missing",
                "CHECK needs the prevResult of the ADD",
            )
        })?;
        if conf.mappings.is_empty() {
            return Ok(());
        }
        settle_backend(host, &mut conf)?;
        let spec = spec(&conf, prev, &inv.ifname);
        if spec.families.is_empty() {
            return Ok(());
        }
        host.nat_check(&spec)
    }

    fn gc(host: &mut H, inv: &Invocation, valid: &[Attachment]) -> CniResultOf<()> {
        let mut conf = parse(&inv.config)?;
        settle_backend(host, &mut conf)?;
        let ids: Vec<String> = valid.iter().map(|a| a.container_id.clone()).collect();
        host.nat_gc(conf.options.backend, &ids)
    }
}

wasm_cni_guest::export_plugin!(Portmap);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasm_cni_guest::testing::FakeHost;

    fn prev() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    sandbox: "/var/run/netns/x".into(),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.0.0.1/24".parse().expect("net"),
                    gateway: None,
                    interface: Some(0),
                },
                IpConfig {
                    address: "10.0.0.2/24".parse().expect("net"),
                    gateway: None,
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::2/64".parse().expect("net"),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            ..Default::default()
        }
    }

    fn inv(extra: Value) -> Invocation {
        let mut c = json!({"cniVersion": "1.0.0", "name": "pm", "type": "portmap"});
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let mut i = Invocation::new("c1", "eth0", c);
        i.prev_result = Some(prev());
        i
    }

    #[test]
    fn add_maps_both_families_with_pascal_case_keys() {
        let mut h = FakeHost::new();
        let i = inv(
            json!({"RuntimeConfig": {"PortMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": ""}, {"hostPort": 53, "containerPort": 53, "protocol": "udp"}]}}),
        );
        let r = Portmap::add(&mut h, &i).expect("add");
        assert_eq!(r, prev(), "prevResult passes through");
        let s = h.nat.applied.clone().expect("applied");
        assert_eq!(
            s.options,
            NatOptions {
                backend: NatBackend::Iptables,
                snat: true,
                masq_all: false,
                mark_masq_bit: 13,
                external_set_mark_chain: None
            }
        );
        assert_eq!(s.families.len(), 2);
        assert_eq!(
            s.families[0].container.to_string(),
            "10.0.0.2/24",
            "the host-side address is skipped"
        );
        assert_eq!(s.families[1].container.to_string(), "fd00::2/64");
        assert_eq!(
            s.families[0].mappings[0],
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None
            }
        );
        assert_eq!(
            h.nat.calls,
            [
                "apply",
                "conntrack 53 v4",
                "conntrack 53 v6",
                "route_localnet 10.0.0.2"
            ]
        );
        Portmap::check(&mut h, &i).expect("check");
    }

    #[test]
    fn add_without_mappings_or_prev_result() {
        let mut h = FakeHost::new();
        assert_eq!(Portmap::add(&mut h, &inv(json!({}))).expect("add"), prev());
        assert!(h.nat.calls.is_empty());
        let mut i =
            inv(json!({"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 1}]}}));
        i.prev_result = None;
        let e = Portmap::add(&mut h, &i).expect_err("needs prevResult");
        assert!(e.msg.contains("chained"), "{e}");
    }

    #[test]
    fn del_works_without_runtime_config() {
        let mut h = FakeHost::new();
        let mut i = inv(json!({"backend": "nftables"}));
        i.prev_result = None;
        Portmap::del(&mut h, &i).expect("del");
        Portmap::del(&mut h, &i).expect("del twice");
        assert_eq!(h.nat.calls, ["remove Nftables", "remove Nftables"]);
    }

    #[test]
    fn del_goes_on_with_a_configuration_add_refuses() {
        for bad in [
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 65536, "containerPort": 80}]}}),
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "nope"}]}}),
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}}),
            json!({"backend": "pf"}),
        ] {
            let mut h = FakeHost::new();
            assert!(Portmap::add(&mut h, &inv(bad.clone())).is_err(), "{bad}");
            Portmap::del(&mut h, &inv(bad.clone())).expect("del");
            assert_eq!(h.nat.calls, ["remove Iptables", "remove Nftables"], "{bad}");
        }
    }

    #[test]
    fn options_and_backend_selection() {
        let c = parse(&json!({"snat": false, "masqAll": true, "externalSetMarkChain": "KUBE-MARK-MASQ", "conditionsV4": ["!", "-s", "10.9.0.0/16"]})).expect("parse");
        assert_eq!(c.options.backend, NatBackend::Iptables);
        assert!(!c.options.snat && c.options.masq_all);
        assert_eq!(
            c.options.external_set_mark_chain.as_deref(),
            Some("KUBE-MARK-MASQ")
        );
        let c =
            parse(&json!({"conditionsV4": ["ip", "saddr", "!=", "10.9.0.0/16"]})).expect("parse");
        assert_eq!(
            c.options.backend,
            NatBackend::Nftables,
            "nft syntax selects nftables"
        );
        let bad = [
            json!({"markMasqBit": 14, "externalSetMarkChain": "X"}),
            json!({"markMasqBit": 32}),
            json!({"backend": "pf"}),
            json!({"backend": "nftables", "externalSetMarkChain": "X"}),
            json!({"backend": "iptables", "conditionsV6": ["ip6", "saddr", "fd00::1"]}),
            json!({"snat": "yes"}),
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}}),
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 70000}]}}),
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}}),
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "nope"}]}}),
        ];
        for b in bad {
            let e = parse(&b).expect_err(&b.to_string());
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{b}: {e}");
            assert!(!e.details.is_empty(), "{b}: says what to fix");
        }
    }

    /// Upstream accepts markMasqBit with the nftables backend and ignores it.
    #[test]
    fn mark_masq_bit_is_ignored_by_nftables() {
        let c = parse(&json!({"backend": "nftables", "markMasqBit": 3})).expect("parse");
        assert_eq!(c.options.backend, NatBackend::Nftables);
    }

    /// Backend unset: iptables while it is usable; nftables when only
    /// nftables works (upstream's ensureBackend); iptables-only options then
    /// refuse it.
    #[test]
    fn unset_backend_is_chosen_on_the_node() {
        let maps =
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80}]}});
        let applied = |unsupported: Vec<NatBackend>, extra: Value| {
            let mut h = FakeHost::new();
            h.nat.unsupported = unsupported;
            let mut c = maps.clone();
            if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            Portmap::add(&mut h, &inv(c))
                .map(|_| h.nat.applied.clone().expect("applied").options.backend)
        };
        assert_eq!(applied(vec![], json!({})), Ok(NatBackend::Iptables));
        assert_eq!(
            applied(vec![NatBackend::Iptables], json!({})),
            Ok(NatBackend::Nftables)
        );
        assert_eq!(
            applied(vec![NatBackend::Iptables, NatBackend::Nftables], json!({})),
            Ok(NatBackend::Iptables),
            "neither: iptables, whose error ADD then reports"
        );
        assert_eq!(
            applied(vec![NatBackend::Iptables], json!({"backend": "iptables"})),
            Ok(NatBackend::Iptables),
            "a configured backend is never second-guessed"
        );
        let e = applied(
            vec![NatBackend::Iptables],
            json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}),
        )
        .expect_err("iptables-only option on an nftables-only node");
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
        // DEL and GC go to the chosen backend too.
        let mut h = FakeHost::new();
        h.nat.unsupported = vec![NatBackend::Iptables];
        Portmap::del(&mut h, &inv(maps.clone())).expect("del");
        Portmap::gc(&mut h, &inv(json!({})), &[]).expect("gc");
        assert_eq!(h.nat.calls, ["remove Nftables", "gc Nftables "]);
    }

    #[test]
    fn a_failed_apply_is_the_add_error() {
        let mut h = FakeHost::new();
        h.nat.fail_next = Some(CniError::internal("boom"));
        let e = Portmap::add(
            &mut h,
            &inv(
                json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80}]}}),
            ),
        )
        .expect_err("fails");
        assert_eq!(e.msg, "boom");
    }

    #[test]
    fn gc_passes_valid_container_ids() {
        let mut h = FakeHost::new();
        let valid = [
            Attachment {
                container_id: "a".into(),
                ifname: "eth0".into(),
            },
            Attachment {
                container_id: "b".into(),
                ifname: "eth0".into(),
            },
        ];
        Portmap::gc(&mut h, &inv(json!({})), &valid).expect("gc");
        assert_eq!(h.nat.calls, ["gc Iptables a,b"]);
    }
}
