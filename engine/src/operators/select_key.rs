//! `select_key`: a new key computed from each record.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Gives every record a new key computed from its key and value. Like
    /// [`Stream::map`], it does not move records between partitions: follow
    /// it with [`Stream::repartition`] when the new key must decide the
    /// partition.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .select_key(|_id: &String, customer: &String| customer.clone())
    ///     .to("by-customer", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("orders", Utf8, Utf8);
    /// driver.pipe(&input, "order-1".into(), "ada".into())?;
    /// let output = driver.output_topic("by-customer", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?, [("ada".to_string(), "ada".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn select_key<K2: Data, F>(self, f: F) -> Stream<K2, V>
    where
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then("select-key", move |id, children, _env| {
            let f = Arc::clone(&f);
            let mut out = Emitter::<K2, V>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                let key = f(&record.key, &record.value);
                out.emit(
                    Record {
                        key,
                        value: record.value,
                        timestamp: record.timestamp,
                    },
                    ctx,
                );
            });
            Ok(built(entry))
        })
    }
}
