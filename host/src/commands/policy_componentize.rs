//! `relaygate policy componentize CORE OUT`: turns a core WebAssembly module
//! whose world a bindings generator embedded (the C projects of `relaygate
//! policy new` link wit-bindgen's `*_component_type.o`) into a component.

use anyhow::Context;
use std::fs;
use std::path::Path;

/// Reads the core module `core`, encodes it as a validated component and
/// writes that to `out`.
pub fn policy_componentize(core: &Path, out: &Path) -> anyhow::Result<()> {
    let module = fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|encoder| encoder.encode())
        .with_context(|| format!("turning {} into a component", core.display()))?;
    fs::write(out, &component).with_context(|| format!("writing {}", out.display()))?;
    println!("{}: {} bytes", out.display(), component.len());
    Ok(())
}
