//! Order ingest for the coffee system: the producer (HTTP and gRPC in front
//! of Kafka) and the API gateway (HTTP in front of the producer's gRPC).
//!
//! It depends on the contract in `proto` and on Kafka, never on the pipeline.
