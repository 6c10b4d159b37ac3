//! `table`: read a topic as a table — the latest value per key, a record
//! without a value deleting its key.

use std::sync::Arc;

use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};
use crate::serdes::{Nullable, Serde};
use crate::stores::{KvStore, StoreKind, StoreSpec};
use crate::table::{Lookup, Table};
use crate::topology::TopicName;
use crate::{Stream, StreamsBuilder};

impl StreamsBuilder {
    /// Reads `topic` as a table kept in store `store`: each record sets its
    /// key, a record without a value (a tombstone) deletes it. The table can
    /// be joined by streams co-partitioned with `topic`.
    ///
    /// ```
    /// use engine::serdes::Utf8;
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.table("prices", Utf8, Utf8, "prices-by-drink");
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let prices = driver.input_topic("prices", Utf8, Utf8);
    /// driver.pipe(&prices, "latte".into(), "3.20".into())?;
    /// driver.pipe(&prices, "latte".into(), "3.40".into())?;
    /// driver.pipe_raw("prices", None, Some(b"mocha".to_vec()), Some(b"4.00".to_vec()), 0)?;
    /// driver.pipe_raw("prices", None, Some(b"mocha".to_vec()), None, 0)?; // deletes mocha
    /// assert_eq!(
    ///     driver.store_entries("prices-by-drink", Utf8, Utf8)?,
    ///     [("latte".to_string(), "3.40".to_string())]
    /// );
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn table<K: Data, V: Data, KS, VS>(
        &self,
        topic: &str,
        key_serde: KS,
        value_serde: VS,
        store: &str,
    ) -> Table<K, V>
    where
        KS: Serde<K> + Clone,
        VS: Serde<V> + Clone,
    {
        let source: Stream<K, Option<V>> = self.source(
            vec![TopicName::External(topic.to_owned())],
            key_serde.clone(),
            Nullable(value_serde.clone()),
        );
        let key_serde: Arc<dyn Serde<K>> = Arc::new(key_serde);
        let value_serde: Arc<dyn Serde<V>> = Arc::new(value_serde);
        let (lookup_key, lookup_value) = (Arc::clone(&key_serde), Arc::clone(&value_serde));
        let store_name = store.to_owned();
        let spec = StoreSpec {
            name: store_name.clone(),
            kind: StoreKind::KeyValue,
        };
        let changes: Stream<K, Option<V>> =
            source.add_stateful("table", vec![spec], move |id, children, env| {
                let (index, handle) = env.store(&store_name)?;
                let store = KvStore::new(
                    index,
                    handle,
                    id,
                    Arc::clone(&key_serde),
                    Arc::clone(&value_serde),
                );
                let mut out = Emitter::<K, Option<V>>::from_built(id, children)?;
                let entry: Downstream<K, Option<V>> =
                    Box::new(move |record: Record<K, Option<V>>, ctx: &mut Ctx| {
                        ctx.enter(id);
                        let Some(key) = store.encode_key(&record.key, ctx) else {
                            return;
                        };
                        match &record.value {
                            Some(value) => {
                                if store.put(key, value, record.timestamp, ctx).is_err() {
                                    return;
                                }
                            }
                            None => store.delete(key, record.timestamp, ctx),
                        }
                        out.emit(record, ctx);
                    });
                Ok(built(entry))
            });
        let changes = changes.name(store);
        let lookup = Lookup {
            store: store.to_owned(),
            node: changes.node,
            key_serde: lookup_key,
            value_serde: lookup_value,
        };
        Table {
            changes,
            store: Some(store.to_owned()),
            lookup: Some(lookup),
        }
    }
}
