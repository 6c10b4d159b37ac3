//! State stores for the stream-processing engine.
//!
//! Stores hold the state of stateful operators (counts, aggregates, tables,
//! windows) as bytes behind two traits, [`KeyValueStore`] and
//! [`WindowStore`]; the engine adds typed wrappers through its serdes. A
//! store is a rebuildable cache: the truth is the store's compacted
//! changelog topic, which the engine writes and restores from. So a
//! backend's job is to be fast and to *say* when it cannot be trusted
//! ([`StateError::needs_rebuild`]); the engine then wipes the task's state
//! and restores it.
//!
//! # Layout
//! - [`Backend`] opens the state of one task (a directory): a [`TaskState`],
//!   from which its named stores are opened.
//! - [`sled`](mod@sled): the default backend, one sled database per task and
//!   one tree per store.
//! - [`memory`]: an in-memory backend (state is rebuilt from the changelog at
//!   every start).
//! - [`window`]: a [`WindowStore`] built on any two key-value stores.
//! - [`cache`]: a write-back cache in front of any backend's key-value
//!   stores, so an often-updated key costs the backend one write per
//!   flush instead of one per update.
//!
//! # Example
//!
//! ```
//! use state::{Backend, memory::MemoryBackend};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let task = MemoryBackend::default().open(dir.path()).unwrap();
//! let counts = task.key_value_store("counts").unwrap();
//! counts.put(b"latte", b"2").unwrap();
//! assert_eq!(counts.get(b"latte").unwrap().as_deref(), Some(&b"2"[..]));
//! assert_eq!(counts.approximate_len(), 1);
//! ```

pub mod cache;
pub mod memory;
pub mod sled;
pub mod window;

use std::path::Path;
use std::sync::Arc;

/// A `Result` whose error is a [`StateError`].
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The store's files are damaged; its content cannot be trusted.
    #[error("state in {location} is corrupted: {message}")]
    Corrupted {
        /// The task directory or store.
        location: String,
        /// What the backend reported.
        message: String,
    },
    /// Reading or writing the store's files failed.
    #[error("state in {location}: I/O error: {source}")]
    Io {
        /// The task directory or store.
        location: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory is in use by another process.
    #[error("state in {location} is locked by another process")]
    Locked {
        /// The task directory.
        location: String,
    },
    /// A store was opened with an invalid name or setting.
    #[error("invalid store setting: {0}")]
    Invalid(String),
}

impl StateError {
    /// Whether the task's state should be wiped and rebuilt from the
    /// changelog: the files are corrupted or unreadable. A lock held by
    /// another process is not such a case (wiping would destroy its state).
    pub fn needs_rebuild(&self) -> bool {
        matches!(self, Self::Corrupted { .. } | Self::Io { .. })
    }
}

/// An iterator over key-value pairs in ascending key order.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// A sorted map from bytes to bytes.
///
/// Methods take `&self`: stores synchronise internally, so a task can write
/// while interactive queries read from other threads through a clone of
/// the same `Arc`.
pub trait KeyValueStore: Send + Sync {
    /// The store's name.
    fn name(&self) -> &str;

    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Sets `key` to `value`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Removes `key` (nothing happens when it is absent).
    fn delete(&self, key: &[u8]) -> Result<()>;

    /// Applies `writes` in order: `Some(value)` sets the key, `None`
    /// removes it. For many writes at once (a changelog restore), so a
    /// backend can take its locks and guards once per batch instead of once
    /// per write. Not atomic: after an error, some writes may have been
    /// applied. The default applies them one by one.
    fn write_batch<'a>(
        &self,
        writes: &mut dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<()> {
        for (key, value) in writes {
            match value {
                Some(value) => self.put(key, value)?,
                None => self.delete(key)?,
            }
        }
        Ok(())
    }

    /// Entries with `from <= key < to` in ascending key order; `None` leaves
    /// that side unbounded.
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KvIter<'_>>;

    /// Entries whose key starts with `prefix`, in ascending key order.
    fn prefix(&self, prefix: &[u8]) -> Result<KvIter<'_>>;

    /// The number of entries, possibly stale or estimated.
    fn approximate_len(&self) -> u64;

    /// Removes every entry.
    fn clear(&self) -> Result<()>;
}

/// Windowed values: each key has one value per window, identified by the
/// window's start time (milliseconds since the epoch).
pub trait WindowStore: Send + Sync {
    /// The store's name.
    fn name(&self) -> &str;

    /// Sets the value of `key` in the window starting at `window_start`.
    fn put(&self, key: &[u8], window_start: i64, value: &[u8]) -> Result<()>;

    /// The value of `key` in the window starting at `window_start`.
    fn get(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>>;

    /// Removes the value of `key` in the window starting at `window_start`.
    fn delete(&self, key: &[u8], window_start: i64) -> Result<()>;

    /// The windows of `key` starting in `from..=to`, by ascending start.
    fn fetch(&self, key: &[u8], from: i64, to: i64) -> Result<Vec<(i64, Vec<u8>)>>;

    /// The windows of every key starting in `from..=to`, by ascending start
    /// (then key): `(key, window_start, value)`.
    // The tuple is spelled out so callers see its parts without a lookup.
    #[allow(clippy::type_complexity)]
    fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(Vec<u8>, i64, Vec<u8>)>>;

    /// Drops every window starting before `before`; returns how many.
    fn expire(&self, before: i64) -> Result<u64>;

    /// The number of windows held, possibly stale or estimated.
    fn approximate_len(&self) -> u64;

    /// Removes every window.
    fn clear(&self) -> Result<()>;
}

/// The state of one task: its named stores, opened from one directory.
pub trait TaskState: Send + Sync {
    /// Opens (creating if needed) the key-value store `name`.
    fn key_value_store(&self, name: &str) -> Result<Arc<dyn KeyValueStore>>;

    /// Opens (creating if needed) the window store `name`.
    fn window_store(&self, name: &str) -> Result<Arc<dyn WindowStore>>;

    /// Makes every write so far durable (called on commit).
    fn flush(&self) -> Result<()>;

    /// Bytes the state takes on disk (0 for memory), for metrics.
    fn size_on_disk(&self) -> u64;
}

/// A kind of state storage: opens and wipes the state of tasks.
///
/// A new backend drops in by implementing this trait and the store traits;
/// the engine only ever talks to these.
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs, e.g. `sled`.
    fn name(&self) -> &'static str;

    /// Opens the state of one task kept in `dir` (created if missing).
    fn open(&self, dir: &Path) -> Result<Arc<dyn TaskState>>;

    /// Deletes the state kept in `dir`, so it can be rebuilt from scratch.
    fn wipe(&self, dir: &Path) -> Result<()>;

    /// Whether state survives a restart of the process (so a checkpoint
    /// may let a restore skip what the store already has).
    fn is_persistent(&self) -> bool;
}

/// Bounds of a key range.
pub(crate) type KeyBounds<'a> = (std::ops::Bound<&'a [u8]>, std::ops::Bound<&'a [u8]>);

/// The bounds of [`KeyValueStore::range`]'s `from <= key < to`, or `None`
/// when no key can be in it (`from >= to`: `BTreeMap::range` would panic
/// on it).
pub(crate) fn key_range<'a>(from: Option<&'a [u8]>, to: Option<&'a [u8]>) -> Option<KeyBounds<'a>> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return None;
    }
    Some((
        from.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included),
        to.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
    ))
}

/// Checks a store name: non-empty ASCII letters, digits, `.`, `_`, `-`
/// (it becomes part of a topic name).
pub fn validate_store_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(StateError::Invalid(format!(
            "store name {name:?} must be 1 to 200 ASCII letters, digits, '.', '_' or '-'"
        )))
    }
}
