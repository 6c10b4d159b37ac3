//! `map_values`: a new value for every record, same key.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Turns every record's value into a new value; the key stays, so the
    /// partitioning does too.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("in", Utf8, Utf8)
    ///     .map_values(|value: String| value.len().to_string())
    ///     .to("out", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("in", Utf8, Utf8);
    /// driver.pipe(&input, "k".into(), "four".into())?;
    /// let output = driver.output_topic("out", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?, [("k".to_string(), "4".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn map_values<V2: Data, F>(self, f: F) -> Stream<K, V2>
    where
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then("map-values", move |id, children, _env| {
            let f = Arc::clone(&f);
            let mut out = Emitter::<K, V2>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                let value = f(record.value);
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
        })
    }
}
