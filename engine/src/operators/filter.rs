//! `filter`: keep the records a predicate accepts.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Keeps the records for which `predicate` is true and drops the rest.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("in", Utf8, Utf8)
    ///     .filter(|_key: &String, value: &String| value.starts_with('a'))
    ///     .to("out", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("in", Utf8, Utf8);
    /// driver.pipe(&input, "1".into(), "apple".into())?;
    /// driver.pipe(&input, "2".into(), "banana".into())?;
    /// let output = driver.output_topic("out", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?, [("1".to_string(), "apple".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn filter<F>(self, predicate: F) -> Stream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        self.then("filter", move |id, children, _env| {
            let predicate = Arc::clone(&predicate);
            let mut out = Emitter::<K, V>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                if predicate(&record.key, &record.value) {
                    out.emit(record, ctx);
                }
            });
            Ok(built(entry))
        })
    }
}
