//! The producer's gRPC `CoffeeService` on the real broker: the same
//! validation and codes as HTTP (with the stable code in `x-error-code`),
//! idempotency through metadata, request ids into Kafka headers, health
//! checking and server reflection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use proto::coffee::v1::coffee_service_client::CoffeeServiceClient;
use proto::coffee::v1::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, OrderStatus, PlaceOrderRequest,
};
use proto::events::Status;
use tonic::Code;

fn place(name: &str, coffee: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        customer_name: name.into(),
        coffee_type: coffee.into(),
    }
}

fn with_metadata<T>(message: T, entries: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (key, value) in entries {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    request
}

fn error_code(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
}

#[tokio::test]
async fn place_order_writes_the_order_with_the_request_id() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;
    let mut client = CoffeeServiceClient::connect(producer.grpc_url())
        .await
        .unwrap();

    let response = client
        .place_order(with_metadata(
            place(" Grace ", "AMERICANO"),
            &[("x-request-id", "grpc-7")],
        ))
        .await
        .unwrap();
    assert_eq!(
        response
            .metadata()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap(),
        "grpc-7"
    );
    let response = response.into_inner();
    assert!(response.success);
    assert_eq!(response.message, "Order for Grace placed successfully!");
    let order = response.order.unwrap();
    assert_eq!(
        (order.customer_name.as_str(), order.coffee_type.as_str()),
        ("Grace", "Americano")
    );
    assert_eq!(order.status, OrderStatus::Pending as i32);
    assert_eq!(order.preparation_time_s, 45);

    let records = read_all(&topic);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, order.id);
    assert_eq!(records[0].request_id.as_deref(), Some("grpc-7"));
    producer.stop().await;
}

#[tokio::test]
async fn place_order_validation_matches_http() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;
    let mut client = CoffeeServiceClient::connect(producer.grpc_url())
        .await
        .unwrap();

    let cases = [
        (place("", "Latte"), "missing_field"),
        (place("   ", "Latte"), "missing_field"),
        (place("Ada", ""), "missing_field"),
        (place("Ada", " \t"), "missing_field"),
        (place(&"n".repeat(10 * 1024), "Latte"), "invalid_field"),
        (place(&"n".repeat(101), "Latte"), "invalid_field"),
        (place("Ada\u{0}", "Latte"), "invalid_field"),
        (place("Ada", "Tea"), "unknown_coffee_type"),
        (place("Ada", "Latte Macchiato"), "unknown_coffee_type"),
    ];
    for (request, code) in cases {
        let status = client.place_order(request.clone()).await.unwrap_err();
        assert_eq!(
            (status.code(), error_code(&status)),
            (Code::InvalidArgument, code),
            "{request:?}"
        );
        assert!(!status.message().is_empty());
    }
    let tea = client.place_order(place("Ada", "Tea")).await.unwrap_err();
    assert!(
        tea.message()
            .contains("Americano, Cappuccino, Espresso, Latte"),
        "{}",
        tea.message()
    );

    let bad_key = client
        .place_order(with_metadata(
            place("Ada", "Latte"),
            &[("idempotency-key", &"k".repeat(300))],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (bad_key.code(), error_code(&bad_key)),
        (Code::InvalidArgument, "invalid_idempotency_key")
    );

    let bad_id = client
        .get_order(GetOrderRequest { id: "a b".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (bad_id.code(), error_code(&bad_id)),
        (Code::InvalidArgument, "invalid_id")
    );
    let bad_page = client
        .list_orders(ListOrdersRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (bad_page.code(), error_code(&bad_page)),
        (Code::InvalidArgument, "invalid_query")
    );
    let bad_status = client
        .list_orders(ListOrdersRequest {
            status: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_status.code(), Code::InvalidArgument);

    assert!(read_all(&topic).is_empty(), "a bad request reached Kafka");
    producer.stop().await;
}

#[tokio::test]
async fn idempotency_key_metadata_places_once() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;
    let client = CoffeeServiceClient::connect(producer.grpc_url())
        .await
        .unwrap();

    let results = futures::future::join_all((0..10).map(|_| {
        let mut client = client.clone();
        async move {
            client
                .place_order(with_metadata(
                    place("Ada", "Latte"),
                    &[("idempotency-key", "grpc-key")],
                ))
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap()
        }
    }))
    .await;
    assert!(results.iter().all(|order| *order == results[0]));
    let records = read_all(&topic);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, results[0].id);

    let reused = client
        .clone()
        .place_order(with_metadata(
            place("Ada", "Espresso"),
            &[("idempotency-key", "grpc-key")],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (reused.code(), error_code(&reused)),
        (Code::AlreadyExists, "idempotency_key_reused")
    );
    producer.stop().await;
}

#[tokio::test]
async fn reads_and_cancels_map_to_grpc_codes() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    query.put(order("o-1", "Ada", "Latte", Status::Completed));
    query.put(order("o-2", "Bob", "Latte", Status::Pending));
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Decide);
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;
    let mut client = CoffeeServiceClient::connect(producer.grpc_url())
        .await
        .unwrap();

    let found = client
        .get_order(GetOrderRequest { id: "o-1".into() })
        .await
        .unwrap();
    assert_eq!(found.into_inner().order.unwrap().customer_name, "Ada");
    let missing = client
        .get_order(GetOrderRequest { id: "o-9".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), error_code(&missing)),
        (Code::NotFound, "order_not_found")
    );
    let list = client
        .list_orders(ListOrdersRequest {
            page_size: 1,
            page: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            list.total_count,
            list.orders.len(),
            list.orders[0].id.as_str()
        ),
        (2, 1, "o-2")
    );

    let late = client
        .cancel_order(CancelOrderRequest { id: "o-1".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (late.code(), error_code(&late)),
        (Code::FailedPrecondition, "cancel_refused")
    );
    let granted = client
        .cancel_order(CancelOrderRequest { id: "o-2".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(granted.success);
    assert_eq!(granted.order.unwrap().status, OrderStatus::Cancelled as i32);
    producer.stop().await;
}

#[tokio::test]
async fn health_checking_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    init_logging();
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config("coffee_orders", &query_server.url())).await;

    let channel = tonic::transport::Endpoint::from_shared(producer.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "coffee.v1.CoffeeService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"coffee.v1.CoffeeService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    producer.stop().await;
}
