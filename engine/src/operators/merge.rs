//! `merge`: one stream from two of the same type.

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

impl<K: Data, V: Data> Stream<K, V> {
    /// Interleaves this stream's records with `other`'s. Within a task,
    /// records keep the order in which they arrive.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// let left = builder.stream("left", Utf8, Utf8);
    /// let right = builder.stream("right", Utf8, Utf8);
    /// left.merge(right).to("both", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let (l, r) = (driver.input_topic("left", Utf8, Utf8), driver.input_topic("right", Utf8, Utf8));
    /// driver.pipe(&l, "1".into(), "from left".into())?;
    /// driver.pipe(&r, "2".into(), "from right".into())?;
    /// let output = driver.output_topic("both", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?.len(), 2);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn merge(self, other: Stream<K, V>) -> Stream<K, V> {
        self.add(
            "merge",
            vec![self.node, other.node],
            None,
            move |id, children, _env| {
                let mut out = Emitter::<K, V>::from_built(id, children)?;
                let entry: Downstream<K, V> =
                    Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                        ctx.enter(id);
                        out.emit(record, ctx);
                    });
                Ok(built(entry))
            },
        )
    }
}
