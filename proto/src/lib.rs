//! The coffee system's protobuf and gRPC contract.
//!
//! Generated at build time from `proto/coffee/v1/coffee.proto` by a pure-Rust
//! protobuf compiler, so no system `protoc` is needed.
//!
//! # Layout
//! - [`coffee::v1`]: messages, the `CoffeeService` (ordering) and
//!   `QueryService` (the pipeline's state) clients and servers.
//! - [`events`]: the JSON records on the coffee topics (commands, decisions).
//! - [`menu`]: the drinks that can be ordered and their preparation times.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection.
//!
//! # Example
//!
//! ```
//! use proto::coffee::v1::{OrderStatus, PlaceOrderRequest};
//!
//! let request = PlaceOrderRequest {
//!     customer_name: "John Doe".into(),
//!     coffee_type: "Latte".into(),
//! };
//! assert_eq!(request.customer_name, "John Doe");
//! assert_eq!(OrderStatus::Completed.as_str_name(), "ORDER_STATUS_COMPLETED");
//! ```

pub mod events;
pub mod menu;

/// Generated code, grouped by protobuf package.
pub mod coffee {
    /// Version 1 of the coffee contract.
    pub mod v1 {
        #![allow(
            missing_docs,
            unreachable_pub,
            unused_qualifications,
            rust_2018_idioms,
            clippy::all,
            clippy::pedantic
        )]
        tonic::include_proto!("coffee.v1");
    }
}

/// The encoded file descriptor set of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("coffee_descriptor");
