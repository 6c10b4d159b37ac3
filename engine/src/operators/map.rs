//! `map`: a new key and value for every record.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Turns every record's key and value into a new key and value. The new
    /// key does not move the record to another partition; follow with
    /// [`Stream::repartition`] before grouping by it.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("in", Utf8, Utf8)
    ///     .map(|key: String, value: String| (value, key))
    ///     .to("out", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("in", Utf8, Utf8);
    /// driver.pipe(&input, "k".into(), "v".into())?;
    /// let output = driver.output_topic("out", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?, [("v".to_string(), "k".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn map<K2: Data, V2: Data, F>(self, f: F) -> Stream<K2, V2>
    where
        F: Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then("map", move |id, children, _env| {
            let f = Arc::clone(&f);
            let mut out = Emitter::<K2, V2>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                let (key, value) = f(record.key, record.value);
                out.emit(
                    Record {
                        key,
                        value,
                        timestamp: record.timestamp,
                    },
                    ctx,
                );
            });
            Ok(built(entry))
        })
    }
}
