//! State stores for the stream-processing engine.
//!
//! Stores hold the state of stateful operators (counts, aggregates, tables,
//! windows) behind one trait, with a sled backend by default and an
//! in-memory one. A store is a rebuildable cache: the truth is the store's
//! compacted changelog topic, which the engine writes and restores from.
