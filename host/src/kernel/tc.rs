//! Traffic control over netlink (qdiscs, filters, ifb links) for the
//! bandwidth capability. Real implementation: `System`; fake: `Fake`.

/// Traffic-control operations. (Filled in with the bandwidth capability.)
pub trait TrafficControl: Send + Sync {}

#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl TrafficControl for System {}

#[derive(Debug, Default, Clone)]
pub struct Fake;

impl TrafficControl for Fake {}
