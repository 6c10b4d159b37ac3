//! The producer's gRPC server: `CoffeeService` on the same core as the
//! HTTP routes, plus gRPC health checking and server reflection.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use proto::coffee::v1::coffee_service_server::{CoffeeService, CoffeeServiceServer};
use proto::coffee::v1::{
    CancelOrderRequest, CancelOrderResponse, GetOrderRequest, GetOrderResponse, ListOrdersRequest,
    ListOrdersResponse, PlaceOrderRequest, PlaceOrderResponse,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::core::Core;
use crate::error::{ApiError, GatewayError};
use crate::query::{IDEMPOTENCY_KEY_METADATA, REQUEST_ID_METADATA};
use crate::routes::{Call, CancelOutcome, cancel_message, placed_message};
use crate::validate::{self, PlaceFields};

/// `CoffeeService` over the producer's core.
pub(crate) struct CoffeeApi {
    core: Arc<Core>,
}

/// Serves `CoffeeService`, health and reflection on `listener` until
/// `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    core: Arc<Core>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CoffeeServiceServer<CoffeeApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Older tools (grpcurl before 1.9) only speak v1alpha.
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(CoffeeServiceServer::new(CoffeeApi { core }))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

/// The request id and idempotency key of a gRPC call.
fn call_of<T>(request: &Request<T>) -> Result<Call, Status> {
    let metadata = request.metadata();
    let request_id = metadata
        .get(REQUEST_ID_METADATA)
        .filter(|id| validate::acceptable_request_id(id.as_bytes()))
        .and_then(|id| id.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let idempotency_key = metadata
        .get(IDEMPOTENCY_KEY_METADATA)
        .map(|key| validate::validate_idempotency_key(key.as_bytes()))
        .transpose()
        .map_err(|error| error.to_status())?;
    Ok(Call {
        request_id,
        idempotency_key,
    })
}

/// Runs one call in a span with its request id, logs it, and echoes the
/// request id in the response (or error) metadata.
async fn handle<T, F>(method: &'static str, call: Call, work: F) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, ApiError>>,
{
    let started = Instant::now();
    let span = tracing::info_span!("grpc", method, request_id = %call.request_id);
    let result = work.instrument(span).await;
    let code = result
        .as_ref()
        .map_or_else(|error| error.kind.grpc_code(), |_| tonic::Code::Ok);
    tracing::info!(
        method,
        ?code,
        latency_us = started.elapsed().as_micros() as u64,
        request_id = %call.request_id,
        "gRPC request."
    );
    let echo = call.request_id.parse().ok();
    match result {
        Ok(message) => {
            let mut response = Response::new(message);
            if let Some(id) = echo {
                response.metadata_mut().insert(REQUEST_ID_METADATA, id);
            }
            Ok(response)
        }
        Err(error) => {
            let mut status = error.to_status();
            if let Some(id) = echo {
                status.metadata_mut().insert(REQUEST_ID_METADATA, id);
            }
            Err(status)
        }
    }
}

#[tonic::async_trait]
impl CoffeeService for CoffeeApi {
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<PlaceOrderResponse>, Status> {
        let call = call_of(&request)?;
        let message = request.into_inner();
        let fields = PlaceFields {
            customer_name: message.customer_name,
            coffee_type: message.coffee_type,
        };
        handle("PlaceOrder", call.clone(), async {
            let order = self.core.place(fields, &call).await?;
            Ok(PlaceOrderResponse {
                success: true,
                message: placed_message(&order),
                order: Some(order),
            })
        })
        .await
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let call = call_of(&request)?;
        let id = request.into_inner().id;
        handle("GetOrder", call.clone(), async {
            let order = self.core.get(&id, &call).await?;
            Ok(GetOrderResponse {
                success: true,
                message: String::new(),
                order: Some(order),
            })
        })
        .await
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let call = call_of(&request)?;
        let message = request.into_inner();
        handle("ListOrders", call.clone(), self.core.list(message, &call)).await
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let call = call_of(&request)?;
        let id = request.into_inner().id;
        handle("CancelOrder", call.clone(), async {
            let outcome = self.core.cancel(&id, &call).await?;
            let message = cancel_message(&outcome);
            let (CancelOutcome::Granted(order) | CancelOutcome::Pending(order)) = outcome;
            Ok(CancelOrderResponse {
                success: true,
                message,
                order: Some(order),
            })
        })
        .await
    }
}
