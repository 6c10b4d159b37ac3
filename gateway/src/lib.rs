//! Order ingest for the coffee system: the producer (HTTP and gRPC in
//! front of Kafka) and the API gateway (HTTP in front of the producer's
//! gRPC and the pipeline's query service).
//!
//! It depends on the contract in `proto` and on Kafka, never on the
//! pipeline. The `coffee` binary layers configuration (file, environment,
//! flags) into a [`ProducerConfig`] or [`GatewayConfig`] and calls
//! [`run_producer`] or [`run_gateway`]; tests and embedders can
//! [`Producer::bind`] / [`Gateway::bind`] on port 0 and read the bound
//! addresses before running.
//!
//! The HTTP API (routes, JSON shapes, error codes, idempotency, cancel
//! semantics) is documented in `docs/api.md`.
//!
//! # Layout
//! - [`producer`]: the producer's configuration and server (HTTP, gRPC
//!   `CoffeeService` with health and reflection, Kafka writer).
//! - [`api`]: the API gateway's configuration and server, which also
//!   serves the order board (a web page at `/`, live over Server-Sent
//!   Events).
//! - [`http`]: the HTTP stack both share — a warp server and the
//!   middleware (recovery, logging, request id, CORS).
//! - [`error`]: client-facing errors with stable codes, and start-up errors.
//! - [`config`]: configuration types shared by both services.
//!
//! # Example
//!
//! ```no_run
//! use gateway::{ProducerConfig, run_producer};
//!
//! # async fn demo() -> Result<(), gateway::GatewayError> {
//! let config: ProducerConfig = serde_json::from_str(r#"{"kafka_brokers":["localhost:9092"]}"#)
//!     .expect("valid JSON");
//! let registry = prometheus::Registry::new();
//! run_producer(config, None, &registry, async {
//!     tokio::signal::ctrl_c().await.ok();
//! })
//! .await
//! # }
//! ```

pub mod api;
pub mod config;
pub mod error;
pub mod http;
pub mod producer;

mod board;
mod idempotency;
mod kafka;
mod metrics;
mod model;
mod query;
mod routes;
mod shutdown;
mod validate;

pub use api::{Gateway, GatewayConfig, run_gateway};
pub use error::{ApiError, ConfigError, ErrorKind, GatewayError};
pub use producer::{Producer, ProducerConfig, run_producer};
