//! `relaygate auth hash`: make a users-file hash from a password on stdin.

use std::io::Read;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// Reads one password from standard input (a trailing line break is not part
/// of it) and prints its argon2id hash.
pub fn auth_hash() -> anyhow::Result<()> {
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(&input);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    if password.contains(['\n', '\r']) {
        bail!("the password must be a single line");
    }
    println!("{}", relaygate::credentials::file::hash_password(password)?);
    Ok(())
}
