//! Opening a task's local state, deciding how much of its changelogs to
//! replay, and the checkpoints that let a clean restart replay only the
//! tail.
//!
//! The changelog is the truth and the local store a cache. The cache is
//! trusted only when a checkpoint, written after a clean close, says up to
//! which changelog offset it holds everything. The checkpoint is deleted as
//! soon as it is read, so a crash afterwards can never make a stale store
//! look current: without a checkpoint the state is wiped and rebuilt from
//! offset 0. A backend that reports corruption or an I/O error when opening
//! is wiped and rebuilt the same way, so a damaged store never turns into a
//! crash loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use state::{Backend, TaskState};
use tracing::{info, warn};

use crate::error::Result;
use crate::stores::StoreSpec;

const CHECKPOINT_FILE: &str = ".checkpoint";

/// One changelog partition being replayed into a store.
#[derive(Debug)]
pub(crate) struct ChangelogRestore {
    /// Index of the store in its task.
    pub(crate) store: usize,
    pub(crate) store_name: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The next offset to apply.
    pub(crate) position: i64,
    /// Where the changelog ended when the task was assigned.
    pub(crate) end: i64,
}

/// A task whose stores are still being restored; its input is paused.
#[derive(Debug)]
pub(crate) struct Restoring {
    pub(crate) changelogs: Vec<ChangelogRestore>,
    /// The task's input partitions, paused until the restore is done.
    pub(crate) inputs: Vec<(String, i32)>,
    pub(crate) restored: u64,
    pub(crate) started: Instant,
}

impl Restoring {
    pub(crate) fn remaining(&self) -> i64 {
        self.changelogs
            .iter()
            .map(|c| (c.end - c.position).max(0))
            .sum()
    }

    pub(crate) fn done(&self) -> bool {
        self.changelogs.iter().all(|c| c.position >= c.end)
    }
}

/// The directory of task `task` under `root`.
pub(crate) fn task_dir(root: &Path, task: &crate::task::TaskId) -> PathBuf {
    root.join(task.to_string())
}

/// Opens the state in `dir` for `stores`; returns it with the changelog
/// offset each store holds everything before (0: restore from scratch).
pub(crate) fn open_task_state(
    backend: &dyn Backend,
    dir: &Path,
    stores: &[StoreSpec],
) -> Result<(Arc<dyn TaskState>, Vec<i64>)> {
    let checkpoint = take_checkpoint(dir);
    let mut trusted = backend.is_persistent()
        && checkpoint
            .as_ref()
            .is_some_and(|c| stores.iter().all(|s| c.contains_key(&s.name)));
    if !trusted {
        if dir.exists() {
            info!(dir = %dir.display(), "No checkpoint for this state: rebuilding it from the changelog.");
        }
        backend.wipe(dir)?;
    }
    let state = match backend.open(dir) {
        Ok(state) => state,
        Err(error) if error.needs_rebuild() => {
            warn!(%error, dir = %dir.display(), "Local state is damaged: wiping it and rebuilding from the changelog.");
            trusted = false;
            backend.wipe(dir)?;
            backend.open(dir)?
        }
        Err(error) => return Err(error.into()),
    };
    let starts = stores
        .iter()
        .map(|spec| {
            if trusted {
                checkpoint
                    .as_ref()
                    .and_then(|c| c.get(&spec.name).copied())
                    .unwrap_or(0)
            } else {
                0
            }
        })
        .collect();
    Ok((state, starts))
}

/// Reads and deletes the checkpoint in `dir`.
fn take_checkpoint(dir: &Path) -> Option<BTreeMap<String, i64>> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).ok()?;
    if let Err(error) = std::fs::remove_file(&path) {
        // A checkpoint that cannot be removed could outlive the state it
        // describes: do not trust it.
        warn!(%error, path = %path.display(), "Cannot remove a checkpoint; ignoring it.");
        return None;
    }
    match serde_json::from_slice(&bytes) {
        Ok(offsets) => Some(offsets),
        Err(error) => {
            warn!(%error, path = %path.display(), "Unreadable checkpoint; ignoring it.");
            None
        }
    }
}

/// Writes the checkpoint of `dir` atomically (write, sync, rename).
pub(crate) fn write_checkpoint(dir: &Path, offsets: &BTreeMap<String, i64>) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let bytes = serde_json::to_vec(offsets).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(CHECKPOINT_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::StoreKind;

    fn specs() -> Vec<StoreSpec> {
        vec![StoreSpec {
            name: "counts".into(),
            kind: StoreKind::KeyValue,
        }]
    }

    #[test]
    fn a_checkpoint_is_used_once_then_the_state_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let backend = state::sled::SledBackend::new(state::sled::SledConfig::default());
        let (state, starts) = open_task_state(&backend, dir.path(), &specs()).unwrap();
        assert_eq!(starts, [0]);
        state
            .key_value_store("counts")
            .unwrap()
            .put(b"k", b"1")
            .unwrap();
        state.flush().unwrap();
        drop(state);
        write_checkpoint(dir.path(), &BTreeMap::from([("counts".to_owned(), 42)])).unwrap();

        let (state, starts) = open_task_state(&backend, dir.path(), &specs()).unwrap();
        assert_eq!(
            starts,
            [42],
            "a clean close lets the restore start at the checkpoint"
        );
        assert!(
            state
                .key_value_store("counts")
                .unwrap()
                .get(b"k")
                .unwrap()
                .is_some()
        );
        drop(state);

        // No new checkpoint (as after a crash): wiped, restored from 0.
        let (state, starts) = open_task_state(&backend, dir.path(), &specs()).unwrap();
        assert_eq!(starts, [0]);
        assert!(
            state
                .key_value_store("counts")
                .unwrap()
                .get(b"k")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn memory_state_is_always_restored_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), &BTreeMap::from([("counts".to_owned(), 42)])).unwrap();
        let (_, starts) =
            open_task_state(&state::memory::MemoryBackend, dir.path(), &specs()).unwrap();
        assert_eq!(starts, [0]);
    }
}
