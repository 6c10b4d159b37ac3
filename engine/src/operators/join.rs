//! `join` / `left_join`: enrich each stream record with the current value
//! of its key in a table.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};
use crate::stores::KvStore;
use crate::table::Table;

type Joiner<V, VT, VR> = Arc<dyn Fn(V, Option<VT>) -> Option<VR> + Send + Sync>;

impl<K: Data, V: Data> Stream<K, V> {
    /// Joins each record with its key's current value in `table`; records
    /// whose key is not in the table are dropped. The table is read as it is
    /// when the record is processed: a later table update does not join
    /// earlier records. The stream and the table's topic must be
    /// co-partitioned (same partition count, same keys), and the stream
    /// must not have been re-keyed since its source without a repartition.
    ///
    /// ```
    /// use engine::serdes::Utf8;
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// let prices = builder.table("prices", Utf8, Utf8, "prices-by-drink");
    /// builder
    ///     .stream("orders", Utf8, Utf8) // keyed by drink
    ///     .join(&prices, |customer: String, price: String| format!("{customer} pays {price}"))
    ///     .to("bills", Utf8, Utf8);
    /// let mut driver = TestDriver::builder(builder.build()?).default_partitions(2).build()?;
    /// let (orders, prices) = (driver.input_topic("orders", Utf8, Utf8), driver.input_topic("prices", Utf8, Utf8));
    /// driver.pipe(&orders, "latte".into(), "ada".into())?; // no price yet: dropped
    /// driver.pipe(&prices, "latte".into(), "3.40".into())?;
    /// driver.pipe(&orders, "latte".into(), "bob".into())?;
    /// let bills = driver.output_topic("bills", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&bills)?, [("latte".to_string(), "bob pays 3.40".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn join<VT: Data, VR: Data, F>(self, table: &Table<K, VT>, f: F) -> Stream<K, VR>
    where
        F: Fn(V, VT) -> VR + Send + Sync + 'static,
    {
        self.join_table(
            "join",
            table,
            Arc::new(move |value, found| found.map(|found| f(value, found))),
        )
    }

    /// Like [`Stream::join`], but every record goes on: `f` gets `None`
    /// when the key is not in the table.
    pub fn left_join<VT: Data, VR: Data, F>(self, table: &Table<K, VT>, f: F) -> Stream<K, VR>
    where
        F: Fn(V, Option<VT>) -> VR + Send + Sync + 'static,
    {
        self.join_table(
            "left-join",
            table,
            Arc::new(move |value, found| Some(f(value, found))),
        )
    }

    fn join_table<VT: Data, VR: Data>(
        self,
        operator: &'static str,
        table: &Table<K, VT>,
        joiner: Joiner<V, VT, VR>,
    ) -> Stream<K, VR> {
        let Some(lookup) = table.lookup.clone() else {
            self.record_error(format!(
                "{operator}: only a table kept in its own store (count, reduce, aggregate or \
                 table) can be joined; this one is derived from one by filter or map_values"
            ));
            return self.add_linked(operator, Vec::new(), |_, _, _| {
                Err(crate::EngineError::Internal(
                    "an invalid join was built".into(),
                ))
            });
        };
        if self.key_changed() {
            self.record_error(format!(
                "{operator} with table {}: the stream was re-keyed; repartition it first so each \
                 record reaches the task that holds its key",
                lookup.store
            ));
        }
        let link = lookup.node;
        self.add_linked(operator, vec![link], move |id, children, env| {
            let (index, handle) = env.store(&lookup.store)?;
            let store: KvStore<K, VT> = KvStore::new(
                index,
                handle,
                id,
                Arc::clone(&lookup.key_serde),
                Arc::clone(&lookup.value_serde),
            );
            let joiner = Arc::clone(&joiner);
            let mut out = Emitter::<K, VR>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                let Some(key) = store.encode_key(&record.key, ctx) else {
                    return;
                };
                let Ok(found) = store.get(&key, ctx) else {
                    return;
                };
                if let Some(value) = joiner(record.value, found) {
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
}
