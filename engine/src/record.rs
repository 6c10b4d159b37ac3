//! Records: typed ones flowing through a topology, raw ones from Kafka.

use std::sync::Arc;

/// Anything that can flow through a topology: cloned when a stream fans out
/// to several operators, and moved between threads with its task.
pub trait Data: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Data for T {}

/// A typed record: key, value and event time (milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<K, V> {
    /// The record's key.
    pub key: K,
    /// The record's value.
    pub value: V,
    /// Event time, in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl<K, V> Record<K, V> {
    /// A record with the given key, value and timestamp.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self {
            key,
            value,
            timestamp,
        }
    }
}

/// A record as read from Kafka, before its source decodes it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Its key bytes, if any.
    pub key: Option<&'a [u8]>,
    /// Its value bytes, if any.
    pub value: Option<&'a [u8]>,
}

/// A record a task wants written to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// The destination topic (already resolved, internal topics included).
    pub topic: Arc<str>,
    /// The partition to write to; `None` lets the key choose (murmur2).
    /// Changelog records name their task's partition.
    pub partition: Option<i32>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}
