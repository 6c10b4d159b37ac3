//! The API gateway: HTTP → gRPC to a real producer on the real broker, and
//! to an in-test `QueryService`. Upstreams down → 503 JSON, then up → 200;
//! producer errors come back as the producer's HTTP answers; `/v1/` routes;
//! `Idempotency-Key` and `X-Request-ID` forwarded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use gateway::GatewayConfig;
use proto::events::Status;

fn gateway_config(producer: &str, query: &str) -> GatewayConfig {
    GatewayConfig {
        server_port: 0,
        bind_host: "127.0.0.1".into(),
        producer_grpc_address: producer.to_owned(),
        consumer_grpc_address: query.to_owned(),
        // Above the producer's cancel wait (see `producer_config`).
        upstream_timeout_ms: 30_000,
        connect_timeout_ms: 500,
        ..GatewayConfig::default()
    }
}

fn placed_body(name: &str, coffee: &str) -> String {
    serde_json::json!({"customer_name": name, "coffee_type": coffee}).to_string()
}

/// The gateway starts with nothing behind it, answers 503 JSON, and serves
/// orders once the producer and the query service come up on their ports.
#[tokio::test]
async fn starts_with_upstreams_down_then_serves_when_they_are_up() {
    init_logging();
    let (producer_port, query_port) = (closed_port(), closed_port());
    let gateway = start_gateway(gateway_config(
        &format!("http://127.0.0.1:{producer_port}"),
        &format!("http://127.0.0.1:{query_port}"),
    ))
    .await;

    assert_eq!(get(gateway.http, "/health").await.status, 200);
    let down = post_json(gateway.http, "/order", &placed_body("Ada", "Latte"), &[]).await;
    assert_eq!(
        (down.status, down.error_code().as_str()),
        (503, "upstream_unavailable")
    );
    assert!(
        !down.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tcp")
    );
    let read = get(gateway.http, "/v1/order/abc").await;
    assert_eq!(
        (read.status, read.error_code().as_str()),
        (503, "query_unavailable")
    );
    let list = get(gateway.http, "/orders").await;
    assert_eq!(
        (list.status, list.error_code().as_str()),
        (503, "query_unavailable")
    );
    let cancel = send(gateway.http, "POST", "/order/abc/cancel", &[], "").await;
    assert_eq!(
        (cancel.status, cancel.error_code().as_str()),
        (503, "upstream_unavailable")
    );

    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_addr: SocketAddr = format!("127.0.0.1:{query_port}").parse().unwrap();
    let _query_server = query.serve(query_addr).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Decide);
    let mut config = producer_config(&topic, &format!("http://{query_addr}"));
    config.grpc_port = producer_port;
    let producer = start_producer(config).await;

    let placed = post_json(gateway.http, "/order", &placed_body("Ada", "Latte"), &[]).await;
    assert_eq!(placed.status, 200, "{:?}", placed.body);
    let json = placed.json();
    assert_eq!(json["msg"], "Order for Ada placed successfully!");
    let id = json["order"]["id"].as_str().unwrap().to_owned();
    query
        .wait_until(Duration::from_secs(30), |orders| orders.contains_key(&id))
        .await;
    let read = get(gateway.http, &format!("/order/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["order"]["id"], id.as_str());
    gateway.stop().await;
    producer.stop().await;
}

/// Every route under `/` and `/v1/`, with the producer's errors mapped
/// back to the same HTTP answers, and the request id and idempotency key
/// carried through to Kafka.
#[tokio::test]
async fn routes_errors_and_forwarded_headers() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Decide);
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;
    let gateway = start_gateway(gateway_config(&producer.grpc_url(), &query_server.url())).await;

    for prefix in ["", "/v1"] {
        let checked = check_bad_inputs(gateway.http, prefix).await;
        assert!(checked >= 25);
    }
    assert!(read_all(&topic).is_empty(), "a bad input reached Kafka");

    // Idempotency-Key and X-Request-ID reach the producer and Kafka.
    let replies = futures::future::join_all((0..5).map(|i| {
        let request_id = format!("gw-{i}");
        async move {
            post_json(
                gateway.http,
                "/v1/order",
                &placed_body("Ada", "Cappuccino"),
                &[("idempotency-key", "gw-key"), ("x-request-id", &request_id)],
            )
            .await
        }
    }))
    .await;
    let first = replies[0].json()["order"].clone();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["order"], first);
        assert_eq!(
            reply.header("x-request-id"),
            Some(format!("gw-{i}").as_str())
        );
    }
    let records = read_all(&topic);
    assert_eq!(records.len(), 1);
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(records[0].key, id);
    assert!(records[0].request_id.as_deref().unwrap().starts_with("gw-"));
    let reused = post_json(
        gateway.http,
        "/order",
        &placed_body("Ada", "Latte"),
        &[("idempotency-key", "gw-key")],
    )
    .await;
    assert_eq!(
        (reused.status, reused.error_code().as_str()),
        (422, "idempotency_key_reused")
    );

    // Reads and lists through the query service, under both prefixes.
    query
        .wait_until(Duration::from_secs(30), |orders| orders.contains_key(&id))
        .await;
    for path in [format!("/order/{id}"), format!("/v1/order/{id}")] {
        let reply = get(gateway.http, &path).await;
        assert_eq!(
            (reply.status, reply.json()["order"]["id"].as_str()),
            (200, Some(id.as_str()))
        );
    }
    query.put(order("brewing-1", "Bob", "Latte", Status::Brewing));
    let list = get(gateway.http, "/v1/orders?status=brewing&page_size=5")
        .await
        .json();
    assert_eq!(
        (list["total_count"].as_u64(), list["page_size"].as_u64()),
        (Some(1), Some(5))
    );
    let missing = get(gateway.http, "/order/unknown-id").await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "order_not_found")
    );

    // Cancels go through the producer: refused, granted, unknown.
    let late = send(gateway.http, "POST", "/v1/order/brewing-1/cancel", &[], "").await;
    assert_eq!(
        (late.status, late.error_code().as_str()),
        (409, "cancel_refused")
    );
    let granted = send(
        gateway.http,
        "POST",
        &format!("/order/{id}/cancel"),
        &[],
        "",
    )
    .await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(granted.json()["cancel"], "granted");
    assert_eq!(granted.json()["order"]["status"], "cancelled");
    let unknown = send(gateway.http, "POST", "/order/nope/cancel", &[], "").await;
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "order_not_found")
    );

    // Health and metrics are the gateway's own.
    assert_eq!(
        get(gateway.http, "/health").await.json(),
        serde_json::json!({"status":"ok"})
    );
    assert_eq!(get(gateway.http, "/v1/health").await.status, 404);
    let metrics = get(gateway.http, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"endpoint="/v1/order",method="POST",service="gateway",status="200"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"coffee_orders_success_total{service="gateway"} 5"#),
        "{text}"
    );
    gateway.stop().await;
    producer.stop().await;
}

/// The producer's Kafka outage reaches the gateway's client as the
/// producer's 503, not as a gateway error.
#[tokio::test]
async fn a_producer_kafka_outage_is_the_producers_503() {
    init_logging();
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let mut config = producer_config("coffee_orders", &query_server.url());
    config.kafka_brokers = vec![format!("127.0.0.1:{}", closed_port())];
    config.kafka_send_timeout_ms = 500;
    let producer = start_producer(config).await;
    let gateway = start_gateway(gateway_config(&producer.grpc_url(), &query_server.url())).await;
    let reply = post_json(gateway.http, "/order", &placed_body("Ada", "Latte"), &[]).await;
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (503, "kafka_unavailable")
    );
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    gateway.stop().await;
    producer.stop().await;
}
