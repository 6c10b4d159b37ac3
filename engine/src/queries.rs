//! Interactive queries: read-only, typed access to the stores of a running
//! application, from any thread (an HTTP or gRPC handler, say).
//!
//! Each instance answers for the partitions it hosts. A key lives in the
//! partition `murmur2(key bytes) % partitions` — true for stores fed by a
//! repartition the engine wrote, or by topics whose producers key records
//! with the same serde and Kafka's default partitioner. Ask
//! [`Queries::partition_of`] which partition that is; a key whose partition
//! is hosted elsewhere gives [`QueryError::NotHosted`], and one whose store
//! is still being restored gives [`QueryError::Restoring`], so a caller can
//! retry or route the request instead of reading stale or partial state.
//!
//! Key-value stores (`count`, `reduce`, `aggregate`, `table`) are read with
//! [`Queries::get`] and [`Queries::range`]; window stores (`windowed_by`)
//! with [`Queries::fetch_windows`] and [`Queries::all_windows`], which
//! return each window's key, start and end with its value. Asking a store
//! of the other kind gives [`QueryError::WrongStoreKind`].
//!
//! ```no_run
//! # fn demo(streams: &engine::KafkaStreams) -> Result<(), engine::queries::QueryError> {
//! use engine::serdes::{U64, Utf8};
//!
//! let queries = streams.queries();
//! // … while `streams.run(…)` runs on another task:
//! let count: Option<u64> = queries.get("orders-per-customer", &"ada".to_string(), &Utf8, &U64)?;
//! // Lattes per minute, for the windows that started in the last hour:
//! let now = 7_200_000;
//! let lattes = queries.fetch_windows("demand-per-minute", &"latte".to_string(), now - 3_600_000, now, &Utf8, &U64)?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use state::{KeyValueStore, StateError};

use crate::operators::Windowed;
use crate::operators::window::scan_windows;
use crate::partitioner::partition_for_key;
use crate::serdes::{Serde, SerdeError};
use crate::stores::StoreKind;

/// Why a query could not be answered here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The topology has no store with this name.
    #[error("no store named {0}")]
    UnknownStore(String),
    /// The key's partition is not hosted by this instance (another instance
    /// of the application has it, or a rebalance is moving it).
    #[error("store {store}: partition {partition} is not hosted here")]
    NotHosted {
        /// The store.
        store: String,
        /// The key's partition.
        partition: i32,
    },
    /// The key's partition is hosted here but still restoring.
    #[error("store {store}: partition {partition} is still restoring")]
    Restoring {
        /// The store.
        store: String,
        /// The key's partition.
        partition: i32,
    },
    /// The store is of another kind than the query reads: a window store
    /// asked by key, or a key-value store asked for windows.
    #[error("store {store} is a {kind} store; read it with {read_with}")]
    WrongStoreKind {
        /// The store.
        store: String,
        /// What it is: `key-value` or `window`.
        kind: &'static str,
        /// The queries that read it.
        read_with: &'static str,
    },
    /// The store failed.
    #[error("store: {0}")]
    State(#[from] StateError),
    /// A key or value could not be encoded or decoded.
    #[error("serde: {0}")]
    Serde(#[from] SerdeError),
}

/// What an instance knows of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMetadata {
    /// The store's partitions (its sub-topology's tasks) across all instances.
    pub partitions: i32,
    /// The partitions hosted here, and whether each is still restoring.
    pub hosted: BTreeMap<i32, bool>,
}

#[derive(Default)]
struct Registry {
    stores: HashMap<String, Declared>,
}

/// A store of the topology, as this instance knows it.
struct Declared {
    /// Partition count (from start-up).
    partitions: i32,
    kind: StoreKind,
    hosted: BTreeMap<i32, Hosted>,
}

impl Declared {
    /// Refuses a query for the other kind of store.
    fn expect_kind(&self, store: &str, windows: bool) -> Result<(), QueryError> {
        match (self.kind, windows) {
            (StoreKind::KeyValue, false) | (StoreKind::Window { .. }, true) => Ok(()),
            (StoreKind::KeyValue, true) => Err(QueryError::WrongStoreKind {
                store: store.to_owned(),
                kind: "key-value",
                read_with: "get or range",
            }),
            (StoreKind::Window { .. }, false) => Err(QueryError::WrongStoreKind {
                store: store.to_owned(),
                kind: "window",
                read_with: "fetch_windows or all_windows",
            }),
        }
    }

    /// The store of `key`'s partition, if hosted here and not restoring.
    fn hosted_for(&self, store: &str, key: &[u8]) -> Result<Arc<dyn KeyValueStore>, QueryError> {
        let partition = partition_for_key(key, self.partitions);
        let hosted = self
            .hosted
            .get(&partition)
            .ok_or_else(|| QueryError::NotHosted {
                store: store.to_owned(),
                partition,
            })?;
        if hosted.restoring {
            return Err(QueryError::Restoring {
                store: store.to_owned(),
                partition,
            });
        }
        Ok(Arc::clone(&hosted.store))
    }

    /// The stores of every partition hosted here and not restoring.
    fn ready(&self) -> Vec<Arc<dyn KeyValueStore>> {
        self.hosted
            .values()
            .filter(|h| !h.restoring)
            .map(|h| Arc::clone(&h.store))
            .collect()
    }
}

struct Hosted {
    store: Arc<dyn KeyValueStore>,
    restoring: bool,
}

/// A handle for interactive queries; clones share it.
#[derive(Clone, Default)]
pub struct Queries {
    registry: Arc<RwLock<Registry>>,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queries").finish_non_exhaustive()
    }
}

impl Queries {
    /// The value of `key` in `store`.
    pub fn get<K, V>(
        &self,
        store: &str,
        key: &K,
        key_serde: &impl Serde<K>,
        value_serde: &impl Serde<V>,
    ) -> Result<Option<V>, QueryError> {
        let key = key_serde.serialize(key)?;
        let hosted = {
            let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            let declared = registry.declared(store)?;
            declared.expect_kind(store, false)?;
            declared.hosted_for(store, &key)?
        };
        Ok(hosted
            .get(&key)?
            .map(|bytes| value_serde.deserialize(&bytes))
            .transpose()?)
    }

    /// The partition that holds `key` in `store`.
    pub fn partition_of<K>(
        &self,
        store: &str,
        key: &K,
        key_serde: &impl Serde<K>,
    ) -> Result<i32, QueryError> {
        let key = key_serde.serialize(key)?;
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        Ok(partition_for_key(
            &key,
            registry.declared(store)?.partitions,
        ))
    }

    /// Every entry of `store` in the partitions hosted here and not
    /// restoring, ordered by key bytes; with `from`/`to`, only keys whose
    /// bytes lie in `from..to`.
    pub fn range<K, V>(
        &self,
        store: &str,
        from: Option<&K>,
        to: Option<&K>,
        key_serde: &impl Serde<K>,
        value_serde: &impl Serde<V>,
    ) -> Result<Vec<(K, V)>, QueryError> {
        let from = from.map(|key| key_serde.serialize(key)).transpose()?;
        let to = to.map(|key| key_serde.serialize(key)).transpose()?;
        let stores = {
            let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            let declared = registry.declared(store)?;
            declared.expect_kind(store, false)?;
            declared.ready()
        };
        let mut entries = Vec::new();
        for hosted in stores {
            for entry in hosted.range(from.as_deref(), to.as_deref())? {
                entries.push(entry?);
            }
        }
        entries.sort();
        entries
            .into_iter()
            .map(|(key, value)| {
                Ok((
                    key_serde.deserialize(&key)?,
                    value_serde.deserialize(&value)?,
                ))
            })
            .collect()
    }

    /// The windows of `key` in window store `store` whose start lies in
    /// `from_ms..=to_ms`, by ascending start. Like [`Queries::get`], the
    /// key's partition must be hosted here and not restoring. Windows are
    /// kept until their retention passes (see
    /// [`TimeWindows::retention`](crate::operators::TimeWindows::retention)),
    /// whether they are still open or already closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use engine::operators::{TimeWindows, Windowed};
    /// use engine::serdes::{U64, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let minute = Duration::from_secs(60);
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .group_by(|_id: &String, drink: &String| drink.clone(), Utf8, Utf8)
    ///     .windowed_by(TimeWindows::tumbling(minute).retention(Duration::from_secs(3_600)))
    ///     .count("demand-per-minute");
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let orders = driver.input_topic("orders", Utf8, Utf8);
    /// driver.pipe_at(&orders, "o1".into(), "latte".into(), 1_000)?;
    /// driver.pipe_at(&orders, "o2".into(), "latte".into(), 61_000)?;
    /// driver.pipe_at(&orders, "o3".into(), "latte".into(), 62_000)?;
    ///
    /// let queries = driver.queries();
    /// let lattes = queries.fetch_windows("demand-per-minute", &"latte".to_string(), 0, 120_000, &Utf8, &U64)?;
    /// let window = |start| Windowed { key: "latte".to_string(), start, end: start + 60_000 };
    /// // The first minute has closed but is kept for an hour.
    /// assert_eq!(lattes, [(window(0), 1), (window(60_000), 2)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fetch_windows<K, V>(
        &self,
        store: &str,
        key: &K,
        from_ms: i64,
        to_ms: i64,
        key_serde: &impl Serde<K>,
        value_serde: &impl Serde<V>,
    ) -> Result<Vec<(Windowed<K>, V)>, QueryError> {
        let key = key_serde.serialize(key)?;
        let (hosted, size) = {
            let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            let declared = registry.declared(store)?;
            declared.expect_kind(store, true)?;
            (declared.hosted_for(store, &key)?, declared.window_size())
        };
        // Windows are kept time-first: scan the span, keep this key's.
        scan_windows(hosted.as_ref(), from_ms, to_ms)?
            .into_iter()
            .filter(|(_, stored, _)| *stored == key)
            .map(|(start, stored, value)| {
                decode_window(start, &stored, &value, size, key_serde, value_serde)
            })
            .collect()
    }

    /// The windows of every key in window store `store` whose start lies
    /// in `from_ms..=to_ms`, over the partitions hosted here and not
    /// restoring (like [`Queries::range`]), ordered by start, then by key
    /// bytes.
    pub fn all_windows<K, V>(
        &self,
        store: &str,
        from_ms: i64,
        to_ms: i64,
        key_serde: &impl Serde<K>,
        value_serde: &impl Serde<V>,
    ) -> Result<Vec<(Windowed<K>, V)>, QueryError> {
        let (stores, size) = {
            let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            let declared = registry.declared(store)?;
            declared.expect_kind(store, true)?;
            (declared.ready(), declared.window_size())
        };
        let mut windows = Vec::new();
        for hosted in stores {
            windows.extend(scan_windows(hosted.as_ref(), from_ms, to_ms)?);
        }
        windows.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        windows
            .into_iter()
            .map(|(start, key, value)| {
                decode_window(start, &key, &value, size, key_serde, value_serde)
            })
            .collect()
    }

    /// What this instance knows of `store`, if the topology has it.
    pub fn metadata(&self, store: &str) -> Option<StoreMetadata> {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        registry.stores.get(store).map(|declared| StoreMetadata {
            partitions: declared.partitions,
            hosted: declared
                .hosted
                .iter()
                .map(|(p, h)| (*p, h.restoring))
                .collect(),
        })
    }

    pub(crate) fn declare(&self, store: &str, partitions: i32, kind: StoreKind) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let declared = registry
            .stores
            .entry(store.to_owned())
            .or_insert_with(|| Declared {
                partitions,
                kind,
                hosted: BTreeMap::new(),
            });
        declared.partitions = partitions;
        declared.kind = kind;
    }

    pub(crate) fn host(
        &self,
        store: &str,
        partition: i32,
        handle: Arc<dyn KeyValueStore>,
        restoring: bool,
    ) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(declared) = registry.stores.get_mut(store) {
            declared.hosted.insert(
                partition,
                Hosted {
                    store: handle,
                    restoring,
                },
            );
        }
    }

    pub(crate) fn restored(&self, store: &str, partition: i32) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(hosted) = registry
            .stores
            .get_mut(store)
            .and_then(|declared| declared.hosted.get_mut(&partition))
        {
            hosted.restoring = false;
        }
    }

    /// Entries of each store over the partitions hosted here (restoring
    /// ones included), for metrics: each store's count is kept as it is
    /// written, so this is cheap enough for every scrape.
    pub(crate) fn store_entries(&self) -> Vec<(String, u64)> {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        registry
            .stores
            .iter()
            .map(|(name, declared)| {
                let entries = declared
                    .hosted
                    .values()
                    .map(|hosted| hosted.store.approximate_len())
                    .sum();
                (name.clone(), entries)
            })
            .collect()
    }

    pub(crate) fn unhost(&self, store: &str, partition: i32) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(declared) = registry.stores.get_mut(store) {
            declared.hosted.remove(&partition);
        }
    }
}

impl Registry {
    fn declared(&self, store: &str) -> Result<&Declared, QueryError> {
        self.stores
            .get(store)
            .ok_or_else(|| QueryError::UnknownStore(store.to_owned()))
    }
}

impl Declared {
    /// The window size of a window store (0 for any other store).
    fn window_size(&self) -> i64 {
        match self.kind {
            StoreKind::Window { size_ms } => size_ms,
            StoreKind::KeyValue => 0,
        }
    }
}

/// A stored window as the caller's types.
fn decode_window<K, V>(
    start: i64,
    key: &[u8],
    value: &[u8],
    size: i64,
    key_serde: &impl Serde<K>,
    value_serde: &impl Serde<V>,
) -> Result<(Windowed<K>, V), QueryError> {
    let windowed = Windowed {
        key: key_serde.deserialize(key)?,
        start,
        end: start.saturating_add(size),
    };
    Ok((windowed, value_serde.deserialize(value)?))
}
