//! The C bindings of a world (`<world>.h`, `<world>.c`,
//! `<world>_component_type.o`), generated from the embedded WIT files with
//! wit-bindgen's C generator, as `cargo xtask c-bindings` does for the
//! repository's C policies.

use super::templates::File;
use anyhow::{Context, anyhow};
use wit_bindgen_core::wit_parser::{Resolve, SourceMap};

/// The bindings of `world` in the WIT package made of `wit`: file names and contents.
pub fn generate(wit: &[File], world: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut sources = SourceMap::default();
    for file in wit {
        let text = std::str::from_utf8(file.contents)
            .with_context(|| format!("{} is not UTF-8", file.path))?;
        sources.push_str(file.path, text);
    }
    let group = sources
        .parse()
        .map_err(|(_, e)| anyhow!("parsing the embedded WIT files: {e}"))?;
    let mut resolve = Resolve::default();
    let package = resolve
        .push_group(group)
        .map_err(|e| anyhow!("resolving the embedded WIT files: {e}"))?;
    let world_id = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("selecting the world {world}"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world_id, &mut files)
        .context("generating the C bindings")?;
    Ok(files
        .iter()
        .map(|(name, contents)| (name.to_owned(), contents.to_vec()))
        .collect())
}
