//! An in-memory backend: fast, and empty at every start.
//!
//! Nothing is written to disk, so the engine restores every store from its
//! changelog when a task starts. Useful for tests and for small state where
//! a full restore is cheaper than keeping files.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::window::WindowedStore;
use crate::{Backend, KeyValueStore, KvIter, Result, TaskState, WindowStore, validate_store_name};

/// The in-memory [`Backend`]: every [`open`](Backend::open) gives fresh,
/// empty state.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    /// Gives fresh, empty state; `dir` is neither read nor created, since
    /// nothing is kept on disk.
    fn open(&self, _dir: &Path) -> Result<Arc<dyn TaskState>> {
        Ok(Arc::new(MemoryTaskState::default()))
    }

    /// Succeeds without touching `dir`: there is nothing on disk to delete,
    /// and the state of a dropped [`MemoryTaskState`] is already gone.
    fn wipe(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    fn is_persistent(&self) -> bool {
        false
    }
}

/// The stores of one task, kept in memory. Opening a name again returns the
/// same store, so every handle sees the same data.
#[derive(Debug, Default)]
pub struct MemoryTaskState {
    key_value: Mutex<HashMap<String, Arc<MemoryStore>>>,
    windows: Mutex<HashMap<String, Arc<WindowedStore>>>,
}

impl MemoryTaskState {
    /// Empty state with no stores.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Locks `mutex`, recovering the map from a poisoned lock: the maps are
/// only ever changed by a single `insert`, so a panic elsewhere while the
/// lock was held cannot have left them half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TaskState for MemoryTaskState {
    fn key_value_store(&self, name: &str) -> Result<Arc<dyn KeyValueStore>> {
        validate_store_name(name)?;
        let store = lock(&self.key_value)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(MemoryStore::new(name)))
            .clone();
        Ok(store)
    }

    fn window_store(&self, name: &str) -> Result<Arc<dyn WindowStore>> {
        validate_store_name(name)?;
        let store = lock(&self.windows)
            .entry(name.to_owned())
            .or_insert_with(|| {
                // The inner stores are reachable only through this window
                // store, so their names only label errors.
                Arc::new(WindowedStore::new(
                    name,
                    Arc::new(MemoryStore::new(format!("{name}/windows"))),
                    Arc::new(MemoryStore::new(format!("{name}/by-time"))),
                ))
            })
            .clone();
        Ok(store)
    }

    /// Nothing to do: memory is as durable as it gets.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        0
    }
}

/// A [`KeyValueStore`] in a `BTreeMap` behind a read-write lock.
///
/// [`range`](KeyValueStore::range) and [`prefix`](KeyValueStore::prefix)
/// copy the matching entries out before returning: an iterator that held
/// the read lock would block writers for as long as a caller iterates, and
/// would deadlock a caller that writes to the store while iterating.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            map: RwLock::new(BTreeMap::new()),
        }
    }

    // Poisoned locks are recovered: every write is a single `BTreeMap`
    // call, and `BTreeMap` stays valid if one panics (e.g. out of memory),
    // so the map behind a poisoned lock is still a consistent map.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wraps copied-out entries as a [`KvIter`].
fn owned_iter<'a>(entries: Vec<(Vec<u8>, Vec<u8>)>) -> KvIter<'a> {
    Box::new(entries.into_iter().map(Ok))
}

impl KeyValueStore for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read().get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.write().remove(key);
        Ok(())
    }

    /// Under one write lock.
    fn write_batch<'a>(
        &self,
        writes: &mut dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<()> {
        let mut map = self.write();
        for (key, value) in writes {
            match value {
                Some(value) => {
                    map.insert(key.to_vec(), value.to_vec());
                }
                None => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KvIter<'_>> {
        let Some((lower, upper)) = crate::key_range(from, to) else {
            return Ok(owned_iter(Vec::new()));
        };
        let entries = self
            .read()
            .range::<[u8], _>((lower, upper))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(owned_iter(entries))
    }

    fn prefix(&self, prefix: &[u8]) -> Result<KvIter<'_>> {
        let entries = self
            .read()
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(owned_iter(entries))
    }

    fn approximate_len(&self) -> u64 {
        // Exact here; usize -> u64 cannot truncate on supported targets.
        u64::try_from(self.read().len()).unwrap_or(u64::MAX)
    }

    fn clear(&self) -> Result<()> {
        self.write().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(iter: KvIter<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        iter.collect::<Result<_>>().unwrap()
    }

    #[test]
    fn opening_a_name_twice_returns_the_same_store() {
        let task = MemoryTaskState::new();
        let first = task.key_value_store("counts").unwrap();
        first.put(b"k", b"v").unwrap();
        let second = task.key_value_store("counts").unwrap();
        assert_eq!(second.get(b"k").unwrap(), Some(b"v".to_vec()));

        let w1 = task.window_store("counts").unwrap();
        w1.put(b"k", 7, b"w").unwrap();
        let w2 = task.window_store("counts").unwrap();
        assert_eq!(w2.get(b"k", 7).unwrap(), Some(b"w".to_vec()));
        // Key-value and window stores of one name are separate.
        assert_eq!(second.approximate_len(), 1);
        assert_eq!(w2.approximate_len(), 1);
    }

    #[test]
    fn invalid_store_names_are_rejected() {
        let task = MemoryTaskState::new();
        assert!(matches!(
            task.key_value_store("a/b"),
            Err(crate::StateError::Invalid(_))
        ));
        assert!(matches!(
            task.window_store(""),
            Err(crate::StateError::Invalid(_))
        ));
    }

    #[test]
    fn reversed_or_empty_range_is_empty_not_a_panic() {
        let store = MemoryStore::new("s");
        store.put(b"b", b"1").unwrap();
        assert!(collect(store.range(Some(b"c"), Some(b"a")).unwrap()).is_empty());
        assert!(collect(store.range(Some(b"b"), Some(b"b")).unwrap()).is_empty());
        assert_eq!(
            collect(store.range(Some(b"b"), Some(b"b\0")).unwrap()).len(),
            1
        );
    }

    #[test]
    fn writing_while_iterating_does_not_deadlock_and_iterates_a_snapshot() {
        let store = MemoryStore::new("s");
        store.put(b"a", b"1").unwrap();
        store.put(b"b", b"2").unwrap();
        let mut seen = Vec::new();
        for entry in store.range(None, None).unwrap() {
            let (k, _) = entry.unwrap();
            store.put(b"c", b"3").unwrap();
            store.delete(b"b").unwrap();
            seen.push(k);
        }
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(store.approximate_len(), 2);
    }

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_data() {
        let store = Arc::new(MemoryStore::new("s"));
        store.put(b"k", b"v").unwrap();
        let poisoner = Arc::clone(&store);
        let result = std::thread::spawn(move || {
            let _guard = poisoner.map.write().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(result.is_err());
        assert!(store.map.is_poisoned());
        assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
        store.put(b"k2", b"v2").unwrap();
        assert_eq!(store.approximate_len(), 2);
    }

    #[test]
    fn backend_reopen_starts_empty_and_wipe_succeeds() {
        let backend = MemoryBackend;
        let dir = Path::new("/nonexistent/memory/backend/dir");
        let task = backend.open(dir).unwrap();
        task.key_value_store("s").unwrap().put(b"k", b"v").unwrap();
        task.flush().unwrap();
        assert_eq!(task.size_on_disk(), 0);
        let again = backend.open(dir).unwrap();
        assert_eq!(again.key_value_store("s").unwrap().approximate_len(), 0);
        backend.wipe(dir).unwrap();
        assert!(!backend.is_persistent());
        assert_eq!(backend.name(), "memory");
        assert!(!dir.exists());
    }
}
