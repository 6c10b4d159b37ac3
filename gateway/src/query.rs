//! Reading orders from the pipeline's `QueryService` over gRPC.
//!
//! The channel is lazy: the service starts while the query service is
//! down, and every call tries to (re)connect. Each call has a deadline, and
//! carries the request id as metadata.

use std::time::Duration;

use proto::coffee::v1::query_service_client::QueryServiceClient;
use proto::coffee::v1::{
    GetDemandRequest, GetDemandResponse, GetMenuRequest, GetMenuResponse, GetOrderRequest,
    GetTopologyRequest, ListOrdersRequest, ListOrdersResponse, Order, WatchOrdersRequest,
};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::error::{ApiError, ConfigError, ErrorKind};

/// The gRPC metadata entry that carries the HTTP request id.
pub(crate) const REQUEST_ID_METADATA: &str = "x-request-id";
/// The gRPC metadata entry that carries an `Idempotency-Key`.
pub(crate) const IDEMPOTENCY_KEY_METADATA: &str = "idempotency-key";

/// Checks a gRPC address: an `http://` or `https://` URL with a host.
/// `key` names the configuration key in errors.
pub(crate) fn check_address(key: &str, address: &str) -> Result<Endpoint, ConfigError> {
    let expected = "an http:// or https:// URL such as http://localhost:50052";
    let uri: http::Uri = address
        .parse()
        .map_err(|_| ConfigError::new(key, address, expected))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(ConfigError::new(key, address, expected));
    }
    Endpoint::from_shared(address.to_owned()).map_err(|_| ConfigError::new(key, address, expected))
}

/// A lazy channel to `address` with per-call and connect deadlines: it
/// connects on first use and reconnects after failures, so a service
/// starts while its upstream is down.
pub(crate) fn lazy_channel(
    key: &str,
    address: &str,
    call_timeout: Duration,
    connect_timeout: Duration,
) -> Result<Channel, ConfigError> {
    Ok(check_address(key, address)?
        .connect_timeout(connect_timeout)
        .timeout(call_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Adds the request id to a gRPC request's metadata.
pub(crate) fn with_request_id<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = request_id.parse() {
        request.metadata_mut().insert(REQUEST_ID_METADATA, value);
    }
    request
}

/// A client of the pipeline's query service.
#[derive(Clone)]
pub(crate) struct QueryClient {
    client: QueryServiceClient<Channel>,
}

impl QueryClient {
    pub(crate) fn new(channel: Channel) -> Self {
        Self {
            client: QueryServiceClient::new(channel),
        }
    }

    /// The order with `id`, or `None` when the pipeline does not know it.
    pub(crate) async fn get_order(
        &self,
        id: &str,
        request_id: &str,
    ) -> Result<Option<Order>, ApiError> {
        let request = with_request_id(GetOrderRequest { id: id.to_owned() }, request_id);
        match self.client.clone().get_order(request).await {
            Ok(response) => Ok(response.into_inner().order),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(query_error(&status)),
        }
    }

    /// A page of orders.
    pub(crate) async fn list_orders(
        &self,
        request: ListOrdersRequest,
        request_id: &str,
    ) -> Result<ListOrdersResponse, ApiError> {
        let request = with_request_id(request, request_id);
        self.client
            .clone()
            .list_orders(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| query_error(&status))
    }

    /// The pipeline's menu.
    pub(crate) async fn get_menu(&self, request_id: &str) -> Result<GetMenuResponse, ApiError> {
        self.client
            .clone()
            .get_menu(with_request_id(GetMenuRequest {}, request_id))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| query_error(&status))
    }

    /// Orders per drink per minute, windows starting at `from` or later.
    pub(crate) async fn get_demand(
        &self,
        from: Option<prost_types::Timestamp>,
        request_id: &str,
    ) -> Result<GetDemandResponse, ApiError> {
        let request = GetDemandRequest {
            coffee_type: String::new(),
            from,
        };
        self.client
            .clone()
            .get_demand(with_request_id(request, request_id))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| query_error(&status))
    }

    /// The pipeline's topology as an SVG picture.
    pub(crate) async fn get_topology_svg(&self, request_id: &str) -> Result<String, ApiError> {
        self.client
            .clone()
            .get_topology(with_request_id(GetTopologyRequest {}, request_id))
            .await
            .map(|response| response.into_inner().svg)
            .map_err(|status| query_error(&status))
    }

    /// A stream of `id`'s status changes, from now on.
    pub(crate) async fn watch(
        &self,
        id: &str,
        request_id: &str,
    ) -> Result<tonic::Streaming<Order>, tonic::Status> {
        let request = with_request_id(WatchOrdersRequest { id: id.to_owned() }, request_id);
        self.client
            .clone()
            .watch_orders(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// What a client sees when the query service fails: its own client errors
/// pass through, anything else is "unavailable" (details to the log).
fn query_error(status: &tonic::Status) -> ApiError {
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => {
            ApiError::new(ErrorKind::InvalidQuery, status.message())
        }
        code => {
            tracing::warn!(?code, error = %status.message(), "Query service call failed.");
            ApiError::new(
                ErrorKind::QueryUnavailable,
                "the order query service is unavailable; retry later",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_up_front() {
        assert!(check_address("k", "http://localhost:50052").is_ok());
        assert!(check_address("k", "https://query.example:443").is_ok());
        for bad in ["localhost:50052", "ftp://x:1", "http://", "not a url"] {
            let error = check_address("consumer_grpc_address", bad).unwrap_err();
            assert_eq!(error.key, "consumer_grpc_address");
            assert_eq!(error.value, bad);
        }
    }
}
