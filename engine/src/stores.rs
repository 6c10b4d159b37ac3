//! State stores as operators see them: typed, changelogged, and written
//! only when the record that wrote them has been fully processed.
//!
//! An operator declares its stores by name when it is added to a topology,
//! so the runtime can open and restore them before the task processes
//! anything. In a task, a store write goes to a per-record buffer first
//! (reads see it); when the record is done without error, the buffer is
//! applied to the store and each write is also sent to the store's
//! compacted changelog topic, `<application-id>-<store>-changelog`, in the
//! task's partition. A record that fails leaves the store untouched.

use std::sync::Arc;

use state::{KeyValueStore, StateError};

use crate::error::ErrorClass;
use crate::processor::Ctx;
use crate::record::OutputRecord;
use crate::serdes::Serde;

/// The kind of a declared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A key-value store.
    KeyValue,
    /// Time windows of `size_ms` milliseconds, one value per key and
    /// window. They are kept in a key-value store under time-first keys
    /// (window start, then key: [`state::window::encode_index_key`]), so
    /// closing and expiring windows are range scans in time order;
    /// interactive queries read them with
    /// [`Queries::fetch_windows`](crate::queries::Queries::fetch_windows).
    Window {
        /// The window size.
        size_ms: i64,
    },
}

/// A store an operator declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// The store's name, unique in the topology.
    pub name: String,
    /// Its kind.
    pub kind: StoreKind,
}

/// The changelog topic of `store` for `application_id`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// One opened store of a task, with where its changelog goes.
#[derive(Clone)]
pub(crate) struct OpenStore {
    pub(crate) name: String,
    pub(crate) store: Arc<dyn KeyValueStore>,
    /// Changelog topic and the task's partition; `None` when not logged.
    pub(crate) changelog: Option<(Arc<str>, i32)>,
}

/// A write waiting for its record to finish.
pub(crate) struct PendingWrite {
    pub(crate) store: usize,
    pub(crate) key: Vec<u8>,
    /// `None` deletes.
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
}

/// Applies the writes of a fully processed record to their stores and
/// queues their changelog records.
pub(crate) fn apply_pending(stores: &[OpenStore], ctx: &mut Ctx) -> Result<(), StateError> {
    for write in std::mem::take(&mut ctx.pending) {
        let Some(open) = stores.get(write.store) else {
            continue;
        };
        match &write.value {
            Some(value) => open.store.put(&write.key, value)?,
            None => open.store.delete(&write.key)?,
        }
        if let Some((topic, partition)) = &open.changelog {
            ctx.outputs.push(OutputRecord {
                topic: Arc::clone(topic),
                partition: Some(*partition),
                key: Some(write.key),
                value: write.value,
                timestamp: write.timestamp,
                headers: Vec::new(),
            });
        }
    }
    Ok(())
}

/// A typed key-value store handle for one operator in one task.
pub(crate) struct KvStore<K, V> {
    index: usize,
    store: Arc<dyn KeyValueStore>,
    node: usize,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K: 'static, V: 'static> KvStore<K, V> {
    pub(crate) fn new(
        index: usize,
        store: Arc<dyn KeyValueStore>,
        node: usize,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> Self {
        Self {
            index,
            store,
            node,
            key_serde,
            value_serde,
        }
    }

    /// The encoded key, or `None` after recording the error in `ctx`.
    pub(crate) fn encode_key(&self, key: &K, ctx: &mut Ctx) -> Option<Vec<u8>> {
        match self.key_serde.serialize(key) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                ctx.fail(
                    self.node,
                    ErrorClass::Serialization,
                    format!("store key: {error}"),
                );
                None
            }
        }
    }

    /// The value of `key` as this record sees it (its own pending writes
    /// first). `Err(())` means the error is already recorded in `ctx`.
    pub(crate) fn get(&self, key: &[u8], ctx: &mut Ctx) -> Result<Option<V>, ()> {
        let pending = ctx
            .pending
            .iter()
            .rev()
            .find(|write| write.store == self.index && write.key == key)
            .map(|write| write.value.clone());
        let bytes = match pending {
            Some(value) => value,
            None => match self.store.get(key) {
                Ok(value) => value,
                Err(error) => {
                    ctx.fail(
                        self.node,
                        ErrorClass::State,
                        format!("reading the store: {error}"),
                    );
                    return Err(());
                }
            },
        };
        match bytes
            .map(|bytes| self.value_serde.deserialize(&bytes))
            .transpose()
        {
            Ok(value) => Ok(value),
            Err(error) => {
                // A value this operator wrote but cannot read back: the
                // store's format changed under it. Not the record's fault.
                ctx.fail(
                    self.node,
                    ErrorClass::State,
                    format!("decoding a stored value: {error}"),
                );
                Err(())
            }
        }
    }

    /// Buffers `key = value` until the record is done.
    pub(crate) fn put(
        &self,
        key: Vec<u8>,
        value: &V,
        timestamp: i64,
        ctx: &mut Ctx,
    ) -> Result<(), ()> {
        match self.value_serde.serialize(value) {
            Ok(bytes) => {
                ctx.pending.push(PendingWrite {
                    store: self.index,
                    key,
                    value: Some(bytes),
                    timestamp,
                });
                Ok(())
            }
            Err(error) => {
                ctx.fail(
                    self.node,
                    ErrorClass::Serialization,
                    format!("store value: {error}"),
                );
                Err(())
            }
        }
    }

    /// Buffers the deletion of `key` until the record is done.
    pub(crate) fn delete(&self, key: Vec<u8>, timestamp: i64, ctx: &mut Ctx) {
        ctx.pending.push(PendingWrite {
            store: self.index,
            key,
            value: None,
            timestamp,
        });
    }

    /// Buffers `key = value` for an already encoded value.
    pub(crate) fn put_raw(&self, key: Vec<u8>, value: Vec<u8>, timestamp: i64, ctx: &mut Ctx) {
        ctx.pending.push(PendingWrite {
            store: self.index,
            key,
            value: Some(value),
            timestamp,
        });
    }
}
