//! The coffee-ordering system's pipeline: its topology, the query service
//! over its state, the barista, and what the `coffee` binary runs.
//!
//! # Layout
//! - [`config`]: the binary's layered configuration.
//! - [`model`]: order state, the rules that change it, statistics, demand.
//! - [`topology`]: the coffee topology on the engine.
//! - [`query`]: the gRPC query service over the pipeline's stores.
//! - [`barista`]: the consumer that claims, brews and reports orders.
//! - [`service`]: running the streams application and the barista, and
//!   what every service shares (Kafka settings, topics, metrics endpoint).
//! - [`system`]: every service in one process (`coffee all`).

pub mod barista;
pub mod config;
pub mod model;
pub mod query;
pub mod service;
pub mod system;
pub mod topology;
