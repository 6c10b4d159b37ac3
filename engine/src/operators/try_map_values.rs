//! `try_map_values`: a fallible value mapping whose errors follow the error policy.

use std::fmt::Display;
use std::sync::Arc;

use crate::Stream;
use crate::error::ErrorClass;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Like [`Stream::map_values`], but `f` may fail: the failing record
    /// then goes where the operator's [`ErrorPolicy`](crate::ErrorPolicy)
    /// says (by default, to the dead-letter topic with its original bytes).
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("in", Utf8, Utf8)
    ///     .try_map_values(|value: String| value.parse::<u32>().map(|n| (n + 1).to_string()))
    ///     .name("parse")
    ///     .to("out", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("in", Utf8, Utf8);
    /// driver.pipe(&input, "a".into(), "41".into())?;
    /// driver.pipe(&input, "b".into(), "forty".into())?;
    /// let output = driver.output_topic("out", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?, [("a".to_string(), "42".to_string())]);
    /// let dead = driver.dead_letters();
    /// assert_eq!(dead.len(), 1);
    /// assert_eq!(dead[0].operator, "parse");
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn try_map_values<V2: Data, E: Display, F>(self, f: F) -> Stream<K, V2>
    where
        F: Fn(V) -> Result<V2, E> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then("try-map-values", move |id, children, _env| {
            let f = Arc::clone(&f);
            let mut out = Emitter::<K, V2>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                match f(record.value) {
                    Ok(value) => {
                        out.emit(
                            Record {
                                key: record.key,
                                value,
                                timestamp: record.timestamp,
                            },
                            ctx,
                        );
                    }
                    Err(error) => ctx.fail(id, ErrorClass::Processing, error),
                }
            });
            Ok(built(entry))
        })
    }
}
