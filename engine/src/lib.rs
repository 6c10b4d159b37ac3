//! A Kafka-Streams-style stream-processing library: typed topologies on Apache Kafka.
