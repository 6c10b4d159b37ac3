//! `count`, `reduce` and `aggregate`: fold each key's records into a table
//! kept in a named, changelogged store.

use std::sync::Arc;

use crate::operators::group::GroupedStream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};
use crate::serdes::{Serde, U64};
use crate::stores::{KvStore, StoreKind, StoreSpec};
use crate::table::{Lookup, Table};

/// One fold step; an `Err` fails the record (it follows the operator's
/// error policy and leaves the store untouched).
type Step<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> Result<A, String> + Send + Sync>;

impl<K: Data, V: Data> GroupedStream<K, V> {
    /// Counts the records of each key, in store `store` (also the
    /// operator's name). Every record updates its key's count and emits it.
    ///
    /// ```
    /// use engine::serdes::{U64, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .group_by(|_id: &String, drink: &String| drink.clone(), Utf8, Utf8)
    ///     .count("orders-per-drink")
    ///     .to_stream()
    ///     .to("drink-counts", Utf8, U64);
    /// let mut driver = TestDriver::builder(builder.build()?).default_partitions(4).build()?;
    /// let orders = driver.input_topic("orders", Utf8, Utf8);
    /// for (id, drink) in [("o1", "latte"), ("o2", "mocha"), ("o3", "latte")] {
    ///     driver.pipe(&orders, id.into(), drink.into())?;
    /// }
    /// assert_eq!(driver.store_get("orders-per-drink", &"latte".to_string(), Utf8, U64)?, Some(2));
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn count(self, store: &str) -> Table<K, u64> {
        self.fold(
            "count",
            store,
            Arc::new(U64),
            Arc::new(|_, _, count| Ok(count.unwrap_or(0) + 1)),
        )
    }

    /// Combines each key's records with `f(aggregate, value)`; the first
    /// record of a key is its aggregate as it is.
    ///
    /// ```
    /// use engine::serdes::{Json, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("spend", Utf8, Json::<u32>::new())
    ///     .group_by_key(Utf8, Json::<u32>::new())
    ///     .reduce("total-spend", |total, amount| total + amount);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let spend = driver.input_topic("spend", Utf8, Json::<u32>::new());
    /// driver.pipe(&spend, "ada".into(), 3)?;
    /// driver.pipe(&spend, "ada".into(), 4)?;
    /// let total = driver.store_get("total-spend", &"ada".to_string(), Utf8, Json::<u32>::new())?;
    /// assert_eq!(total, Some(7));
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn reduce<F>(self, store: &str, f: F) -> Table<K, V>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let value_serde = Arc::clone(&self.value_serde);
        self.fold(
            "reduce",
            store,
            value_serde,
            Arc::new(move |_, value, current| {
                Ok(match current {
                    Some(current) => f(current, value),
                    None => value,
                })
            }),
        )
    }

    /// Folds each key's records into an aggregate of type `A`, starting from
    /// `init()`, kept in store `store` with `aggregate_serde`.
    ///
    /// ```
    /// use engine::serdes::{Json, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Default)]
    /// struct Stats { orders: u32, spent: u32 }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("spend", Utf8, Json::<u32>::new())
    ///     .group_by_key(Utf8, Json::<u32>::new())
    ///     .aggregate("customer-stats", Json::<Stats>::new(), Stats::default, |_customer, amount, stats| {
    ///         Stats { orders: stats.orders + 1, spent: stats.spent + amount }
    ///     });
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let spend = driver.input_topic("spend", Utf8, Json::<u32>::new());
    /// driver.pipe(&spend, "ada".into(), 3)?;
    /// driver.pipe(&spend, "ada".into(), 4)?;
    /// let stats = driver.store_get("customer-stats", &"ada".to_string(), Utf8, Json::<Stats>::new())?;
    /// assert_eq!(stats, Some(Stats { orders: 2, spent: 7 }));
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn aggregate<A: Data, I, F>(
        self,
        store: &str,
        aggregate_serde: impl Serde<A>,
        init: I,
        f: F,
    ) -> Table<K, A>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&K, V, A) -> A + Send + Sync + 'static,
    {
        self.fold(
            "aggregate",
            store,
            Arc::new(aggregate_serde),
            Arc::new(move |key, value, current| Ok(f(key, value, current.unwrap_or_else(&init)))),
        )
    }

    /// Like [`GroupedStream::aggregate`], but `f` sees whether the key has
    /// an aggregate yet and may refuse a record: an `Err` sends the record
    /// where the operator's [`ErrorPolicy`](crate::ErrorPolicy) says (by
    /// default the dead-letter topic, with the error as its reason) and
    /// leaves the key's aggregate as it was. Suited to state machines that
    /// must reject commands, such as an order that is cancelled twice.
    ///
    /// ```
    /// use engine::serdes::{Json, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("deposits", Utf8, Json::<i64>::new())
    ///     .group_by_key(Utf8, Json::<i64>::new())
    ///     .try_aggregate("balances", Json::<i64>::new(), |_account, amount, balance| {
    ///         let balance = balance.unwrap_or(0) + amount;
    ///         if balance < 0 { Err(format!("would overdraw to {balance}")) } else { Ok(balance) }
    ///     });
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let deposits = driver.input_topic("deposits", Utf8, Json::<i64>::new());
    /// driver.pipe(&deposits, "ada".into(), 5)?;
    /// driver.pipe(&deposits, "ada".into(), -7)?; // refused: dead-lettered
    /// driver.pipe(&deposits, "ada".into(), -2)?;
    /// assert_eq!(driver.store_get("balances", &"ada".to_string(), Utf8, Json::<i64>::new())?, Some(3));
    /// let refused = driver.dead_letters();
    /// assert_eq!(refused.len(), 1);
    /// assert!(refused[0].message.contains("overdraw"));
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn try_aggregate<A: Data, E, F>(
        self,
        store: &str,
        aggregate_serde: impl Serde<A>,
        f: F,
    ) -> Table<K, A>
    where
        E: std::fmt::Display,
        F: Fn(&K, V, Option<A>) -> Result<A, E> + Send + Sync + 'static,
    {
        self.fold(
            "try-aggregate",
            store,
            Arc::new(aggregate_serde),
            Arc::new(move |key, value, current| {
                f(key, value, current).map_err(|error| error.to_string())
            }),
        )
    }

    fn fold<A: Data>(
        self,
        operator: &'static str,
        store: &str,
        aggregate_serde: Arc<dyn Serde<A>>,
        step: Step<K, V, A>,
    ) -> Table<K, A> {
        let input = self.input(store);
        let key_serde = Arc::clone(&self.key_serde);
        let lookup_serdes = (Arc::clone(&self.key_serde), Arc::clone(&aggregate_serde));
        let store_name = store.to_owned();
        let spec = StoreSpec {
            name: store_name.clone(),
            kind: StoreKind::KeyValue,
        };
        let changes: crate::Stream<K, Option<A>> =
            input.add_stateful(operator, vec![spec], move |id, children, env| {
                let (index, handle) = env.store(&store_name)?;
                let store = KvStore::new(
                    index,
                    handle,
                    id,
                    Arc::clone(&key_serde),
                    Arc::clone(&aggregate_serde),
                );
                let step = Arc::clone(&step);
                let mut out = Emitter::<K, Option<A>>::from_built(id, children)?;
                let entry: Downstream<K, V> =
                    Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                        ctx.enter(id);
                        let Some(key_bytes) = store.encode_key(&record.key, ctx) else {
                            return;
                        };
                        let Ok(current) = store.get(&key_bytes, ctx) else {
                            return;
                        };
                        let updated = match step(&record.key, record.value, current) {
                            Ok(updated) => updated,
                            Err(reason) => {
                                return ctx.fail(id, crate::error::ErrorClass::Processing, reason);
                            }
                        };
                        if store
                            .put(key_bytes, &updated, record.timestamp, ctx)
                            .is_err()
                        {
                            return;
                        }
                        out.emit(
                            Record {
                                key: record.key,
                                value: Some(updated),
                                timestamp: record.timestamp,
                            },
                            ctx,
                        );
                    });
                Ok(built(entry))
            });
        let changes = changes.name(store);
        let lookup = Lookup {
            store: store.to_owned(),
            node: changes.node,
            key_serde: lookup_serdes.0,
            value_serde: lookup_serdes.1,
        };
        Table {
            changes,
            store: Some(store.to_owned()),
            lookup: Some(lookup),
        }
    }
}
