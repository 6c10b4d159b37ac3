//! A Kafka-Streams-style stream-processing library: typed topologies that
//! run on Apache Kafka.
//!
//! Build a [`Topology`] from typed [`Stream`]s with a [`StreamsBuilder`],
//! test it with the in-process [`TestDriver`], and run it on Kafka (or on the
//! embedded in-memory cluster) with the [`runtime`].
//!
//! # Layout
//! - [`builder`]: [`StreamsBuilder`] and [`Stream`], the DSL.
//! - [`operators`]: one file per operator (`map`, `filter`, `split`, `repartition`, …).
//! - [`serdes`]: how keys and values become bytes (JSON, bincode, protobuf, UTF-8, raw).
//! - [`topology`]: the built graph, its sub-topologies and [`describe`](Topology::describe).
//! - [`policy`]: what happens to records that fail ([`ErrorPolicy`]).
//! - [`driver`]: the deterministic [`TestDriver`].
//! - [`runtime`]: [`KafkaStreams`], the consumer-group runtime (at least once).
//! - [`cluster`]: a real Kafka cluster, or the embedded in-memory one.
//! - [`reset`]: replaying an application from the earliest offset or a time.
//! - [`config`]: settings of the runtime ([`StreamsConfig`]).
//! - [`metrics`]: the engine's Prometheus metrics.
//! - [`shutdown`]: SIGINT/SIGTERM as a future.
//! - [`partitioner`]: Kafka's murmur2 partitioner.
//!
//! # Example
//!
//! ```
//! use engine::serdes::{Json, Utf8};
//! use engine::{StreamsBuilder, TestDriver};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
//! struct Order { customer: String, drink: String }
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("orders", Utf8, Json::<Order>::new())
//!     .filter(|_id, order| order.drink != "Decaf")
//!     .map_values(|order| order.customer)
//!     .to("customers", Utf8, Utf8);
//! let topology = builder.build()?;
//!
//! let mut driver = TestDriver::builder(topology).partitions("orders", 3).build()?;
//! let orders = driver.input_topic("orders", Utf8, Json::<Order>::new());
//! driver.pipe(&orders, "o-1".into(), Order { customer: "Ada".into(), drink: "Latte".into() })?;
//! driver.pipe(&orders, "o-2".into(), Order { customer: "Bob".into(), drink: "Decaf".into() })?;
//! let customers = driver.output_topic("customers", Utf8, Utf8);
//! assert_eq!(driver.read_key_values(&customers)?, [("o-1".to_string(), "Ada".to_string())]);
//! # Ok::<(), engine::EngineError>(())
//! ```

pub mod builder;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod error;
pub mod metrics;
pub mod operators;
pub mod partitioner;
pub mod policy;
mod processor;
pub mod queries;
pub mod record;
pub mod reset;
pub mod runtime;
pub mod serdes;
pub mod shutdown;
pub mod stores;
pub mod table;
mod task;
pub mod topology;

pub use builder::{Stream, StreamsBuilder};
pub use cluster::Cluster;
pub use config::{OffsetReset, ProcessingGuarantee, StateBackend, StreamsConfig};
pub use driver::{TestDriver, TestDriverBuilder, TestInputTopic, TestOutputTopic, TestRecord};
pub use error::{EngineError, ErrorClass, ProcessingError, Result};
pub use operators::{Branches, GroupedStream, Repartitioned, Splitter};
pub use policy::ErrorPolicy;
pub use record::{Data, Record};
pub use runtime::KafkaStreams;
pub use table::Table;
pub use task::TaskId;
pub use topology::{Topology, TopologyDescription};
