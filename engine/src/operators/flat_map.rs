//! `flat_map`: any number of records from each record.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Turns each record into any number of records, all with its timestamp.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("lines", Utf8, Utf8)
    ///     .flat_map(|_key: String, line: String| {
    ///         line.split_whitespace().map(|w| (w.to_owned(), w.to_owned())).collect::<Vec<_>>()
    ///     })
    ///     .to("words", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("lines", Utf8, Utf8);
    /// driver.pipe(&input, "".into(), "to be".into())?;
    /// let output = driver.output_topic("words", Utf8, Utf8);
    /// let words: Vec<String> = driver.read_key_values(&output)?.into_iter().map(|(k, _)| k).collect();
    /// assert_eq!(words, ["to", "be"]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn flat_map<K2: Data, V2: Data, I, F>(self, f: F) -> Stream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
        F: Fn(K, V) -> I + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then("flat-map", move |id, children, _env| {
            let f = Arc::clone(&f);
            let mut out = Emitter::<K2, V2>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                for (key, value) in f(record.key, record.value) {
                    out.emit(
                        Record {
                            key,
                            value,
                            timestamp: record.timestamp,
                        },
                        ctx,
                    );
                    // A failed child ends this input: make no more items.
                    if ctx.error.is_some() {
                        break;
                    }
                    // The iterator may run user code lazily: blame it, not a child.
                    ctx.current = id;
                }
            });
            Ok(built(entry))
        })
    }
}
