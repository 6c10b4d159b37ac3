//! The coffee-ordering system's pipeline: its topology, the query service
//! over its state, the barista, and what the `coffee` binary runs.
//!
//! # Layout
//! - [`model`]: order state, the rules that change it, statistics, demand.
//! - [`topology`]: the coffee topology on the engine.

pub mod model;
pub mod topology;
