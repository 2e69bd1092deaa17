//! The `file` backend: a users file of `user:hash` lines with argon2
//! (`$argon2id$...`, also argon2i/argon2d) or bcrypt (`$2b$`, `$2y$`, `$2a$`)
//! hashes. `relaygate auth hash` makes an argon2id hash.
//!
//! - `#` starts a comment line; blank lines are ignored.
//! - A Dovecot passwd-file line works too when its scheme is one of these:
//!   a `{ARGON2ID}`/`{ARGON2I}`/`{BLF-CRYPT}` prefix and fields after the
//!   hash are ignored.
//! - The file is read at start (a bad file stops startup) and read again
//!   when its modification time or size changes, checked at each attempt.
//!   While a changed file is unreadable or invalid, attempts are answered
//!   as unavailable, never from the old contents.
//! - An unknown user still costs one hash verification, against a dummy
//!   hash made like the file's first one, so timing does not tell which
//!   users exist. Verification runs on the blocking thread pool, holding its
//!   check slot (`max_concurrent_checks`) until the hash is done; a check
//!   whose caller is gone (timed out, client left) before its hash starts
//!   never starts it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::{Context, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use tokio::sync::OwnedSemaphorePermit;
use zeroize::Zeroizing;

use super::{BackendAnswer, Credentials};

/// Checks credentials against a users file.
pub struct FileBackend {
    path: PathBuf,
    users: RwLock<Arc<UsersFile>>,
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The parsed file.
#[derive(Debug)]
pub struct UsersFile {
    stamp: Option<Stamp>,
    hashes: HashMap<String, String>,
    /// Verified for unknown users, so they take as long as known ones.
    dummy: String,
}

impl UsersFile {
    /// Parses the file's text; errors name the line.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut hashes = HashMap::new();
        let mut first_hash = None;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let Some((user, hash)) = parse_line(line).with_context(|| format!("line {number}"))?
            else {
                continue;
            };
            if hashes.contains_key(user) {
                bail!("line {number}: user {user:?} appears twice");
            }
            first_hash.get_or_insert_with(|| hash.to_string());
            hashes.insert(user.to_string(), hash.to_string());
        }
        let dummy = dummy_like(first_hash.as_deref()).context("making the dummy hash")?;
        Ok(Self {
            stamp: None,
            hashes,
            dummy,
        })
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

impl FileBackend {
    /// Reads and checks the users file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let users = load(path).with_context(|| format!("auth.users_file: {}", path.display()))?;
        tracing::info!(users = users.len(), file = %path.display(), "auth users file loaded");
        Ok(Self {
            path: path.to_path_buf(),
            users: RwLock::new(Arc::new(users)),
        })
    }

    pub(crate) async fn check(
        &self,
        attempt: &Credentials,
        slot: OwnedSemaphorePermit,
    ) -> BackendAnswer {
        let users = self.current().await?;
        let (hash, known) = match users.hashes.get(&attempt.user) {
            Some(hash) => (hash.clone(), true),
            None => (users.dummy.clone(), false),
        };
        let password = Zeroizing::new(attempt.password().to_string());
        // Alive while this future is: the blocking task looks before hashing.
        let caller = Arc::new(());
        let waiting = Arc::downgrade(&caller);
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // Nobody waits for the answer any more: do not start the hash.
            waiting.upgrade()?;
            Some(verify(&password, &hash))
        });
        let matches = task
            .await
            .context("hash verification task failed")?
            .context("hash verification abandoned")?;
        drop(caller);
        Ok(matches && known)
    }

    /// The file's current contents, read again if it changed.
    async fn current(&self) -> anyhow::Result<Arc<UsersFile>> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner()).clone();
        let stamp = stamp(&self.path).await.ok();
        if stamp.is_some() && stamp == users.stamp {
            return Ok(users);
        }
        let path = self.path.clone();
        let fresh = tokio::task::spawn_blocking(move || load(&path))
            .await
            .context("users file reload task failed")?
            .with_context(|| format!("reading users file {}", self.path.display()))?;
        tracing::info!(users = fresh.len(), file = %self.path.display(), "auth users file reloaded");
        let fresh = Arc::new(fresh);
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }
}

async fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let metadata = tokio::fs::metadata(path).await?;
    Ok(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

fn load(path: &Path) -> anyhow::Result<UsersFile> {
    let before = std::fs::metadata(path).context("reading metadata")?;
    let text = std::fs::read_to_string(path).context("reading")?;
    let mut users = UsersFile::parse(&text)?;
    users.stamp = Some(Stamp {
        modified: before.modified().ok(),
        len: before.len(),
    });
    Ok(users)
}

/// One line: `None` for blanks and comments, else the user and the hash.
fn parse_line(line: &str) -> anyhow::Result<Option<(&str, &str)>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let Some((user, rest)) = line.split_once(':') else {
        bail!("expected user:hash");
    };
    if user.is_empty() {
        bail!("empty user name");
    }
    let rest = strip_scheme(rest);
    let hash = rest.split(':').next().unwrap_or_default();
    check_hash(hash)?;
    Ok(Some((user, hash)))
}

/// Drops a Dovecot `{SCHEME}` prefix of the supported kinds.
fn strip_scheme(field: &str) -> &str {
    for scheme in ["{ARGON2ID}", "{ARGON2I}", "{BLF-CRYPT}"] {
        if let Some(rest) = field.strip_prefix(scheme) {
            return rest;
        }
    }
    field
}

/// The supported hash kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Argon2,
    Bcrypt,
}

fn kind(hash: &str) -> Option<Kind> {
    if hash.starts_with("$argon2") {
        Some(Kind::Argon2)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        Some(Kind::Bcrypt)
    } else {
        None
    }
}

fn check_hash(hash: &str) -> anyhow::Result<()> {
    match kind(hash) {
        Some(Kind::Argon2) => {
            PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("bad argon2 hash: {e}"))?;
            Ok(())
        }
        Some(Kind::Bcrypt) => {
            bcrypt_cost(hash)?;
            if hash.len() != 60 {
                bail!("bad bcrypt hash: expected 60 characters");
            }
            Ok(())
        }
        None => bail!(
            "unsupported hash (expected $argon2id$..., $argon2i$..., or bcrypt $2b$/$2y$/$2a$; make one with `relaygate auth hash`)"
        ),
    }
}

fn bcrypt_cost(hash: &str) -> anyhow::Result<u32> {
    hash.get(4..6)
        .and_then(|cost| cost.parse().ok())
        .filter(|cost| (4..=31).contains(cost))
        .context("bad bcrypt hash: no cost between 04 and 31")
}

/// Whether `password` matches `hash` (a checked hash; errors count as no).
fn verify(password: &str, hash: &str) -> bool {
    match kind(hash) {
        Some(Kind::Argon2) => PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        }),
        Some(Kind::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        None => false,
    }
}

/// A hash of a random password made with the same kind and cost as `like`
/// (default argon2id parameters when the file is empty).
fn dummy_like(like: Option<&str>) -> anyhow::Result<String> {
    let password = random_salt()?;
    match like.and_then(|hash| kind(hash).map(|kind| (hash, kind))) {
        Some((hash, Kind::Bcrypt)) => {
            bcrypt::hash(password.as_str(), bcrypt_cost(hash)?).context("bcrypt")
        }
        Some((hash, Kind::Argon2)) => {
            let parsed = PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("{e}"))?;
            let params = Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("{e}"))?;
            let algorithm = argon2::Algorithm::try_from(parsed.algorithm)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let hasher = Argon2::new(algorithm, argon2::Version::V0x13, params);
            Ok(hasher
                .hash_password(password.as_str().as_bytes(), &random_salt()?)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_string())
        }
        None => hash_password(password.as_str()),
    }
}

/// An argon2id hash of `password` with the crate's default parameters and a
/// random salt, in the PHC string format.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &random_salt()?)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

fn random_salt() -> anyhow::Result<SaltString> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT_SECRET: &str = "$2b$04$";

    #[test]
    fn lines_comments_and_dovecot_style() {
        assert_eq!(parse_line("  # comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        let hash = hash_password("pw").unwrap();
        let line = format!("alice:{hash}");
        assert_eq!(parse_line(&line).unwrap(), Some(("alice", hash.as_str())));
        let dovecot = format!("alice:{{ARGON2ID}}{hash}::::::");
        assert_eq!(
            parse_line(&dovecot).unwrap(),
            Some(("alice", hash.as_str()))
        );
        assert!(parse_line("alice").is_err());
        assert!(parse_line(":$2b$04$x").is_err());
        assert!(parse_line("alice:{PLAIN}secret").is_err());
        assert!(parse_line("alice:$2b$04$short").is_err());
        assert!(parse_line(&format!("alice:{BCRYPT_SECRET}")).is_err());
    }

    #[test]
    fn both_hash_kinds_verify() {
        let argon = hash_password("correct horse").unwrap();
        assert!(argon.starts_with("$argon2id$"));
        assert!(verify("correct horse", &argon));
        assert!(!verify("correct horsE", &argon));
        let bcrypt = bcrypt::hash("battery staple", 4).unwrap();
        assert!(verify("battery staple", &bcrypt));
        assert!(!verify("battery stapl", &bcrypt));
    }

    #[test]
    fn duplicate_users_and_bad_lines_name_the_line() {
        let hash = bcrypt::hash("x", 4).unwrap();
        let error = UsersFile::parse(&format!("a:{hash}\n\nb:{hash}\na:{hash}\n")).unwrap_err();
        assert!(format!("{error:#}").contains("line 4"), "{error:#}");
        let error = UsersFile::parse("# users\nnobody-here\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
    }

    #[test]
    fn the_dummy_hash_is_made_like_the_first_entry() {
        let bcrypt = bcrypt::hash("x", 5).unwrap();
        let users = UsersFile::parse(&format!("a:{bcrypt}\n")).unwrap();
        assert!(users.dummy.starts_with("$2b$05$"), "{}", users.dummy);
        let users = UsersFile::parse("").unwrap();
        assert!(users.dummy.starts_with("$argon2id$"));
        assert!(users.is_empty());
    }
}
