//! `to`: write a stream to a topic.

use crate::Stream;
use crate::record::Data;
use crate::serdes::Serde;
use crate::topology::TopicName;

impl<K: Data, V: Data> Stream<K, V> {
    /// Writes every record to `topic`, encoded with the given serdes; the
    /// key's bytes choose the partition (Kafka's murmur2, as Java clients
    /// do). The sink is named `<topic>-sink`.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::{Json, Utf8}};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("in", Utf8, Json::<u32>::new())
    ///     .map_values(|n: u32| n * 10)
    ///     .to("out", Utf8, Json::<u32>::new());
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    /// driver.pipe(&input, "k".into(), 4)?;
    /// let output = driver.output_topic("out", Utf8, Json::<u32>::new());
    /// assert_eq!(driver.read_key_values(&output)?, [("k".to_string(), 40)]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn to(self, topic: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) {
        self.sink(
            TopicName::External(topic.to_owned()),
            None,
            key_serde,
            value_serde,
        );
    }
}
