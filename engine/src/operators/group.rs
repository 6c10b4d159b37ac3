//! `group_by_key` / `group_by`: gather each key's records in one task, the
//! step before a `count`, `reduce` or `aggregate`.

use std::sync::Arc;

use crate::record::Data;
use crate::serdes::Serde;
use crate::{Repartitioned, Stream};

/// A stream grouped by key, ready for an aggregation. Made by
/// [`Stream::group_by_key`] or [`Stream::group_by`].
pub struct GroupedStream<K, V> {
    pub(crate) stream: Stream<K, V>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    /// Whether records must move to their key's partition first.
    pub(crate) repartition: bool,
}

/// A serde shared behind an `Arc`, so grouped streams can hand it to
/// repartitions and stores alike.
pub(crate) struct Shared<T: 'static>(pub(crate) Arc<dyn Serde<T>>);

impl<T: 'static> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: 'static> Serde<T> for Shared<T> {
    fn serialize_into(
        &self,
        value: &T,
        buf: &mut Vec<u8>,
    ) -> Result<(), crate::serdes::SerdeError> {
        self.0.serialize_into(value, buf)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, crate::serdes::SerdeError> {
        self.0.deserialize(bytes)
    }

    fn format(&self) -> &'static str {
        self.0.format()
    }
}

impl<K: Data, V: Data> Stream<K, V> {
    /// Groups records by their key. When an upstream operator changed keys
    /// (`map`, `select_key`, `flat_map`, `filter_map`), the aggregation
    /// that follows first repartitions through
    /// `<application-id>-<store>-repartition`, named after its store, with
    /// these serdes; otherwise records are already where their key belongs.
    ///
    /// ```
    /// use engine::serdes::{U64, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .group_by_key(Utf8, Utf8)
    ///     .count("orders-per-customer")
    ///     .to_stream()
    ///     .to("counts", Utf8, U64);
    /// let mut driver = TestDriver::builder(builder.build()?).default_partitions(3).build()?;
    /// let orders = driver.input_topic("orders", Utf8, Utf8);
    /// driver.pipe(&orders, "ada".into(), "latte".into())?;
    /// driver.pipe(&orders, "ada".into(), "mocha".into())?;
    /// let counts = driver.output_topic("counts", Utf8, U64);
    /// assert_eq!(driver.read_key_values(&counts)?, [("ada".to_string(), 1), ("ada".to_string(), 2)]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn group_by_key(
        self,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> GroupedStream<K, V> {
        let repartition = self.key_changed();
        GroupedStream {
            stream: self,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            repartition,
        }
    }

    /// Groups records by a key computed from each record: a `select_key`
    /// followed by [`Stream::group_by_key`], so the aggregation repartitions
    /// by the new key.
    pub fn group_by<K2: Data, F>(
        self,
        f: F,
        key_serde: impl Serde<K2>,
        value_serde: impl Serde<V>,
    ) -> GroupedStream<K2, V>
    where
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        self.select_key(f).group_by_key(key_serde, value_serde)
    }
}

impl<K: Data, V: Data> GroupedStream<K, V> {
    /// The stream the aggregation reads: repartitioned by key when needed,
    /// through a topic named after the aggregation's store.
    pub(crate) fn input(&self, store: &str) -> Stream<K, V> {
        if self.repartition {
            self.stream.clone().repartition_with(
                Repartitioned::named(store),
                Shared(Arc::clone(&self.key_serde)),
                Shared(Arc::clone(&self.value_serde)),
            )
        } else {
            self.stream.clone()
        }
    }
}
