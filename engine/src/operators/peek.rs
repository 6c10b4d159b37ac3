//! `peek`: look at every record without changing it.

use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Calls `f` on every record and passes it on unchanged: for logging,
    /// metrics or debugging.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&seen);
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("in", Utf8, Utf8)
    ///     .peek(move |_key: &String, _value: &String| {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .to("out", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("in", Utf8, Utf8);
    /// driver.pipe(&input, "k".into(), "v".into())?;
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn peek<F>(self, f: F) -> Stream<K, V>
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.then("peek", move |id, children, _env| {
            let f = Arc::clone(&f);
            let mut out = Emitter::<K, V>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                f(&record.key, &record.value);
                out.emit(record, ctx);
            });
            Ok(built(entry))
        })
    }
}
