//! Packet filtering and NAT (iptables / nftables) for the portmap and
//! masquerade capabilities. Real implementation: `System`; recording fake:
//! `Fake`. Every call is one batch (one transaction) and bounded in time.

/// Firewall operations. (Filled in with the portmap capability.)
pub trait Firewall: Send + Sync {}

/// The real firewall of the host network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Firewall for System {}

/// A recording fake for unprivileged tests.
#[derive(Debug, Default, Clone)]
pub struct Fake;

impl Firewall for Fake {}
