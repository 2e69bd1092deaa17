//! Watching the policy module files (every module of every chain):
//! editors, `cp` and `mv` replacing a file all end in a reload once the
//! files have been quiet for a moment. The reload reuses every module whose
//! file did not change, so only the replaced module is swapped.
//!
//! Each file's directory is watched rather than the file, so that a file
//! replaced by rename (the safe way to install a module) is still seen.

use crate::reload::Reloader;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long the files must be quiet before they are loaded.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watch the configured module files for as long as the returned task runs.
/// Follows the module paths when a reload changes them.
pub fn spawn(reloader: Arc<Reloader>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let changed = Arc::new(Notify::new());
        let mut watched: Vec<(PathBuf, RecommendedWatcher)> = Vec::new();
        loop {
            let wanted = if reloader.watching() {
                reloader.module_files()
            } else {
                Vec::new()
            };
            if watched.iter().map(|(path, _)| path).ne(wanted.iter()) {
                watched = wanted
                    .into_iter()
                    .filter_map(|path| match watch(&path, changed.clone()) {
                        Ok(watcher) => {
                            tracing::info!("watching {} for changes", path.display());
                            Some((path, watcher))
                        }
                        Err(e) => {
                            tracing::warn!("cannot watch {}: {e}", path.display());
                            None
                        }
                    })
                    .collect();
            }
            changed.notified().await;
            // Debounce: wait until the files have been quiet for a moment.
            while tokio::time::timeout(DEBOUNCE, changed.notified())
                .await
                .is_ok()
            {}
            let _ = reloader.reload("file change").await;
        }
    })
}

fn watch(path: &Path, changed: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let name = path.file_name().map(ToOwned::to_owned);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
            changed.notify_one();
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
