//! Tables: the latest value of each key, as a changing stream of updates.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

/// A table: for each key, its latest value. It is carried as a stream of
/// changes (`Some(value)` sets a key, `None` deletes it); an aggregation
/// keeps it in a named store.
pub struct Table<K, V> {
    pub(crate) changes: Stream<K, Option<V>>,
    pub(crate) store: Option<String>,
    /// How to look a key up, for joins: set when the table's own store
    /// holds exactly its entries under its key.
    pub(crate) lookup: Option<Lookup<K, V>>,
}

/// Where and how a table's entries can be read by key.
pub(crate) struct Lookup<K, V> {
    pub(crate) store: String,
    pub(crate) node: crate::topology::NodeId,
    pub(crate) key_serde: Arc<dyn crate::serdes::Serde<K>>,
    pub(crate) value_serde: Arc<dyn crate::serdes::Serde<V>>,
}

impl<K, V> Clone for Lookup<K, V> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            node: self.node,
            key_serde: Arc::clone(&self.key_serde),
            value_serde: Arc::clone(&self.value_serde),
        }
    }
}

impl<K: Data, V: Data> Table<K, V> {
    /// The store that holds this table, when it is kept in one.
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// Every update as a record; deletions are dropped.
    pub fn to_stream(self) -> Stream<K, V> {
        self.changes.then("to-stream", move |id, children, _env| {
            let mut out = Emitter::<K, V>::from_built(id, children)?;
            let entry: Downstream<K, Option<V>> =
                Box::new(move |record: Record<K, Option<V>>, ctx: &mut Ctx| {
                    ctx.enter(id);
                    if let Some(value) = record.value {
                        out.emit(
                            Record {
                                key: record.key,
                                value,
                                timestamp: record.timestamp,
                            },
                            ctx,
                        );
                    }
                });
            Ok(built(entry))
        })
    }

    /// Every change, deletions included (as `None`).
    pub fn to_change_stream(self) -> Stream<K, Option<V>> {
        self.changes
    }

    /// A table of the entries `predicate` accepts: an update it rejects
    /// deletes the key downstream.
    ///
    /// ```
    /// use engine::serdes::{U64, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .group_by_key(Utf8, Utf8)
    ///     .count("orders-per-customer")
    ///     .filter(|_customer, count| *count >= 2)
    ///     .to_stream()
    ///     .to("regulars", Utf8, U64);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let orders = driver.input_topic("orders", Utf8, Utf8);
    /// for customer in ["ada", "bob", "ada"] {
    ///     driver.pipe(&orders, customer.into(), "latte".into())?;
    /// }
    /// let regulars = driver.output_topic("regulars", Utf8, U64);
    /// assert_eq!(driver.read_key_values(&regulars)?, [("ada".to_string(), 2)]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn filter<F>(self, predicate: F) -> Table<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        let changes = self
            .changes
            .then("table-filter", move |id, children, _env| {
                let predicate = Arc::clone(&predicate);
                let mut out = Emitter::<K, Option<V>>::from_built(id, children)?;
                let entry: Downstream<K, Option<V>> =
                    Box::new(move |record: Record<K, Option<V>>, ctx: &mut Ctx| {
                        ctx.enter(id);
                        let value = record.value.filter(|value| predicate(&record.key, value));
                        out.emit(
                            Record {
                                key: record.key,
                                value,
                                timestamp: record.timestamp,
                            },
                            ctx,
                        );
                    });
                Ok(built(entry))
            });
        Table {
            changes,
            store: None,
            lookup: None,
        }
    }

    /// A table of `f(value)` for every entry.
    ///
    /// ```
    /// use engine::serdes::Utf8;
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .group_by_key(Utf8, Utf8)
    ///     .count("orders-per-customer")
    ///     .map_values(|count| format!("{count} orders"))
    ///     .to_stream()
    ///     .to("summaries", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let orders = driver.input_topic("orders", Utf8, Utf8);
    /// driver.pipe(&orders, "ada".into(), "latte".into())?;
    /// let summaries = driver.output_topic("summaries", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&summaries)?, [("ada".to_string(), "1 orders".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn map_values<V2: Data, F>(self, f: F) -> Table<K, V2>
    where
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let changes = self
            .changes
            .then("table-map-values", move |id, children, _env| {
                let f = Arc::clone(&f);
                let mut out = Emitter::<K, Option<V2>>::from_built(id, children)?;
                let entry: Downstream<K, Option<V>> =
                    Box::new(move |record: Record<K, Option<V>>, ctx: &mut Ctx| {
                        ctx.enter(id);
                        let value = record.value.map(|value| f(value));
                        out.emit(
                            Record {
                                key: record.key,
                                value,
                                timestamp: record.timestamp,
                            },
                            ctx,
                        );
                    });
                Ok(built(entry))
            });
        Table {
            changes,
            store: None,
            lookup: None,
        }
    }
}
