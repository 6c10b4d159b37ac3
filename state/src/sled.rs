//! The default backend: one [sled] 0.34 database per task, one tree per
//! store.
//!
//! A task's state lives in `<task dir>/sled`. A key-value store `name` is
//! the tree `name`; a window store `name` is a [`WindowedStore`] over the
//! trees `name/windows` and `name/by-time`. Store names cannot contain `/`
//! ([`validate_store_name`]), so no key-value store can collide with a
//! window store's trees, nor with the backend's own tree `/meta`. (A store
//! named `__sled__default` gets sled's default tree, which nothing else
//! uses.)
//!
//! # Locking
//! sled takes an exclusive `flock` on `<task dir>/sled/db`, so a task's
//! state can be open once at a time: a second open, from this process or
//! another, fails with [`StateError::Locked`] ([`is_lock_error`] explains
//! how sled reports it). Every store handle keeps the database open, so
//! the engine must drop the task state *and* its stores before reopening
//! or wiping. sled 0.34 lets go of the lock from a background thread a
//! moment after the last handle is dropped; an open that follows a close
//! in the same process waits for that (see [`SledTaskState::open`]).
//!
//! # Errors and damaged files
//! sled's errors are mapped so that [`StateError::needs_rebuild`] is right:
//! damage and I/O failures ask for a rebuild, a database locked by another
//! process does not (see [`map_sled_error`]). sled 0.34 can also *panic* on
//! some damaged files, so every call into sled runs under
//! [`std::panic::catch_unwind`] and a panic becomes
//! [`StateError::Corrupted`]. After one panic the task's state is treated
//! as broken: every later call fails with `Corrupted` too, because a panic
//! may have left sled's in-memory structures half-updated. (The panic
//! message is still printed by the process's panic hook.)
//!
//! # Durability
//! Writes reach disk at [`TaskState::flush`], when sled's background
//! flusher runs (every 500 ms by default), and when the last handle to the
//! database is dropped: sled 0.34 flushes every dirty page on a clean drop.
//! A crash loses at most what was written since the last flush, which the
//! changelog restore brings back.
//!
//! # Detecting lost flushed writes
//! sled recovers its log up to the first damaged or missing part and
//! *silently* drops the rest: a truncated `db` file opens as an older
//! state, a deleted one as an empty database. The engine may skip restoring
//! what it believes a persistent store already has, so a silent rollback
//! past a flush would lose data for good. Each flush therefore numbers
//! itself in the database and, once sled has synced, in the file
//! [`FLUSHED_FILE`]; [`open`](Backend::open) fails with
//! [`StateError::Corrupted`] when the database holds an older number than
//! the file. The file is written after the sync, so it can lag behind the
//! database (a crash, a failed write) but never run ahead of it: it gives no
//! false alarms, only fewer alarms.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, ErrorKind};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::window::WindowedStore;
use crate::{
    Backend, KeyValueStore, KvIter, Result, StateError, TaskState, WindowStore, validate_store_name,
};

/// The directory, under a task's directory, that holds its sled database.
pub const SLED_DIR: &str = "sled";

/// The tree holding the backend's own bookkeeping. Its name starts with
/// `/`, which no store's tree name can ([`validate_store_name`]).
const META_TREE: &str = "/meta";

/// The key, in [`META_TREE`], of the number of the last flush.
const FLUSHED_KEY: &[u8] = b"flushed";

/// The file, next to sled's own in `<task dir>/sled`, that records the
/// number of the last flush that completed (see [`SledTaskState::flush`]).
/// sled ignores files it does not know.
pub const FLUSHED_FILE: &str = "state-flushed";

/// The default sled page cache size: 64 MiB per task.
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of the sled backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SledConfig {
    /// The size of sled's page cache, in bytes, for each task's database.
    /// sled's default is 1 GiB, which multiplied by the tasks of one
    /// process is far too much; see [`DEFAULT_CACHE_CAPACITY_BYTES`].
    pub cache_capacity_bytes: u64,
    /// How often sled's background thread writes dirty data out, in
    /// milliseconds; `None` turns the thread off, leaving writes to
    /// [`TaskState::flush`] (each commit), to full write buffers and to the
    /// last handle's drop. sled's default, 500 ms, is kept.
    pub flush_every_ms: Option<u64>,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            flush_every_ms: Some(500),
        }
    }
}

impl SledConfig {
    /// These settings with a page cache of `bytes` per task.
    pub fn with_cache_capacity_bytes(mut self, bytes: u64) -> Self {
        self.cache_capacity_bytes = bytes;
        self
    }

    /// These settings with sled's background flush every `every_ms`
    /// milliseconds, or never for `None`.
    pub fn with_flush_every_ms(mut self, every_ms: Option<u64>) -> Self {
        self.flush_every_ms = every_ms;
        self
    }
}

/// The sled [`Backend`].
#[derive(Debug, Clone, Default)]
pub struct SledBackend {
    config: SledConfig,
}

impl SledBackend {
    /// A backend opening databases with `config`.
    pub fn new(config: SledConfig) -> Self {
        Self { config }
    }

    /// The backend's settings.
    pub fn config(&self) -> &SledConfig {
        &self.config
    }
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn open(&self, dir: &Path) -> Result<Arc<dyn TaskState>> {
        Ok(Arc::new(SledTaskState::open(dir, &self.config)?))
    }

    /// Removes `dir/sled` (a missing one is fine, a stray file there too).
    ///
    /// Fails with [`StateError::Locked`] while this process still has the
    /// state open: on Unix, removing the files of an open database would
    /// succeed and leave it writing to deleted files. (A database open in
    /// another process is not detected; its lock lives on a file that is
    /// about to be deleted.)
    fn wipe(&self, dir: &Path) -> Result<()> {
        let path = dir.join(SLED_DIR);
        let location = path.display().to_string();
        let io_error = |source| StateError::Io {
            location: location.clone(),
            source,
        };
        let removed = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(e)),
            Ok(meta) if meta.is_dir() => {
                let canonical = std::fs::canonicalize(&path).map_err(io_error)?;
                if is_open_here(&canonical) {
                    return Err(StateError::Locked { location });
                }
                std::fs::remove_dir_all(&path)
            }
            // A stray file or link where the directory should be.
            Ok(_) => std::fs::remove_file(&path),
        };
        match removed {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error(e)),
            _ => Ok(()),
        }
    }

    fn is_persistent(&self) -> bool {
        true
    }
}

/// Whether a sled I/O error is sled 0.34 failing to lock its database file.
///
/// sled takes an exclusive `flock` on `<path>/db` at open (through `fs2`,
/// in `Config::try_lock`) and, when that fails, reports
/// `Error::Io(io::Error::new(ErrorKind::Other, "could not acquire lock on
/// {path}: {cause}"))`: the original `WouldBlock` error is only kept as
/// text, so the message is all there is to match. `flock` locks belong to
/// open files, not processes, so a second open from the same process is
/// refused the same way as one from another process.
pub fn is_lock_error(error: &io::Error) -> bool {
    error.kind() == ErrorKind::Other && error.to_string().starts_with("could not acquire lock")
}

/// Maps a sled error to a [`StateError`] at `location`.
///
/// - `Io`: [`StateError::Locked`] for a lock held elsewhere
///   ([`is_lock_error`]), else [`StateError::Io`].
/// - `Corruption`: [`StateError::Corrupted`].
/// - `Unsupported`: [`StateError::Corrupted`]. The backend never uses the
///   features that report it at run time (merge operators, transactions,
///   dropping trees) and always passes valid settings, so what is left is
///   sled refusing the files themselves: written by another sled version or
///   with other settings, or an unreadable config file. Rebuilding is the
///   cure.
/// - `ReportableBug`: [`StateError::Corrupted`]: sled found its own
///   structures inconsistent, so its content cannot be trusted.
/// - `CollectionNotFound`: [`StateError::Corrupted`]: a tree vanished
///   although the backend never drops trees.
pub fn map_sled_error(location: &str, error: sled::Error) -> StateError {
    let location = location.to_owned();
    match error {
        sled::Error::Io(source) if is_lock_error(&source) => StateError::Locked { location },
        sled::Error::Io(source) => StateError::Io { location, source },
        sled::Error::Corruption { at, .. } => StateError::Corrupted {
            location,
            message: match at {
                Some(at) => format!("sled found corrupted data at {at:?}"),
                None => "sled found corrupted data".to_owned(),
            },
        },
        sled::Error::Unsupported(why) => StateError::Corrupted {
            location,
            message: format!("sled cannot use these files: {why}"),
        },
        sled::Error::ReportableBug(what) => StateError::Corrupted {
            location,
            message: format!("sled found its structures inconsistent: {what}"),
        },
        sled::Error::CollectionNotFound(name) => StateError::Corrupted {
            location,
            message: format!("sled tree {:?} vanished", String::from_utf8_lossy(&name)),
        },
    }
}

/// The text of a caught panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// What the stores of one task share: where they live (for errors) and
/// whether sled has panicked. Every holder of a sled handle also holds the
/// `Shared` and drops it *after* the handle (fields drop in declaration
/// order), so once the last `Shared` is gone, so are this process's
/// handles to the database: [`OPENED`] relies on that.
#[derive(Debug)]
struct Shared {
    location: String,
    broken: AtomicBool,
}

impl Shared {
    /// Runs `call` into sled, turning sled errors into [`StateError`]s and a
    /// panic into [`StateError::Corrupted`] (marking the state broken).
    /// `store` names the store for error locations, if any.
    fn guard<T>(&self, store: Option<&str>, call: impl FnOnce() -> sled::Result<T>) -> Result<T> {
        let location = || match store {
            Some(store) => format!("{} (store {store})", self.location),
            None => self.location.clone(),
        };
        if self.broken.load(Ordering::Acquire) {
            return Err(StateError::Corrupted {
                location: location(),
                message: "sled panicked earlier; the state must be rebuilt".to_owned(),
            });
        }
        // AssertUnwindSafe: after a panic the state is marked broken and
        // never touched again, so no half-updated value is observed.
        match catch_unwind(AssertUnwindSafe(call)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(map_sled_error(&location(), error)),
            Err(payload) => {
                self.broken.store(true, Ordering::Release);
                let message = format!("sled panicked: {}", panic_message(payload.as_ref()));
                tracing::error!(location = %location(), %message, "sled panicked; state needs a rebuild");
                Err(StateError::Corrupted {
                    location: location(),
                    message,
                })
            }
        }
    }
}

/// The databases this process has opened, by canonical path, to tell the
/// reasons sled can refuse its lock apart:
///
/// - the database is open *here* (entry alive): a second open, so
///   [`StateError::Locked`] right away, without asking sled;
/// - it *was* open here and every handle has been dropped (entry dead):
///   sled 0.34 closes its file from a background I/O thread shortly after
///   the last handle goes (sled issues #1234 and #1289), so the lock is
///   about to be released and the open waits for it, up to
///   [`LOCK_RELEASE_WAIT`];
/// - otherwise another process holds it: [`StateError::Locked`].
///
/// Dead entries stay: there is one per task directory at most.
static OPENED: Mutex<BTreeMap<PathBuf, Weak<Shared>>> = Mutex::new(BTreeMap::new());

/// How long an open waits for sled to release a lock this process held.
/// The release takes microseconds to milliseconds; the margin is for
/// loaded machines.
const LOCK_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Whether this process has the database at `canonical` open.
fn is_open_here(canonical: &Path) -> bool {
    lock(&OPENED)
        .get(canonical)
        .is_some_and(|open| open.strong_count() > 0)
}

/// Claims `canonical` for `shared` in [`OPENED`]. Returns whether this
/// process had the database open before (and has dropped it since), or
/// [`StateError::Locked`] if it has it open now.
fn claim(canonical: &Path, shared: &Arc<Shared>) -> Result<bool> {
    let mut opened = lock(&OPENED);
    let closed_here = match opened.get(canonical) {
        Some(open) if open.strong_count() > 0 => {
            return Err(StateError::Locked {
                location: shared.location.clone(),
            });
        }
        Some(_) => true,
        None => false,
    };
    opened.insert(canonical.to_owned(), Arc::downgrade(shared));
    Ok(closed_here)
}

/// Withdraws the claim of [`claim`], if `shared` still holds it, for an
/// open that never got sled's lock: the next open then does not wait for a
/// release that is not coming.
fn unclaim(canonical: &Path, shared: &Arc<Shared>) {
    let mut opened = lock(&OPENED);
    if opened
        .get(canonical)
        .is_some_and(|open| Weak::ptr_eq(open, &Arc::downgrade(shared)))
    {
        opened.remove(canonical);
    }
}

/// The number of the last completed flush recorded in `dir`'s
/// [`FLUSHED_FILE`], if it can be read. An unreadable file only means less
/// checking, so it is logged, not an error.
fn read_flushed_file(dir: &Path) -> Option<u64> {
    let path = dir.join(FLUSHED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(number) => Some(number),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring unreadable flush record");
                None
            }
        },
        Err(error) if error.kind() == ErrorKind::NotFound => None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "ignoring unreadable flush record");
            None
        }
    }
}

/// Records `number` as the last completed flush in `dir`'s
/// [`FLUSHED_FILE`]. Written to a temporary file and renamed, so a reader
/// sees the old or the new number, never a torn one. Not synced: losing
/// this write only makes the record lag.
fn write_flushed_file(dir: &Path, number: u64) -> io::Result<()> {
    let temporary = dir.join(format!("{FLUSHED_FILE}.tmp"));
    std::fs::write(&temporary, format!("{number}\n"))?;
    std::fs::rename(&temporary, dir.join(FLUSHED_FILE))
}

/// The state of one task in a sled database.
pub struct SledTaskState {
    path: PathBuf,
    db: sled::Db,
    /// The [`META_TREE`].
    meta: sled::Tree,
    /// The number of the last flush; the lock also keeps flushes in order,
    /// so the numbers in the database and the file only ever grow.
    flushed: Mutex<u64>,
    key_value: Mutex<HashMap<String, Arc<SledStore>>>,
    windows: Mutex<HashMap<String, Arc<WindowedStore>>>,
    /// Last, so it is dropped after every sled handle above (see [`Shared`]).
    shared: Arc<Shared>,
}

impl fmt::Debug for SledTaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledTaskState")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, recovering the value from a poisoned lock: the guarded
/// maps and counter are changed by single calls, which leave them
/// consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SledTaskState {
    /// Opens (creating if needed) the database in `dir/sled`.
    ///
    /// Fails with [`StateError::Locked`] while the database is open, in
    /// this process or another. After this process dropped every handle to
    /// it, sled 0.34 still holds the lock for a moment (its I/O thread
    /// closes the file; sled issues #1234, #1289), so an open that finds
    /// the lock taken waits for the release, up to 5 s, instead of failing:
    /// a task that moves away and back must not look locked.
    pub fn open(dir: &Path, config: &SledConfig) -> Result<Self> {
        let path = dir.join(SLED_DIR);
        let location = path.display().to_string();
        let io_error = |source| StateError::Io {
            location: location.clone(),
            source,
        };
        std::fs::create_dir_all(&path).map_err(io_error)?;
        let canonical = std::fs::canonicalize(&path).map_err(io_error)?;
        let shared = Arc::new(Shared {
            location,
            broken: AtomicBool::new(false),
        });
        let closed_here = claim(&canonical, &shared)?;
        let sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_capacity_bytes)
            .flush_every_ms(config.flush_every_ms);
        let deadline = Instant::now() + LOCK_RELEASE_WAIT;
        let mut pause = Duration::from_millis(1);
        let db = loop {
            match shared.guard(None, || sled_config.open()) {
                Ok(db) => break db,
                Err(StateError::Locked { .. }) if closed_here && Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(error) => {
                    if matches!(error, StateError::Locked { .. }) {
                        unclaim(&canonical, &shared);
                    }
                    return Err(error);
                }
            }
        };
        let meta = shared.guard(None, || db.open_tree(META_TREE))?;
        let stored = match shared.guard(None, || meta.get(FLUSHED_KEY))? {
            None => 0,
            Some(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
                Ok(bytes) => u64::from_be_bytes(bytes),
                Err(_) => {
                    return Err(StateError::Corrupted {
                        location: shared.location.clone(),
                        message: format!("flush marker of {} bytes, not 8", bytes.len()),
                    });
                }
            },
        };
        if let Some(recorded) = read_flushed_file(&path)
            && stored < recorded
        {
            return Err(StateError::Corrupted {
                location: shared.location.clone(),
                message: format!(
                    "sled recovered an older state than the last flush (flush {stored} of \
                     {recorded}): flushed writes were lost"
                ),
            });
        }
        Ok(Self {
            path,
            db,
            meta,
            flushed: Mutex::new(stored),
            key_value: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            shared,
        })
    }

    /// The database's directory (`<task dir>/sled`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the tree `tree` as a store named `name`.
    fn open_store(&self, tree: &str, name: &str) -> Result<SledStore> {
        let tree = self.shared.guard(Some(name), || self.db.open_tree(tree))?;
        // Counting is O(entries) in sled 0.34 (`Tree::len` iterates), so it
        // happens once here and the count is kept up to date from what
        // `insert` and `remove` return.
        let len = self.shared.guard(Some(name), || Ok(tree.len()))?;
        Ok(SledStore {
            name: name.to_owned(),
            tree,
            len: AtomicU64::new(u64::try_from(len).unwrap_or(u64::MAX)),
            shared: Arc::clone(&self.shared),
        })
    }
}

impl TaskState for SledTaskState {
    fn key_value_store(&self, name: &str) -> Result<Arc<dyn KeyValueStore>> {
        validate_store_name(name)?;
        // One `SledStore` per tree, so every handle shares one counter.
        let mut stores = lock(&self.key_value);
        if let Some(store) = stores.get(name) {
            return Ok(Arc::clone(store) as Arc<dyn KeyValueStore>);
        }
        let store = Arc::new(self.open_store(name, name)?);
        stores.insert(name.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    fn window_store(&self, name: &str) -> Result<Arc<dyn WindowStore>> {
        validate_store_name(name)?;
        let mut stores = lock(&self.windows);
        if let Some(store) = stores.get(name) {
            return Ok(Arc::clone(store) as Arc<dyn WindowStore>);
        }
        let primary = self.open_store(&format!("{name}/windows"), &format!("{name}/windows"))?;
        let index = self.open_store(&format!("{name}/by-time"), &format!("{name}/by-time"))?;
        let store = Arc::new(WindowedStore::new(name, Arc::new(primary), Arc::new(index)));
        stores.insert(name.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// Numbers the flush in the database, syncs sled (`Db::flush`), then
    /// records the number in [`FLUSHED_FILE`] (see the module docs).
    fn flush(&self) -> Result<()> {
        let mut flushed = lock(&self.flushed);
        let number = flushed.saturating_add(1);
        self.shared.guard(None, || {
            self.meta.insert(FLUSHED_KEY, &number.to_be_bytes())
        })?;
        self.shared.guard(None, || self.db.flush())?;
        *flushed = number;
        if let Err(error) = write_flushed_file(&self.path, number) {
            // The data is durable; only the record of it lags.
            tracing::warn!(path = %self.path.display(), %error, "could not record flush");
        }
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        // Only a metric: a failure is logged and reads as 0.
        self.shared
            .guard(None, || self.db.size_on_disk())
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "could not measure sled state size");
                0
            })
    }
}

/// A [`KeyValueStore`] in one sled tree.
pub struct SledStore {
    name: String,
    tree: sled::Tree,
    /// Entries in the tree: counted at open, then adjusted by every write.
    len: AtomicU64,
    /// Last, so it is dropped after `tree` (see [`Shared`]).
    shared: Arc<Shared>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("name", &self.name)
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SledStore {
    fn guard<T>(&self, call: impl FnOnce() -> sled::Result<T>) -> Result<T> {
        self.shared.guard(Some(&self.name), call)
    }

    /// Wraps a sled iterator so that each step is guarded.
    fn iter(&self, inner: sled::Iter) -> KvIter<'_> {
        Box::new(SledIter {
            store: self,
            inner: Some(inner),
        })
    }
}

/// A guarded sled iterator: a panic or error ends it after being reported
/// once, so a caller looping until `None` cannot spin on a broken store.
struct SledIter<'a> {
    store: &'a SledStore,
    inner: Option<sled::Iter>,
}

impl Iterator for SledIter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        match self.store.guard(|| inner.next().transpose()) {
            Ok(Some((k, v))) => Some(Ok((k.to_vec(), v.to_vec()))),
            Ok(None) => {
                self.inner = None;
                None
            }
            Err(error) => {
                self.inner = None;
                Some(Err(error))
            }
        }
    }
}

impl KeyValueStore for SledStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.guard(|| self.tree.get(key))?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.guard(|| self.tree.insert(key, value))?.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        if self.guard(|| self.tree.remove(key))?.is_some() {
            // Saturating: a concurrent `clear` may have zeroed the count.
            let _ = self
                .len
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        Ok(())
    }

    /// One guard (panic catch and broken-state check) for the whole batch.
    fn write_batch<'a>(
        &self,
        writes: &mut dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<()> {
        let (mut added, mut removed) = (0u64, 0u64);
        let result = self.guard(|| {
            for (key, value) in writes {
                match value {
                    Some(value) => {
                        if self.tree.insert(key, value)?.is_none() {
                            added += 1;
                        }
                    }
                    None => {
                        if self.tree.remove(key)?.is_some() {
                            removed += 1;
                        }
                    }
                }
            }
            Ok(())
        });
        // Counted even after an error: what was applied stays applied.
        self.len.fetch_add(added, Ordering::Relaxed);
        let _ = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(removed))
            });
        result
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KvIter<'_>> {
        let Some((lower, upper)) = crate::key_range(from, to) else {
            return Ok(Box::new(std::iter::empty()));
        };
        let inner = self.guard(|| Ok(self.tree.range::<&[u8], _>((lower, upper))))?;
        Ok(self.iter(inner))
    }

    fn prefix(&self, prefix: &[u8]) -> Result<KvIter<'_>> {
        let inner = self.guard(|| Ok(self.tree.scan_prefix(prefix)))?;
        Ok(self.iter(inner))
    }

    /// Exact unless writes race with [`clear`](KeyValueStore::clear).
    fn approximate_len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    fn clear(&self) -> Result<()> {
        self.guard(|| self.tree.clear())?;
        self.len.store(0, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::io_other_error)] // spelled exactly as sled spells it
    fn lock_errors_are_recognised_by_sleds_message_only() {
        // Built the way sled 0.34 builds it (`Config::try_lock`).
        let lock = io::Error::new(
            ErrorKind::Other,
            format!(
                "could not acquire lock on {:?}: {:?}",
                "/x/db",
                io::Error::from(ErrorKind::WouldBlock)
            ),
        );
        assert!(is_lock_error(&lock));
        assert!(matches!(
            map_sled_error("x", sled::Error::Io(lock)),
            StateError::Locked { .. }
        ));
        let other = io::Error::new(ErrorKind::PermissionDenied, "could not acquire lock");
        assert!(!is_lock_error(&other));
        let mapped = map_sled_error("x", sled::Error::Io(other));
        assert!(matches!(mapped, StateError::Io { .. }) && mapped.needs_rebuild());
    }

    #[test]
    fn non_io_sled_errors_ask_for_a_rebuild() {
        let errors = [
            sled::Error::Corruption { at: None, bt: () },
            sled::Error::Unsupported("old version".into()),
            sled::Error::ReportableBug("bug".into()),
            sled::Error::CollectionNotFound(sled::IVec::from(&b"t"[..])),
        ];
        for error in errors {
            let mapped = map_sled_error("x", error);
            assert!(matches!(mapped, StateError::Corrupted { .. }), "{mapped:?}");
            assert!(mapped.needs_rebuild());
        }
    }

    #[test]
    fn a_panic_inside_sled_becomes_corrupted_and_breaks_the_state() {
        let shared = Shared {
            location: "here".into(),
            broken: AtomicBool::new(false),
        };
        let result: Result<()> = shared.guard(Some("s"), || panic!("damaged page"));
        match result {
            Err(StateError::Corrupted { location, message }) => {
                assert_eq!(location, "here (store s)");
                assert!(message.contains("damaged page"), "{message}");
            }
            other => panic!("expected Corrupted, got {other:?}"),
        }
        // Later calls fail without running.
        let mut ran = false;
        let later = shared.guard(None, || {
            ran = true;
            Ok(())
        });
        assert!(matches!(later, Err(StateError::Corrupted { .. })));
        assert!(!ran);
    }

    #[test]
    fn length_counter_stays_exact_under_concurrent_writers() {
        // insert/remove report the old value atomically, so racing writers
        // on the same keys still count each entry once.
        let dir = tempfile::tempdir().unwrap();
        let config = SledConfig::default().with_flush_every_ms(None);
        let task = SledTaskState::open(dir.path(), &config).unwrap();
        let store = task.key_value_store("s").unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4_u8 {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..500_u16 {
                        let key = (i % 64).to_be_bytes();
                        if (i + u16::from(thread)) % 3 == 0 {
                            store.delete(&key).unwrap();
                        } else {
                            store.put(&key, &[thread]).unwrap();
                        }
                    }
                });
            }
        });
        let actual = store.range(None, None).unwrap().count() as u64;
        assert_eq!(store.approximate_len(), actual);
    }

    #[test]
    fn an_opened_store_is_shared_not_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let task = SledTaskState::open(dir.path(), &SledConfig::default()).unwrap();
        let first = task.key_value_store("s").unwrap();
        let second = task.key_value_store("s").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let w1 = task.window_store("s").unwrap();
        let w2 = task.window_store("s").unwrap();
        assert!(Arc::ptr_eq(&w1, &w2));
        assert!(task.key_value_store("bad name").is_err());
        assert!(task.window_store("").is_err());
    }

    #[test]
    fn panic_payloads_of_both_string_kinds_are_read() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42_u8), "(no message)");
    }
}
