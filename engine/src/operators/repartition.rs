//! `repartition`: move records to the partition their (new) key belongs to.

use crate::record::Data;
use crate::serdes::Serde;
use crate::topology::TopicName;
use crate::{Stream, StreamsBuilder};

/// Settings of a repartition: its name and, optionally, its partition count.
#[derive(Debug, Clone)]
pub struct Repartitioned {
    name: String,
    partitions: Option<i32>,
}

impl Repartitioned {
    /// A repartition through `<application-id>-<name>-repartition`.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            partitions: None,
        }
    }

    /// The internal topic's partition count (default: that of the
    /// sub-topology's source topics).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

impl<K: Data, V: Data> Stream<K, V> {
    /// Writes the stream to the internal topic
    /// `<application-id>-<name>-repartition` and reads it back, so every
    /// record lands in the partition (and task) its key belongs to. The
    /// topic is created at start-up with as many partitions as the source
    /// topics upstream. Its name is explicit, so changing other operators
    /// never renames it.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .select_key(|_id: &String, customer: &String| customer.clone())
    ///     .repartition("by-customer", Utf8, Utf8)
    ///     .to("customer-orders", Utf8, Utf8);
    /// let topology = builder.build()?;
    /// assert_eq!(topology.describe().subtopologies.len(), 2);
    /// let mut driver = TestDriver::builder(topology).partitions("orders", 4).build()?;
    /// let input = driver.input_topic("orders", Utf8, Utf8);
    /// driver.pipe(&input, "order-1".into(), "ada".into())?;
    /// let output = driver.output_topic("customer-orders", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&output)?, [("ada".to_string(), "ada".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn repartition<KS, VS>(self, name: &str, key_serde: KS, value_serde: VS) -> Stream<K, V>
    where
        KS: Serde<K> + Clone,
        VS: Serde<V> + Clone,
    {
        self.repartition_with(Repartitioned::named(name), key_serde, value_serde)
    }

    /// [`Stream::repartition`] with settings.
    pub fn repartition_with<KS, VS>(
        self,
        settings: Repartitioned,
        key_serde: KS,
        value_serde: VS,
    ) -> Stream<K, V>
    where
        KS: Serde<K> + Clone,
        VS: Serde<V> + Clone,
    {
        let topic = TopicName::Repartition(settings.name.clone());
        if let Err(error) = crate::builder::validate_topic_name(&settings.name) {
            self.graph
                .borrow_mut()
                .record_error(format!("repartition name: {error}"));
        }
        self.sink(
            topic.clone(),
            settings.partitions,
            key_serde.clone(),
            value_serde.clone(),
        );
        let builder = StreamsBuilder::from_graph(std::rc::Rc::clone(&self.graph));
        builder.source(vec![topic], key_serde, value_serde)
    }
}
