//! # wasm-cni guest SDK
//!
//! Write a CNI plugin as plain Rust, build it for `wasm32-wasip2`, drop the
//! `.wasm` into the CNI bin dir and run `wasm-cni install`.
//!
//! A module implements [`Plugin`] for the hosts of its kind and exports it
//! with [`export_plugin!`]. The host is reached only through the `host`
//! argument, so the same logic runs natively under `cargo test` against
//! [`testing`]'s fake host (feature `testing`).
//!
//! ```
//! use wasm_cni_guest::prelude::*;
//!
//! /// Brings `lo` up in the container.
//! struct Lo;
//!
//! impl<H: InterfaceHost> Plugin<H> for Lo {
//!     const KIND: PluginKind = PluginKind::Interface;
//!
//!     fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult> {
//!         let ns = host.container_netns()?;
//!         ns.set_link_up("lo", true)?;
//!         host.log(Level::Info, &format!("lo up for {}", inv.container_id));
//!         Ok(CniResult::default())
//!     }
//! }
//!
//! wasm_cni_guest::export_plugin!(Lo);
//!
//! # #[cfg(feature = "testing")]
//! # fn main() {
//! use wasm_cni_guest::testing::FakeHost;
//! let mut host = FakeHost::new();
//! host.netns.add_link("lo", false);
//! let inv = Invocation::new("c1", "eth0", serde_json::json!({"cniVersion": "1.0.0", "name": "n"}));
//! Lo::add(&mut host, &inv).unwrap();
//! assert!(host.netns.link_state("lo").unwrap().up);
//! # }
//! # #[cfg(not(feature = "testing"))]
//! # fn main() {}
//! ```

pub mod config;
pub mod host_net;
pub mod nat;
pub mod tc;
pub mod types;

#[cfg(feature = "testing")]
pub mod testing;

mod wasm_host;

use std::path::Path;

pub use types::*;

/// Everything a module usually needs.
pub mod prelude {
    pub use crate::config::{decode, get_ci, normalize_keys, runtime_config};
    pub use crate::host_net::HostNetCaps;
    pub use crate::nat::NatCaps;
    pub use crate::tc::TcCaps;
    pub use crate::types::*;
    pub use crate::{
        BandwidthHost, InterfaceHost, IpamCommand, IpamHost, Link, Netns, Plugin, PortmapHost,
    };
}

/// A link in the container's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
}

/// The container network namespace of this invocation.
pub trait Netns {
    /// The namespace path, for a result's `sandbox`.
    fn path(&self) -> String;
    fn link(&self, name: &str) -> CniResultOf<Option<Link>>;
    fn set_link_up(&self, name: &str, up: bool) -> CniResultOf<()>;
    fn addresses(&self, link: &str) -> CniResultOf<Vec<IpNet>>;
    fn add_address(&self, link: &str, addr: IpNet) -> CniResultOf<()>;
    fn del_address(&self, link: &str, addr: IpNet) -> CniResultOf<()>;
    fn routes(&self, link: &str) -> CniResultOf<Vec<Route>>;
    /// Adds a route beside any other to the same destination (only an
    /// identical one is refused), as the reference's `RouteAddEcmp`.
    fn add_route(&self, link: &str, route: &Route) -> CniResultOf<()>;
    /// As `add_route`, with `src` (an address of `link`) as the route's
    /// preferred source, as upstream ptp's container routes.
    fn add_route_from(&self, link: &str, route: &Route, src: std::net::IpAddr) -> CniResultOf<()>;
}

/// The command an interface module delegates to its IPAM plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpamCommand {
    Add,
    Del,
    Check,
    Status,
    /// GC: the IPAM plugin gets this invocation's configuration, with the
    /// runtime's `cni.dev/valid-attachments`, and releases the rest.
    Gc,
}

/// Capabilities of interface modules (loopback, bridge, ptp).
pub trait InterfaceHost: host_net::HostNetCaps {
    type Netns: Netns;

    /// Opens CNI_NETNS. Code 3 when it is gone, 4 when there is none.
    fn container_netns(&mut self) -> CniResultOf<Self::Netns>;
    /// Runs the network's `ipam.type` plugin; `Some` result for `Add` only.
    fn ipam(&mut self, command: IpamCommand) -> CniResultOf<Option<CniResult>>;
    fn log(&self, level: Level, message: &str);
}

/// The state directory's files, name and content (see `IpamHost::state_files`).
pub type StateFiles = Vec<(String, Vec<u8>)>;

/// Capabilities of IPAM modules.
pub trait IpamHost {
    /// This network's state directory. The host holds its `lock` for the call.
    fn state_dir(&self) -> &Path;
    /// The text of the file named by the network's `ipam.resolvConf`, read by
    /// the host; `None` when the configuration names none.
    fn resolv_conf(&self) -> CniResultOf<Option<String>>;
    fn log(&self, level: Level, message: &str);
    /// Every regular file of at most 132 KiB in the state directory with its
    /// content, read by the host in one call (a sandbox call per file open
    /// and read adds up when a module looks at every allocation). `None`
    /// where the host offers no bulk read: read the directory instead.
    fn state_files(&self) -> CniResultOf<Option<StateFiles>> {
        Ok(None)
    }
    /// Creates `name` in the state directory holding `content`, atomically
    /// (whole or not at all, even if the call is killed); `Some(false)` when
    /// the name is taken. `None` where the host offers no atomic create:
    /// create the file yourself.
    fn state_create_exclusive(&self, _name: &str, _content: &[u8]) -> CniResultOf<Option<bool>> {
        Ok(None)
    }
}

/// A plugin module: its kind, its version, and what it does for each CNI
/// command on a host `H`. `H` is the SDK's real host inside a module and a
/// [`testing`] fake in unit tests, so implement it for every host of the
/// kind's capabilities: `impl<H: InterfaceHost> Plugin<H> for Bridge`
/// (`IpamHost`, `PortmapHost`, `BandwidthHost` for the other kinds). Only
/// `add` is required; the other commands default to success, which is what
/// the spec asks of a plugin with nothing to do. Export it with
/// [`export_plugin!`].
pub trait Plugin<H> {
    /// The kind the module declares: the host grants each kind its own
    /// capabilities, and refuses a module importing others.
    const KIND: PluginKind;
    /// The module's version, shown by `wasm-cni inspect`.
    const VERSION: &'static str = "0.1.0";

    fn add(host: &mut H, inv: &Invocation) -> CniResultOf<CniResult>;

    fn del(_host: &mut H, _inv: &Invocation) -> CniResultOf<()> {
        Ok(())
    }

    fn check(_host: &mut H, _inv: &Invocation) -> CniResultOf<()> {
        Ok(())
    }

    fn gc(_host: &mut H, _inv: &Invocation, _valid: &[Attachment]) -> CniResultOf<()> {
        Ok(())
    }

    fn status(_host: &mut H, _inv: &Invocation) -> CniResultOf<()> {
        Ok(())
    }
}

/// Capabilities of the portmap module: NAT rules of this attachment.
pub trait PortmapHost: nat::NatCaps {
    fn log(&self, level: Level, message: &str);
}

/// Capabilities of the bandwidth module: tc on this attachment's links.
pub trait BandwidthHost: tc::TcCaps {
    fn log(&self, level: Level, message: &str);
}

/// Not public API: used by the export macros.
#[doc(hidden)]
pub mod __private {
    pub use crate::wasm_host::*;
    pub use wit_bindgen;

    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "any-module",
            pub_export_macro: true,
            export_macro_name: "__export_any_module",
            default_bindings_module: "wasm_cni_guest::__private::bindings",
        });
    }
}

/// Exports a [`Plugin`] as this component's `plugin` interface, run on the
/// SDK's real host.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __WasmCniExport;
            type __Plugin = $plugin;
            type __Host = $crate::__private::WasmHost;
            impl $crate::__private::Guest for __WasmCniExport {
                fn describe() -> $crate::__private::WitDescriptor {
                    $crate::__private::descriptor(
                        <__Plugin as $crate::Plugin<__Host>>::KIND,
                        <__Plugin as $crate::Plugin<__Host>>::VERSION,
                    )
                }
                fn add(inv: $crate::__private::WitInvocation) -> ::core::result::Result<$crate::__private::WitResult, $crate::__private::WitError> {
                    $crate::__private::add::<__Plugin>(inv)
                }
                fn del(inv: $crate::__private::WitInvocation) -> ::core::result::Result<(), $crate::__private::WitError> {
                    $crate::__private::run(inv, <__Plugin as $crate::Plugin<__Host>>::del)
                }
                fn check(inv: $crate::__private::WitInvocation) -> ::core::result::Result<(), $crate::__private::WitError> {
                    $crate::__private::run(inv, <__Plugin as $crate::Plugin<__Host>>::check)
                }
                fn gc(inv: $crate::__private::WitInvocation, valid: ::std::vec::Vec<$crate::__private::WitAttachment>) -> ::core::result::Result<(), $crate::__private::WitError> {
                    let valid = $crate::__private::attachments(valid);
                    $crate::__private::run(inv, |h, i| <__Plugin as $crate::Plugin<__Host>>::gc(h, i, &valid))
                }
                fn status(inv: $crate::__private::WitInvocation) -> ::core::result::Result<(), $crate::__private::WitError> {
                    $crate::__private::run(inv, <__Plugin as $crate::Plugin<__Host>>::status)
                }
            }
            // Export symbols are only meaningful (and only linkable) in a component.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::bindings::__export_any_module!(__WasmCniExport with_types_in $crate::__private::bindings);
        };
    };
}
