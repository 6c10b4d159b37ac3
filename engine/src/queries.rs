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
//! ```no_run
//! # fn demo(streams: &engine::KafkaStreams) -> Result<(), engine::queries::QueryError> {
//! use engine::serdes::{U64, Utf8};
//!
//! let queries = streams.queries();
//! // … while `streams.run(…)` runs on another task:
//! let count: Option<u64> = queries.get("orders-per-customer", &"ada".to_string(), &Utf8, &U64)?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use state::{KeyValueStore, StateError};

use crate::partitioner::partition_for_key;
use crate::serdes::{Serde, SerdeError};

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
    /// Store → partition count (from start-up) and hosted partitions.
    stores: HashMap<String, (i32, BTreeMap<i32, Hosted>)>,
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
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        let (partitions, hosted) = registry
            .stores
            .get(store)
            .ok_or_else(|| QueryError::UnknownStore(store.to_owned()))?;
        let partition = partition_for_key(&key, *partitions);
        let hosted = hosted
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
        Ok(hosted
            .store
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
        let (partitions, _) = registry
            .stores
            .get(store)
            .ok_or_else(|| QueryError::UnknownStore(store.to_owned()))?;
        Ok(partition_for_key(&key, *partitions))
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
        let stores: Vec<Arc<dyn KeyValueStore>> = {
            let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            let (_, hosted) = registry
                .stores
                .get(store)
                .ok_or_else(|| QueryError::UnknownStore(store.to_owned()))?;
            hosted
                .values()
                .filter(|h| !h.restoring)
                .map(|h| Arc::clone(&h.store))
                .collect()
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

    /// What this instance knows of `store`, if the topology has it.
    pub fn metadata(&self, store: &str) -> Option<StoreMetadata> {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        registry
            .stores
            .get(store)
            .map(|(partitions, hosted)| StoreMetadata {
                partitions: *partitions,
                hosted: hosted.iter().map(|(p, h)| (*p, h.restoring)).collect(),
            })
    }

    pub(crate) fn declare(&self, store: &str, partitions: i32) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        registry
            .stores
            .entry(store.to_owned())
            .or_insert_with(|| (partitions, BTreeMap::new()))
            .0 = partitions;
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
        if let Some((_, hosted)) = registry.stores.get_mut(store) {
            hosted.insert(
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
            .and_then(|(_, h)| h.get_mut(&partition))
        {
            hosted.restoring = false;
        }
    }

    pub(crate) fn unhost(&self, store: &str, partition: i32) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, hosted)) = registry.stores.get_mut(store) {
            hosted.remove(&partition);
        }
    }
}
