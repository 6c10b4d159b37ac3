//! A write-back cache in front of any backend's key-value stores.
//!
//! An aggregation writes the same few keys over and over: a count per
//! customer is read and rewritten for every order. Written straight through,
//! each update costs the backend a full write (for sled, copying tree nodes
//! and linking pages: most of a stateful task's store time). This layer keeps
//! each store's recent writes in memory, newest value per key, and hands
//! them to the backend in key order with one
//! [`write_batch`](KeyValueStore::write_batch) when the cache is full, when
//! the task's state is flushed (the engine's checkpoint on a clean close or
//! revoke), or when the store is dropped. Between those, a hundred updates
//! of one key cost the backend one write.
//!
//! Nothing changes for readers: `get`, `range` and `prefix` see the cached
//! writes over the backend's content, so interactive queries on other
//! threads read the latest values. Nothing changes for the truth either:
//! the changelog receives every write as before, and writes still in the
//! cache when a process dies are exactly the unflushed writes the engine
//! never trusts (after an unclean stop a task's state is rebuilt from its
//! changelog).
//!
//! Memory is bounded per store: past `max_bytes`, the cache writes back
//! entries (lowest keys first) until it is 1/16 under the bound, so a full
//! cache costs small, regular batches rather than one long pause.
//!
//! ```
//! use state::cache::CachingBackend;
//! use state::sled::{SledBackend, SledConfig};
//! use state::{Backend, TaskState};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let backend = CachingBackend::new(SledBackend::new(SledConfig::default()), 1 << 20);
//! let task = backend.open(dir.path()).unwrap();
//! let counts = task.key_value_store("counts").unwrap();
//! for n in 1..=100u32 {
//!     counts.put(b"latte", &n.to_be_bytes()).unwrap(); // held in memory
//! }
//! assert_eq!(counts.get(b"latte").unwrap(), Some(100u32.to_be_bytes().to_vec()));
//! task.flush().unwrap(); // one sled write for the hundred updates
//! assert_eq!(counts.approximate_len(), 1);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::iter::Peekable;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Backend, KeyValueStore, KvIter, Result, TaskState, WindowStore};

/// What one cached entry is counted as, beyond its key and value bytes: the
/// map's node share and the two buffers' headers.
const ENTRY_OVERHEAD: usize = 64;

/// Wraps a [`Backend`] so that every key-value store it opens has a
/// write-back cache of at most `max_bytes` (see the [module](self) docs).
/// Window stores pass through uncached.
#[derive(Debug, Clone)]
pub struct CachingBackend<B> {
    inner: B,
    max_bytes: usize,
}

impl<B: Backend> CachingBackend<B> {
    /// Caches up to `max_bytes` of writes per store in front of `inner`.
    pub fn new(inner: B, max_bytes: usize) -> Self {
        Self { inner, max_bytes }
    }
}

impl<B: Backend> Backend for CachingBackend<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn open(&self, dir: &Path) -> Result<Arc<dyn TaskState>> {
        Ok(Arc::new(CachingTaskState {
            inner: self.inner.open(dir)?,
            max_bytes: self.max_bytes,
            stores: Mutex::new(HashMap::new()),
        }))
    }

    fn wipe(&self, dir: &Path) -> Result<()> {
        self.inner.wipe(dir)
    }

    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
}

/// A task's state whose key-value stores are cached.
struct CachingTaskState {
    inner: Arc<dyn TaskState>,
    max_bytes: usize,
    /// One cache per store, so every handle of a store shares it.
    stores: Mutex<HashMap<String, Arc<CachingStore>>>,
}

impl TaskState for CachingTaskState {
    fn key_value_store(&self, name: &str) -> Result<Arc<dyn KeyValueStore>> {
        let mut stores = lock(&self.stores);
        if let Some(store) = stores.get(name) {
            return Ok(Arc::clone(store) as Arc<dyn KeyValueStore>);
        }
        let store = Arc::new(CachingStore::new(
            self.inner.key_value_store(name)?,
            self.max_bytes,
        ));
        stores.insert(name.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    fn window_store(&self, name: &str) -> Result<Arc<dyn WindowStore>> {
        self.inner.window_store(name)
    }

    /// Writes every cache back, then flushes the backend.
    fn flush(&self) -> Result<()> {
        let stores: Vec<_> = lock(&self.stores).values().cloned().collect();
        for store in stores {
            store.write_back_all()?;
        }
        self.inner.flush()
    }

    fn size_on_disk(&self) -> u64 {
        self.inner.size_on_disk()
    }
}

/// A cached write.
struct Entry {
    /// `None`: deleted.
    value: Option<Vec<u8>>,
    /// Whether the backend held the key when it was first cached, so the
    /// store's length stays exact without asking the backend again.
    in_backend: bool,
}

impl Entry {
    fn bytes(key: &[u8], value: Option<&[u8]>) -> usize {
        key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct Dirty {
    entries: BTreeMap<Vec<u8>, Entry>,
    /// What `entries` count as (see [`ENTRY_OVERHEAD`]).
    bytes: usize,
    /// Keys present counting the cache minus keys present in the backend
    /// alone: the store's length is the backend's plus this.
    len_delta: i64,
    /// The last key a `get` missed in the cache and read from the backend,
    /// and whether the backend held it: the write that usually follows
    /// (read, then update) needs to know, and need not ask the backend
    /// again. Valid while the key is not cached and the backend is not
    /// written past the cache (`write_batch`, `clear`).
    probed_key: Vec<u8>,
    probed: Option<bool>,
}

impl Dirty {
    /// Whether the backend holds `key`, if the last probe was of it.
    fn take_probe(&mut self, key: &[u8]) -> Option<bool> {
        self.probed.take().filter(|_| self.probed_key == key)
    }
}

/// A cached key and its value; `None` for a delete.
type CachedWrite = (Vec<u8>, Option<Vec<u8>>);

/// A key-value store with a write-back cache in front of another.
pub struct CachingStore {
    inner: Arc<dyn KeyValueStore>,
    max_bytes: usize,
    dirty: Mutex<Dirty>,
}

impl std::fmt::Debug for CachingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dirty = lock(&self.dirty);
        f.debug_struct("CachingStore")
            .field("name", &self.inner.name())
            .field("max_bytes", &self.max_bytes)
            .field("cached", &dirty.entries.len())
            .field("cached_bytes", &dirty.bytes)
            .finish_non_exhaustive()
    }
}

impl CachingStore {
    /// Caches up to `max_bytes` of writes in front of `inner`.
    pub fn new(inner: Arc<dyn KeyValueStore>, max_bytes: usize) -> Self {
        Self {
            inner,
            max_bytes,
            dirty: Mutex::new(Dirty::default()),
        }
    }

    /// Hands every cached write to the backing store.
    pub fn write_back_all(&self) -> Result<()> {
        let mut dirty = lock(&self.dirty);
        self.write_back(&mut dirty, 0)
    }

    /// Writes cached entries back, lowest keys first, until the cache
    /// counts at most `target` bytes. Called with the lock held, so a
    /// reader never sees a written-back value missing from both places.
    fn write_back(&self, dirty: &mut Dirty, target: usize) -> Result<()> {
        if dirty.bytes <= target {
            return Ok(());
        }
        let mut taken = Vec::new();
        while dirty.bytes > target {
            let Some((key, entry)) = dirty.entries.pop_first() else {
                break;
            };
            dirty.bytes = dirty
                .bytes
                .saturating_sub(Entry::bytes(&key, entry.value.as_deref()));
            // The backend's own count now covers this key.
            dirty.len_delta -= i64::from(entry.value.is_some()) - i64::from(entry.in_backend);
            taken.push((key, entry.value));
        }
        // After an error the task's state is rebuilt from its changelog
        // (`StateError::needs_rebuild`), so what was taken is not put back.
        self.inner
            .write_batch(&mut taken.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
    }

    /// Caches `value` (`None` deletes) for `key`.
    fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let mut dirty = lock(&self.dirty);
        let dirty = &mut *dirty;
        if let Some(entry) = dirty.entries.get_mut(key) {
            dirty.bytes = dirty
                .bytes
                .saturating_sub(Entry::bytes(key, entry.value.as_deref()))
                + Entry::bytes(key, value);
            dirty.len_delta += i64::from(value.is_some()) - i64::from(entry.value.is_some());
            match (&mut entry.value, value) {
                // Reuse the buffer: the common case is a rewritten aggregate.
                (Some(buffer), Some(value)) => {
                    buffer.clear();
                    buffer.extend_from_slice(value);
                }
                (slot, value) => *slot = value.map(<[u8]>::to_vec),
            }
        } else {
            let in_backend = match dirty.take_probe(key) {
                Some(held) => held,
                None => self.inner.get(key)?.is_some(),
            };
            dirty.bytes += Entry::bytes(key, value);
            dirty.len_delta += i64::from(value.is_some()) - i64::from(in_backend);
            dirty.entries.insert(
                key.to_vec(),
                Entry {
                    value: value.map(<[u8]>::to_vec),
                    in_backend,
                },
            );
        }
        if dirty.bytes > self.max_bytes {
            let target = self.max_bytes - self.max_bytes / 16;
            self.write_back(dirty, target)?;
        }
        Ok(())
    }

    /// The cached entries with keys in `(lower, upper)`, copied, so a scan
    /// does not hold the lock while it walks the backend.
    fn snapshot(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Vec<CachedWrite> {
        let dirty = lock(&self.dirty);
        dirty
            .entries
            .range::<[u8], _>((lower, upper))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }
}

impl Drop for CachingStore {
    /// A clean drop keeps what was written, as the backends do.
    fn drop(&mut self) {
        if let Err(error) = self.write_back_all() {
            tracing::warn!(store = self.inner.name(), %error, "Could not write the store's cache back.");
        }
    }
}

impl KeyValueStore for CachingStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut dirty = lock(&self.dirty);
        if let Some(entry) = dirty.entries.get(key) {
            return Ok(entry.value.clone());
        }
        // Read under the lock, so the probe cannot go stale before it is
        // recorded.
        let value = self.inner.get(key)?;
        dirty.probed_key.clear();
        dirty.probed_key.extend_from_slice(key);
        dirty.probed = Some(value.is_some());
        Ok(value)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(key, Some(value))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.write(key, None)
    }

    /// Restores write many records at once: the cache is written back
    /// first, so the batch lands after everything before it, then the batch
    /// goes straight to the backend.
    fn write_batch<'a>(
        &self,
        writes: &mut dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<()> {
        let mut dirty = lock(&self.dirty);
        dirty.probed = None;
        self.write_back(&mut dirty, 0)?;
        self.inner.write_batch(writes)
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KvIter<'_>> {
        let Some((lower, upper)) = crate::key_range(from, to) else {
            return Ok(Box::new(std::iter::empty()));
        };
        let cached = self.snapshot(lower, upper);
        Ok(Box::new(Merged::new(cached, self.inner.range(from, to)?)))
    }

    fn prefix(&self, prefix: &[u8]) -> Result<KvIter<'_>> {
        let mut cached = self.snapshot(Bound::Included(prefix), Bound::Unbounded);
        cached.retain(|(key, _)| key.starts_with(prefix));
        Ok(Box::new(Merged::new(cached, self.inner.prefix(prefix)?)))
    }

    /// Exact with one writer: the backend's count plus what the cache adds
    /// or removes.
    fn approximate_len(&self) -> u64 {
        let dirty = lock(&self.dirty);
        let len = i128::from(self.inner.approximate_len()) + i128::from(dirty.len_delta);
        u64::try_from(len.max(0)).unwrap_or(u64::MAX)
    }

    fn clear(&self) -> Result<()> {
        let mut dirty = lock(&self.dirty);
        *dirty = Dirty::default();
        self.inner.clear()
    }
}

/// Cached entries laid over the backend's, both in key order: a cached
/// entry wins over the backend's for the same key, and a cached delete
/// hides it.
struct Merged<'a> {
    cached: Peekable<std::vec::IntoIter<CachedWrite>>,
    backend: Peekable<KvIter<'a>>,
}

impl<'a> Merged<'a> {
    fn new(cached: Vec<CachedWrite>, backend: KvIter<'a>) -> Self {
        Self {
            cached: cached.into_iter().peekable(),
            backend: backend.peekable(),
        }
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_cached = match (self.cached.peek(), self.backend.peek()) {
                (None, None) => return None,
                (None, Some(_)) | (_, Some(Err(_))) => return self.backend.next(),
                (Some(_), None) => true,
                (Some((cached, _)), Some(Ok((stored, _)))) => {
                    if cached == stored {
                        // Shadowed by the cached entry.
                        self.backend.next();
                        true
                    } else {
                        cached < stored
                    }
                }
            };
            if take_cached {
                if let Some((key, Some(value))) = self.cached.next() {
                    return Some(Ok((key, value)));
                }
                // A cached delete: nothing to yield for this key.
            } else {
                return self.backend.next();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The cache is consistent between statements; a panic elsewhere while
    // holding the lock leaves nothing half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
