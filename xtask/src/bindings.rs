//! `cargo xtask bindings [--check]`: the C bindings of every world in `wit/`,
//! checked in under `policies/bindings/c/WORLD/`.
//!
//! Uses the `wit-bindgen-c` library (the generator behind `wit-bindgen c`)
//! directly. The files are checked in so that a policy author in C, Zig or any
//! language with a C interface builds nothing Rust; `--check` proves in CI
//! that they are exactly what `wit/` generates.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wit_bindgen_core::wit_parser::{PackageId, Resolve};

use crate::Mode;

/// Where the bindings live, relative to the workspace root: one folder per world.
const OUT_DIR: &str = "policies/bindings/c";

/// Generates the bindings of every world and writes them (`Mode::Write`) or
/// compares them with the checked-in files (`Mode::Check`), failing on any
/// difference, missing file or leftover file.
pub fn run(mode: Mode) -> Result<()> {
    let root = super::workspace_root()?;
    let wit = root.join("wit");
    let out_dir = root.join(OUT_DIR);
    let expected = generate_all(&wit)?;

    let mut drifted = Vec::new();
    for (world, files) in &expected {
        let dir = out_dir.join(world);
        for (name, contents) in files {
            let path = dir.join(name);
            let shown = format!("{OUT_DIR}/{world}/{name}");
            let same = fs::read(&path).is_ok_and(|old| &old == contents);
            match mode {
                Mode::Write if !same => {
                    super::write(&path, contents)?;
                    println!("{shown}: written");
                }
                Mode::Write => println!("{shown}: unchanged"),
                Mode::Check if same => println!("{shown}: up to date"),
                Mode::Check => {
                    let fresh = root.join("target/bindings-check").join(world).join(name);
                    super::write(&fresh, contents)?;
                    eprintln!(
                        "{shown} is missing or differs from what wit/ generates; the fresh file is at {}",
                        fresh.display()
                    );
                    drifted.push(shown);
                }
            }
        }
    }
    for leftover in leftovers(&out_dir, &expected)? {
        let shown = format!(
            "{OUT_DIR}/{}",
            leftover
                .strip_prefix(&out_dir)
                .unwrap_or(&leftover)
                .display()
        );
        match mode {
            Mode::Write => {
                remove(&leftover)?;
                println!("{shown}: removed (not generated from wit/)");
            }
            Mode::Check => {
                eprintln!("{shown} is not generated from wit/");
                drifted.push(shown);
            }
        }
    }
    if !drifted.is_empty() {
        bail!(
            "the checked-in C bindings are not what wit/ generates ({}); run `cargo xtask bindings` and commit the result",
            drifted.join(", ")
        );
    }
    Ok(())
}

/// The generated files of every world of the package in `wit`: world name ->
/// (file name -> contents), both sorted.
fn generate_all(wit: &Path) -> Result<BTreeMap<String, BTreeMap<String, Vec<u8>>>> {
    let (resolve, package) = parse(wit)?;
    let worlds: Vec<String> = resolve.packages[package].worlds.keys().cloned().collect();
    if worlds.is_empty() {
        bail!("{} defines no world", wit.display());
    }
    worlds
        .into_iter()
        .map(|world| {
            let files = generate(wit, &world)
                .with_context(|| format!("generating the C bindings of world `{world}`"))?;
            Ok((world, files))
        })
        .collect()
}

/// Parses the WIT package in `wit`.
fn parse(wit: &Path) -> Result<(Resolve, PackageId)> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("parsing {}", wit.display()))?;
    Ok((resolve, package))
}

/// The header, source and component-type object of one world. Each world is
/// generated from a freshly parsed package, so no world sees another's edits
/// to the resolve.
fn generate(wit: &Path, world_name: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let (mut resolve, package) = parse(wit)?;
    let world = resolve
        .select_world(&[package], Some(world_name))
        .with_context(|| format!("selecting world `{world_name}` in {}", wit.display()))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    Ok(files
        .iter()
        .map(|(name, contents)| (name.to_owned(), contents.to_vec()))
        .collect())
}

/// Files and folders under `out_dir` that the generator does not produce
/// (the hand-written README lives one folder up).
fn leftovers(
    out_dir: &Path,
    expected: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for (path, name) in entries(out_dir)? {
        match expected.get(&name) {
            Some(files) if path.is_dir() => found.extend(
                entries(&path)?
                    .into_iter()
                    .filter(|(_, file)| !files.contains_key(file))
                    .map(|(path, _)| path),
            ),
            _ => found.push(path),
        }
    }
    Ok(found)
}

/// The entries of `dir` with their names, sorted; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
    };
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push((entry.path(), name));
    }
    entries.sort();
    Ok(entries)
}

fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.with_context(|| format!("removing {}", path.display()))
}
