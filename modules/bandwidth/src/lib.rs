//! Placeholder until the module lands: refuses every ADD.

use wasm_cni_guest::prelude::*;

pub struct Plugin;

impl BandwidthPlugin for Plugin {
    fn add<H: BandwidthHost>(_host: &mut H, _inv: &Invocation) -> CniResultOf<CniResult> {
        Err(CniError::internal("not implemented yet"))
    }
}

wasm_cni_guest::export_bandwidth_plugin!(Plugin);
