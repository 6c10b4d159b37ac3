//! `filter_map`: map and drop in one step.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Turns each record into zero or one new record: `None` drops it.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("in", Utf8, Utf8)
    ///     .filter_map(|key: String, value: String| {
    ///         value.parse::<u32>().ok().map(|n| (key, (n * 2).to_string()))
    ///     })
    ///     .to("out", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("in", Utf8, Utf8);
    /// driver.pipe(&input, "a".into(), "21".into())?;
    /// driver.pipe(&input, "b".into(), "x".into())?;
    /// let output = driver.output_topic("out", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?, [("a".to_string(), "42".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn filter_map<K2: Data, V2: Data, F>(self, f: F) -> Stream<K2, V2>
    where
        F: Fn(K, V) -> Option<(K2, V2)> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then("filter-map", move |id, children, _env| {
            let f = Arc::clone(&f);
            let mut out = Emitter::<K2, V2>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                if let Some((key, value)) = f(record.key, record.value) {
                    out.emit(
                        Record {
                            key,
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
