//! `cargo xtask c-bindings OUT_DIR`: the C bindings of the `policy` world.
//!
//! Uses the `wit-bindgen-c` library (the generator behind `wit-bindgen c`)
//! directly, so building a C policy costs a small xtask build instead of
//! installing the whole `wit-bindgen-cli`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use wit_bindgen_core::wit_parser::Resolve;

/// The world C policies are written against.
const WORLD: &str = "policy";

/// Parses `wit/` at the workspace root and writes the generated header,
/// source and component-type object for the `policy` world into `out_dir`.
pub fn write(out_dir: &Path) -> Result<()> {
    let root = super::workspace_root()?;
    let wit = root.join("wit");
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(&wit)
        .with_context(|| format!("parsing {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(WORLD))
        .with_context(|| format!("selecting world `{WORLD}` in {}", wit.display()))?;

    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;

    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        let unchanged = fs::read(&path).is_ok_and(|old| old == contents);
        if !unchanged {
            fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        }
        println!("{}", path.display());
    }
    Ok(())
}
