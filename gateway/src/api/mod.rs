//! The API gateway: HTTP (`:8080`) in front of the producer's gRPC
//! `CoffeeService` and the pipeline's `QueryService`.
//!
//! It serves the producer's routes and the same under `/v1/`. Orders are
//! placed and cancelled through the producer; reads go straight to the
//! query service. Both channels are lazy, so the gateway starts while its
//! upstreams are down and answers 503 JSON until they are back; every call
//! has a deadline. A producer's gRPC error comes back as the exact HTTP
//! answer the producer would have given (its stable code travels in the
//! `x-error-code` metadata). `Idempotency-Key` and `X-Request-ID` are
//! forwarded as gRPC metadata.
//!
//! ```no_run
//! use gateway::api::{Gateway, GatewayConfig};
//!
//! # async fn demo() -> Result<(), gateway::GatewayError> {
//! let registry = prometheus::Registry::new();
//! let gateway = Gateway::bind(GatewayConfig::default(), &registry).await?;
//! println!("gateway on {}", gateway.http_addr());
//! gateway.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

use std::future::Future;

use futures::FutureExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::coffee::v1::coffee_service_client::CoffeeServiceClient;
use proto::coffee::v1::{
    CancelOrderRequest, GetDemandResponse, GetMenuResponse, ListOrdersRequest, ListOrdersResponse,
    Order, OrderStatus, PlaceOrderRequest,
};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::config::{check_host, check_range};
use crate::error::{ApiError, ConfigError, ErrorKind, GatewayError, Result};
use crate::http::{self, Cors, HttpMetrics, Stack};
use crate::metrics::OrderMetrics;
use crate::producer::{
    default_bind_host, default_consumer_grpc_address, default_cors_allowed_origins,
    default_max_body_bytes, default_max_name_chars,
};
use crate::query::{
    IDEMPOTENCY_KEY_METADATA, QueryClient, check_address, lazy_channel, with_request_id,
};
use crate::routes::{Backend, Call, CancelOutcome, Routes};
use crate::shutdown::{Shutdown, drain};
use crate::validate::PlaceFields;

/// The API gateway's configuration.
///
/// Keys are the lower-case names of the environment variables the `coffee`
/// binary reads (`PRODUCER_GRPC_ADDRESS` → `producer_grpc_address`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// HTTP port (`SERVER_PORT`); 0 picks a free one.
    #[serde(default = "default_server_port")]
    pub server_port: u16,
    /// Address the server listens on.
    #[serde(default = "default_bind_host")]
    pub bind_host: String,
    /// The producer's gRPC `CoffeeService` (`PRODUCER_GRPC_ADDRESS`).
    #[serde(default = "default_producer_grpc_address")]
    pub producer_grpc_address: String,
    /// The pipeline's query service (`CONSUMER_GRPC_ADDRESS`).
    #[serde(default = "default_consumer_grpc_address")]
    pub consumer_grpc_address: String,
    /// Deadline of each upstream call (milliseconds). Keep it above the
    /// producer's `kafka_send_timeout_ms` and `cancel_wait_ms`, so the
    /// producer's own answer arrives first.
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// Deadline of connecting to an upstream (milliseconds).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Largest request body accepted, in bytes (larger gets 413).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest customer name accepted in the `customer` filter of
    /// `GET /orders`, in characters (keep equal to the producer's).
    #[serde(default = "default_max_name_chars")]
    pub max_name_chars: usize,
    /// Origins browsers may call from; `["*"]` (the default) allows any.
    #[serde(default = "default_cors_allowed_origins")]
    pub cors_allowed_origins: Vec<String>,
}

fn default_server_port() -> u16 {
    8080
}
fn default_producer_grpc_address() -> String {
    "http://localhost:50051".into()
}
fn default_upstream_timeout_ms() -> u64 {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    1_000
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            server_port: default_server_port(),
            bind_host: default_bind_host(),
            producer_grpc_address: default_producer_grpc_address(),
            consumer_grpc_address: default_consumer_grpc_address(),
            upstream_timeout_ms: default_upstream_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            max_body_bytes: default_max_body_bytes(),
            max_name_chars: default_max_name_chars(),
            cors_allowed_origins: default_cors_allowed_origins(),
        }
    }
}

impl GatewayConfig {
    /// Checks every value; the error names the key, the value and what was
    /// expected.
    ///
    /// # Errors
    ///
    /// The first invalid value found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_host("bind_host", &self.bind_host)?;
        check_address("producer_grpc_address", &self.producer_grpc_address)?;
        check_address("consumer_grpc_address", &self.consumer_grpc_address)?;
        check_range(
            "upstream_timeout_ms",
            self.upstream_timeout_ms,
            1..=300_000,
            "milliseconds",
        )?;
        check_range(
            "connect_timeout_ms",
            self.connect_timeout_ms,
            1..=60_000,
            "milliseconds",
        )?;
        check_range(
            "max_body_bytes",
            self.max_body_bytes,
            256..=16 * 1024 * 1024,
            "bytes",
        )?;
        check_range(
            "max_name_chars",
            self.max_name_chars,
            1..=10_000,
            "characters",
        )?;
        Cors::new("cors_allowed_origins", &self.cors_allowed_origins)?;
        Ok(())
    }
}

/// The gateway's upstreams.
struct Upstreams {
    producer: CoffeeServiceClient<Channel>,
    query: QueryClient,
    metrics: OrderMetrics,
}

const PRODUCER: &str = "the producer";

impl Upstreams {
    /// A gRPC request carrying the call's request id and idempotency key.
    fn request<T>(message: T, call: &Call) -> tonic::Request<T> {
        let mut request = with_request_id(message, &call.request_id);
        if let Some(key) = call.idempotency_key.as_deref().and_then(|k| k.parse().ok()) {
            request.metadata_mut().insert(IDEMPOTENCY_KEY_METADATA, key);
        }
        request
    }
}

impl Backend for Upstreams {
    async fn place(&self, fields: PlaceFields, call: Call) -> Result<Order, ApiError> {
        let request = Self::request(
            PlaceOrderRequest {
                customer_name: fields.customer_name,
                coffee_type: fields.coffee_type,
            },
            &call,
        );
        let started = std::time::Instant::now();
        let result = self.producer.clone().place_order(request).await;
        let result = match result {
            Ok(response) => response.into_inner().order.ok_or_else(|| {
                tracing::error!("The producer placed an order but sent none back.");
                ApiError::new(
                    ErrorKind::UpstreamError,
                    "the producer answered without the order",
                )
            }),
            Err(status) => Err(ApiError::from_upstream(&status, PRODUCER)),
        };
        match &result {
            Ok(_) => {
                self.metrics.received.inc();
                self.metrics.placed.inc();
                self.metrics
                    .processing
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(error)
                if error.kind.http_status().is_server_error() || error.kind.is_retryable() =>
            {
                self.metrics.received.inc();
                self.metrics.failed.inc();
            }
            Err(_) => {}
        }
        result
    }

    async fn get(&self, id: String, call: Call) -> Result<Order, ApiError> {
        self.query
            .get_order(&id, &call.request_id)
            .await?
            .ok_or_else(|| {
                ApiError::new(ErrorKind::OrderNotFound, format!("no order with id {id}"))
            })
    }

    async fn list(
        &self,
        request: ListOrdersRequest,
        call: Call,
    ) -> Result<ListOrdersResponse, ApiError> {
        self.query.list_orders(request, &call.request_id).await
    }

    async fn menu(&self, call: Call) -> Result<GetMenuResponse, ApiError> {
        self.query.get_menu(&call.request_id).await
    }

    async fn demand(
        &self,
        from: Option<prost_types::Timestamp>,
        call: Call,
    ) -> Result<GetDemandResponse, ApiError> {
        self.query.get_demand(from, &call.request_id).await
    }

    async fn topology_svg(&self, call: Call) -> Result<String, ApiError> {
        self.query.get_topology_svg(&call.request_id).await
    }

    async fn cancel(&self, id: String, call: Call) -> Result<CancelOutcome, ApiError> {
        let request = Self::request(CancelOrderRequest { id }, &call);
        let response = self
            .producer
            .clone()
            .cancel_order(request)
            .await
            .map_err(|status| ApiError::from_upstream(&status, PRODUCER))?
            .into_inner();
        let order = response.order.ok_or_else(|| {
            tracing::error!("The producer answered a cancel without the order.");
            ApiError::new(
                ErrorKind::UpstreamError,
                "the producer answered without the order",
            )
        })?;
        Ok(if order.status == OrderStatus::Cancelled as i32 {
            CancelOutcome::Granted(order)
        } else {
            CancelOutcome::Pending(order)
        })
    }
}

/// An API gateway with its listener bound, ready to [`run`](Gateway::run).
pub struct Gateway {
    listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    routes: Arc<Routes<Upstreams>>,
    stack: Stack,
    /// The board's live feed from the query service.
    watch: Channel,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Validates `config`, sets up lazy channels to the upstreams (nothing
    /// is connected yet) and binds the HTTP port. Metrics are registered in
    /// `registry` with `service="gateway"`.
    ///
    /// # Errors
    ///
    /// An invalid configuration (naming the key) or a port that cannot be
    /// bound.
    pub async fn bind(config: GatewayConfig, registry: &prometheus::Registry) -> Result<Self> {
        config.validate()?;
        let call_timeout = Duration::from_millis(config.upstream_timeout_ms);
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let producer = lazy_channel(
            "producer_grpc_address",
            &config.producer_grpc_address,
            call_timeout,
            connect_timeout,
        )?;
        let query = lazy_channel(
            "consumer_grpc_address",
            &config.consumer_grpc_address,
            call_timeout,
            connect_timeout,
        )?;
        // The board's live feed is a long-lived stream: no per-call deadline.
        let watch = check_address("consumer_grpc_address", &config.consumer_grpc_address)?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        let upstreams = Upstreams {
            producer: CoffeeServiceClient::new(producer),
            query: QueryClient::new(query),
            metrics: OrderMetrics::new(registry, "gateway")?,
        };
        let stack = Stack::new(
            Cors::new("cors_allowed_origins", &config.cors_allowed_origins)?,
            HttpMetrics::new(registry, "gateway")?,
        );
        let routes = Arc::new(Routes::new(
            Arc::new(upstreams),
            registry.clone(),
            true,
            config.max_body_bytes,
            config.max_name_chars,
        ));
        let listener = http::bind(&config.bind_host, config.server_port).await?;
        let http_addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            address: format!("{}:{}", config.bind_host, config.server_port),
            source,
        })?;
        tracing::info!(
            %http_addr,
            producer = %config.producer_grpc_address,
            query = %config.consumer_grpc_address,
            "Gateway bound."
        );
        Ok(Self {
            listener,
            http_addr,
            routes,
            stack,
            watch,
        })
    }

    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until `shutdown` completes, then lets requests in progress
    /// finish.
    ///
    /// # Errors
    ///
    /// The server stopped before `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let stop = Shutdown::new();
        let routes = self.routes;
        let handler = move |request| {
            let routes = Arc::clone(&routes);
            async move { routes.handle(request).await }
        };
        let events = crate::board::events(self.watch, stop.signal().boxed().shared());
        let mut task = tokio::spawn(http::serve_with_streams(
            self.listener,
            self.stack,
            handler,
            Some(events),
            stop.signal(),
        ));
        let outcome = tokio::select! {
            () = shutdown => Ok(()),
            result = &mut task => Err(GatewayError::Task(format!(
                "the HTTP server stopped unexpectedly: {result:?}"
            ))),
        };
        stop.trigger();
        tracing::info!("Gateway shutting down.");
        drain(task, "HTTP").await;
        outcome
    }
}

/// Runs a gateway until `shutdown`: [`Gateway::bind`], then
/// [`Gateway::run`].
///
/// # Errors
///
/// As [`Gateway::bind`] and [`Gateway::run`].
pub async fn run_gateway(
    config: GatewayConfig,
    registry: &prometheus::Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Gateway::bind(config, registry).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let config = GatewayConfig::default();
        config.validate().unwrap();
        assert_eq!(serde_json::from_str::<GatewayConfig>("{}").unwrap(), config);
        assert_eq!(config.server_port, 8080);
        assert_eq!(config.producer_grpc_address, "http://localhost:50051");
        assert_eq!(config.consumer_grpc_address, "http://localhost:50052");
    }

    #[tokio::test]
    async fn one_registry_holds_one_gateway() {
        let registry = prometheus::Registry::new();
        let config = GatewayConfig {
            server_port: 0,
            bind_host: "127.0.0.1".into(),
            ..GatewayConfig::default()
        };
        let first = Gateway::bind(config.clone(), &registry).await.unwrap();
        let second = Gateway::bind(config, &registry).await.unwrap_err();
        assert!(matches!(second, GatewayError::Metrics(_)), "{second}");
        drop(first);
    }

    #[test]
    fn bad_values_name_the_key() {
        let config = GatewayConfig {
            producer_grpc_address: "localhost:50051".into(),
            ..GatewayConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, "producer_grpc_address");
        assert_eq!(error.value, "localhost:50051");
        let config = GatewayConfig {
            upstream_timeout_ms: 0,
            ..GatewayConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "upstream_timeout_ms");
        assert!(serde_json::from_str::<GatewayConfig>(r#"{"port":1}"#).is_err());
    }
}
