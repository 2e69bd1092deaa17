//! The C bindings of a world (`<world>.h`, `<world>.c`,
//! `<world>_component_type.o`): the ones the repository ships in
//! `policies/bindings/c/` (written by `cargo xtask bindings`, checked for
//! drift by CI), embedded, so a new C project gets exactly those.

/// One world's three files.
struct WorldBindings {
    world: &'static str,
    files: [(&'static str, &'static [u8]); 3],
}

macro_rules! shipped {
    ($world:literal, $stem:literal) => {
        WorldBindings {
            world: $world,
            files: [
                (
                    concat!($stem, ".h"),
                    include_bytes!(concat!(
                        "../../../../policies/bindings/c/",
                        $world,
                        "/",
                        $stem,
                        ".h"
                    )),
                ),
                (
                    concat!($stem, ".c"),
                    include_bytes!(concat!(
                        "../../../../policies/bindings/c/",
                        $world,
                        "/",
                        $stem,
                        ".c"
                    )),
                ),
                (
                    concat!($stem, "_component_type.o"),
                    include_bytes!(concat!(
                        "../../../../policies/bindings/c/",
                        $world,
                        "/",
                        $stem,
                        "_component_type.o"
                    )),
                ),
            ],
        }
    };
}

const SHIPPED: [WorldBindings; 2] = [
    shipped!("policy", "policy"),
    shipped!("stateful-policy", "stateful_policy"),
];

/// The bindings of `world`: file names and contents.
pub fn generate(world: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let bindings = SHIPPED
        .iter()
        .find(|b| b.world == world)
        .ok_or_else(|| anyhow::anyhow!("no C bindings ship for the world {world}"))?;
    Ok(bindings
        .files
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_world_has_its_header_source_and_world_object() {
        for world in ["policy", "stateful-policy"] {
            let files = generate(world).unwrap();
            assert_eq!(files.len(), 3);
            assert!(files.iter().all(|(_, bytes)| !bytes.is_empty()));
        }
        assert!(generate("nope").is_err());
    }
}
