//! Placeholder until the module lands: refuses every ADD.

use wasm_cni_guest::prelude::*;

pub struct Plugin;

impl PortmapPlugin for Plugin {
    fn add<H: PortmapHost>(_host: &mut H, _inv: &Invocation) -> CniResultOf<CniResult> {
        Err(CniError::internal("not implemented yet"))
    }
}

wasm_cni_guest::export_portmap_plugin!(Plugin);
