//! Errors: what clients see ([`ApiError`]) and what stops a service from
//! starting ([`GatewayError`]).
//!
//! Every client-facing failure has a stable machine-readable code
//! ([`ErrorKind::code`]), an HTTP status and a gRPC status code, so the
//! producer's HTTP routes, its gRPC service and the API gateway answer the
//! same mistake the same way. Over gRPC the code travels in the
//! [`ERROR_CODE_METADATA`] metadata entry, which lets the gateway turn a
//! producer's gRPC error back into the exact HTTP answer the producer would
//! have given.

use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use tonic::Code;

/// The gRPC metadata entry that carries an error's stable code.
pub const ERROR_CODE_METADATA: &str = "x-error-code";

/// The kinds of client-facing errors, each with a stable code.
///
/// The codes are part of the public API (see `docs/api.md`); never rename
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The body is not JSON, or not a JSON object.
    InvalidJson,
    /// The body has a field the endpoint does not accept.
    UnknownField,
    /// A required field is missing, null or blank.
    MissingField,
    /// A field has the wrong type, is too long or holds control characters.
    InvalidField,
    /// The coffee type is not on the menu.
    UnknownCoffeeType,
    /// The order id in the path is malformed.
    InvalidId,
    /// The query string is malformed (bad paging, status or parameter).
    InvalidQuery,
    /// The `Idempotency-Key` header is empty, too long or not printable ASCII.
    InvalidIdempotencyKey,
    /// A CORS preflight from an origin that is not allowed.
    OriginNotAllowed,
    /// No route has this path.
    NotFound,
    /// No order has this id.
    OrderNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The order can no longer be cancelled.
    CancelRefused,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The `Idempotency-Key` was used before with a different body.
    IdempotencyKeyReused,
    /// Kafka's send queue is full; retry later.
    Overloaded,
    /// An unexpected failure inside the service (details are in its log).
    Internal,
    /// An upstream service answered with an error it did not explain.
    UpstreamError,
    /// Kafka did not acknowledge the write in time, or refused it.
    KafkaUnavailable,
    /// The query service (the pipeline's state) cannot be reached.
    QueryUnavailable,
    /// The producer cannot be reached (API gateway only).
    UpstreamUnavailable,
    /// An upstream service did not answer within the configured time.
    UpstreamTimeout,
}

impl ErrorKind {
    /// Every kind, for documentation and round-trip tests.
    pub const ALL: [ErrorKind; 23] = [
        ErrorKind::InvalidJson,
        ErrorKind::UnknownField,
        ErrorKind::MissingField,
        ErrorKind::InvalidField,
        ErrorKind::UnknownCoffeeType,
        ErrorKind::InvalidId,
        ErrorKind::InvalidQuery,
        ErrorKind::InvalidIdempotencyKey,
        ErrorKind::OriginNotAllowed,
        ErrorKind::NotFound,
        ErrorKind::OrderNotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::CancelRefused,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::IdempotencyKeyReused,
        ErrorKind::Overloaded,
        ErrorKind::Internal,
        ErrorKind::UpstreamError,
        ErrorKind::KafkaUnavailable,
        ErrorKind::QueryUnavailable,
        ErrorKind::UpstreamUnavailable,
        ErrorKind::UpstreamTimeout,
    ];

    /// The stable code clients match on.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::UnknownField => "unknown_field",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidField => "invalid_field",
            ErrorKind::UnknownCoffeeType => "unknown_coffee_type",
            ErrorKind::InvalidId => "invalid_id",
            ErrorKind::InvalidQuery => "invalid_query",
            ErrorKind::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorKind::OriginNotAllowed => "origin_not_allowed",
            ErrorKind::NotFound => "not_found",
            ErrorKind::OrderNotFound => "order_not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::CancelRefused => "cancel_refused",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Internal => "internal",
            ErrorKind::UpstreamError => "upstream_error",
            ErrorKind::KafkaUnavailable => "kafka_unavailable",
            ErrorKind::QueryUnavailable => "query_unavailable",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The kind with this code, if any.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    /// The HTTP status this kind is answered with.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidJson
            | ErrorKind::UnknownField
            | ErrorKind::MissingField
            | ErrorKind::InvalidField
            | ErrorKind::UnknownCoffeeType
            | ErrorKind::InvalidId
            | ErrorKind::InvalidQuery
            | ErrorKind::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            ErrorKind::OriginNotAllowed => StatusCode::FORBIDDEN,
            ErrorKind::NotFound | ErrorKind::OrderNotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::CancelRefused => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::UpstreamError => StatusCode::BAD_GATEWAY,
            ErrorKind::KafkaUnavailable
            | ErrorKind::QueryUnavailable
            | ErrorKind::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The gRPC status code this kind is answered with.
    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidJson
            | ErrorKind::UnknownField
            | ErrorKind::MissingField
            | ErrorKind::InvalidField
            | ErrorKind::UnknownCoffeeType
            | ErrorKind::InvalidId
            | ErrorKind::InvalidQuery
            | ErrorKind::InvalidIdempotencyKey
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType => Code::InvalidArgument,
            ErrorKind::OriginNotAllowed => Code::PermissionDenied,
            ErrorKind::NotFound | ErrorKind::OrderNotFound => Code::NotFound,
            ErrorKind::MethodNotAllowed => Code::Unimplemented,
            ErrorKind::CancelRefused => Code::FailedPrecondition,
            ErrorKind::IdempotencyKeyReused => Code::AlreadyExists,
            ErrorKind::Overloaded => Code::ResourceExhausted,
            ErrorKind::Internal | ErrorKind::UpstreamError => Code::Internal,
            ErrorKind::KafkaUnavailable
            | ErrorKind::QueryUnavailable
            | ErrorKind::UpstreamUnavailable => Code::Unavailable,
            ErrorKind::UpstreamTimeout => Code::DeadlineExceeded,
        }
    }

    /// Whether the client may retry the same request unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Overloaded
                | ErrorKind::KafkaUnavailable
                | ErrorKind::QueryUnavailable
                | ErrorKind::UpstreamUnavailable
                | ErrorKind::UpstreamTimeout
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A failure as a client sees it: a kind (code and statuses) and a message
/// written for people.
///
/// Messages never carry internals (librdkafka or transport errors); those
/// go to the log where the error is raised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// What went wrong, as a stable code.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The JSON body of this error:
    /// `{"success":false,"error":{"code":"…","message":"…"}}`.
    pub fn to_json(&self) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            success: bool,
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = Body {
            success: false,
            error: Detail {
                code: self.kind.code(),
                message: &self.message,
            },
        };
        // Serialising two strings cannot fail; the fallback keeps the
        // promise of a JSON body anyway.
        serde_json::to_vec(&body).map_or_else(
            |_| {
                Bytes::from_static(
                    br#"{"success":false,"error":{"code":"internal","message":"internal error"}}"#,
                )
            },
            Bytes::from,
        )
    }

    /// This error as a gRPC status, with its code in [`ERROR_CODE_METADATA`].
    pub fn to_status(&self) -> tonic::Status {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            ERROR_CODE_METADATA,
            tonic::metadata::MetadataValue::from_static(self.kind.code()),
        );
        tonic::Status::with_metadata(self.kind.grpc_code(), self.message.clone(), metadata)
    }

    /// The error a client of an upstream gRPC service (`upstream`, e.g.
    /// "the producer") should see for `status`.
    ///
    /// A status carrying [`ERROR_CODE_METADATA`] was written for clients
    /// and passes through unchanged. Anything else (a connection refused, a
    /// timeout, an unexplained failure) is logged and replaced by a generic
    /// message, so no transport internals reach the client.
    pub fn from_upstream(status: &tonic::Status, upstream: &str) -> Self {
        if let Some(kind) = status
            .metadata()
            .get(ERROR_CODE_METADATA)
            .and_then(|value| value.to_str().ok())
            .and_then(ErrorKind::from_code)
        {
            return Self::new(kind, status.message());
        }
        tracing::warn!(
            upstream,
            code = ?status.code(),
            error = %status.message(),
            "Upstream call failed."
        );
        match status.code() {
            Code::Unavailable | Code::Cancelled | Code::Unknown => Self::new(
                ErrorKind::UpstreamUnavailable,
                format!("{upstream} is unavailable; retry later"),
            ),
            Code::DeadlineExceeded => Self::new(
                ErrorKind::UpstreamTimeout,
                format!("{upstream} did not answer in time; retry later"),
            ),
            Code::NotFound => Self::new(ErrorKind::OrderNotFound, status.message()),
            Code::InvalidArgument | Code::OutOfRange => {
                Self::new(ErrorKind::InvalidQuery, status.message())
            }
            Code::ResourceExhausted => Self::new(
                ErrorKind::Overloaded,
                format!("{upstream} is overloaded; retry later"),
            ),
            _ => Self::new(
                ErrorKind::UpstreamError,
                format!("{upstream} failed to answer; see its log"),
            ),
        }
    }
}

/// A configuration value that is not acceptable: the key, the value and
/// what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key} = {value}: expected {expected}")]
pub struct ConfigError {
    /// The configuration key, as written in a config file.
    pub key: String,
    /// The offending value (secrets are never put here).
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

impl ConfigError {
    /// A bad `value` for `key`; `expected` says what would do.
    pub fn new(
        key: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Why a producer or gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid; not retryable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound (port in use, no permission).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The Kafka client could not be created from the configuration.
    #[error("cannot create the Kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The service's metrics could not be registered (a registry that
    /// already holds them for this service).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The gRPC reflection service could not be built from the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A server task ended abnormally.
    #[error("server task failed: {0}")]
    Task(String),
}

/// The result type of this crate's fallible start-up functions.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.code()), "duplicate code {}", kind.code());
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
    }

    #[test]
    fn client_mistakes_are_4xx_and_only_service_trouble_is_5xx() {
        for kind in ErrorKind::ALL {
            let status = kind.http_status();
            let service_trouble = matches!(
                kind,
                ErrorKind::Internal
                    | ErrorKind::UpstreamError
                    | ErrorKind::KafkaUnavailable
                    | ErrorKind::QueryUnavailable
                    | ErrorKind::UpstreamUnavailable
                    | ErrorKind::UpstreamTimeout
            );
            assert_eq!(status.is_server_error(), service_trouble, "{kind}");
            assert_eq!(status.is_client_error(), !service_trouble, "{kind}");
        }
    }

    #[test]
    fn a_status_with_a_code_round_trips_and_one_without_is_generic() {
        let error = ApiError::new(ErrorKind::UnknownCoffeeType, "no Tea");
        assert_eq!(
            ApiError::from_upstream(&error.to_status(), "the producer"),
            error
        );
        let transport = tonic::Status::unavailable("tcp connect error: 127.0.0.1:1");
        let mapped = ApiError::from_upstream(&transport, "the producer");
        assert_eq!(mapped.kind, ErrorKind::UpstreamUnavailable);
        assert!(!mapped.message.contains("tcp"), "{mapped}");
    }

    #[test]
    fn json_shape() {
        let json: serde_json::Value =
            serde_json::from_slice(&ApiError::new(ErrorKind::InvalidId, "bad \"id\"").to_json())
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"success":false,"error":{"code":"invalid_id","message":"bad \"id\""}})
        );
    }
}
